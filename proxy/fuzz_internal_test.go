package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sepgadm/sepgadm/proxy/wire"
)

// FuzzParseConfig: no configuration text makes the parser panic, and every refusal is
// a *ConfigError naming the file.
func FuzzParseConfig(f *testing.F) {
	f.Add("credential_file = \"x\"\n[[listen]]\naddress = \"127.0.0.1:1\"\nauth = \"trust\"\n[[context]]\nuser = \"a\"\ncontext = \"u:r:t:s0\"\n")
	f.Add("pool_mode = \"transaction\"\ntagging = \"off\"\n[[listen]]\nunix_socket_dir = \"/tmp\"\n[users.a]\npool_size = 3\n")
	f.Add("[[context]]\ncidr = \"10.0.0.0/8\"\ncontext = \"u:r:t:s0:c1,c3.c5\"\nclient_chosen = true\n")
	f.Fuzz(func(t *testing.T, text string) {
		_, err := ParseConfig(strings.NewReader(text), "fuzz.toml")
		var ce *ConfigError
		if err != nil && (!errors.As(err, &ce) || ce.File != "fuzz.toml") {
			t.Fatalf("error %T %v is not a *ConfigError for fuzz.toml", err, err)
		}
	})
}

// FuzzUserlist: no userlist makes the parser panic, and every entry it accepts yields a
// secret or a clear error.
func FuzzUserlist(f *testing.F) {
	f.Add("\"alice\" \"pw\"\n# comment\n\"bob\" \"SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy\"\n")
	f.Add("\"a\"\"b\" \"c\"\"\"\n;x\n")
	f.Fuzz(func(t *testing.T, text string) {
		users, err := parseUserlist(strings.NewReader(text), "fuzz")
		if err != nil {
			return
		}
		for _, v := range users {
			if len(v) > 256 {
				continue // each plaintext secret costs 4096 PBKDF2 rounds
			}
			_, _ = parseSecret(v)
		}
	})
}

// FuzzSCRAM drives the server side of the SCRAM exchange with whatever a client sends
// after AuthenticationSASL: it never panics, never reads more than the login limit,
// and never authenticates without the password.
func FuzzSCRAM(f *testing.F) {
	first := func(msgs ...pgproto3.FrontendMessage) []byte {
		var b []byte
		for _, m := range msgs {
			b, _ = m.Encode(b)
		}
		return b
	}
	f.Add(first(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abcdefghijklmnop")},
		&pgproto3.SASLResponse{Data: []byte("c=biws,r=abcdefghijklmnop,p=AAAA")}))
	f.Add(first(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256-PLUS", Data: []byte("p=tls-server-end-point,,n=,r=x")}))
	f.Add([]byte{'p', 0x04, 0, 0, 0})
	sec, err := parseSecret("the-password")
	if err != nil {
		f.Fatal(err)
	}
	p := &Proxy{mockKey: make([]byte, 32)}
	p.st.Store(&state{cfg: &Config{}, secrets: map[string]secret{"alice": sec}})
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, user := range []string{"alice", "nobody"} {
			c := &client{p: p, user: user,
				r: wire.NewReader(bufio.NewReader(bytes.NewReader(in)), maxLoginMessage),
				w: bufio.NewWriter(io.Discard)}
			if err := p.scramAuth(context.Background(), c); err == nil {
				t.Fatalf("%s authenticated without the password from %q", user, in)
			}
		}
	})
}
