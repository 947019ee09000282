package proxy

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// secret is what the proxy knows of a user's password: the plaintext (userlist) or a
// SCRAM-SHA-256 verifier (userlist or auth_query, as pg_authid stores it).
type secret struct {
	plain  string
	scram  scram.StoredCredentials
	exists bool
}

// loadUserlist reads a PgBouncer-style userlist: one `"user" "secret"` per line, # comments.
func loadUserlist(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read userlist: %w", err)
	}
	defer f.Close()
	return parseUserlist(f, file)
}

// parseUserlist reads a userlist from r, named file in errors.
func parseUserlist(r io.Reader, file string) (map[string]string, error) {
	users := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		fields, err := quotedFields(line)
		if err != nil || len(fields) != 2 {
			return nil, fmt.Errorf("userlist %s:%d: want \"user\" \"password\"", file, n)
		}
		users[fields[0]] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read userlist: %w", err)
	}
	return users, nil
}

// quotedFields splits `"a" "b ""c"""` into a, b "c".
func quotedFields(line string) ([]string, error) {
	var out []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
		if line[0] != '"' {
			return nil, errors.New("field not quoted")
		}
		var b strings.Builder
		i := 1
		for ; i < len(line); i++ {
			if line[i] == '"' {
				if i+1 < len(line) && line[i+1] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			b.WriteByte(line[i])
		}
		if i >= len(line) {
			return nil, errors.New("unterminated quote")
		}
		out = append(out, b.String())
		line = line[i+1:]
	}
	return out, nil
}

// parseSecret turns a stored password into a secret: a SCRAM-SHA-256 verifier
// ("SCRAM-SHA-256$iter:salt$StoredKey:ServerKey") or a plaintext password, which gets
// a random salt (so equal passwords get different verifiers and a transcript cannot be
// attacked with one hash per guess for every user at once).
func parseSecret(s string) (secret, error) {
	if !strings.HasPrefix(s, "SCRAM-SHA-256$") {
		if strings.HasPrefix(s, "md5") && len(s) == 35 {
			return secret{}, errors.New("md5 password hashes cannot serve SCRAM: store a SCRAM verifier or the password")
		}
		client, err := scram.SHA256.NewClient("", s, "")
		if err != nil {
			return secret{}, err
		}
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return secret{}, err
		}
		kf := scram.KeyFactors{Salt: string(salt), Iters: 4096}
		return secret{plain: s, scram: client.GetStoredCredentials(kf), exists: true}, nil
	}
	rest := strings.TrimPrefix(s, "SCRAM-SHA-256$")
	iterSalt, keys, ok := strings.Cut(rest, "$")
	iterStr, saltB64, ok2 := strings.Cut(iterSalt, ":")
	storedB64, serverB64, ok3 := strings.Cut(keys, ":")
	if !ok || !ok2 || !ok3 {
		return secret{}, errors.New("malformed SCRAM-SHA-256 verifier")
	}
	iters, err := strconv.Atoi(iterStr)
	if err != nil || iters < 1 {
		return secret{}, errors.New("malformed SCRAM-SHA-256 verifier: iteration count")
	}
	salt, err1 := base64.StdEncoding.DecodeString(saltB64)
	stored, err2 := base64.StdEncoding.DecodeString(storedB64)
	server, err3 := base64.StdEncoding.DecodeString(serverB64)
	if err1 != nil || err2 != nil || err3 != nil {
		return secret{}, errors.New("malformed SCRAM-SHA-256 verifier: base64")
	}
	return secret{exists: true, scram: scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iters},
		StoredKey:  stored, ServerKey: server,
	}}, nil
}

// mockSecret is what an unknown user is challenged with: a salt derived from the
// proxy's own random key and the user name, the same on every try (a fresh salt per
// try would tell an unknown user from a known one), against keys nobody knows.
func (p *Proxy) mockSecret(user string) secret {
	h := hmac.New(sha256.New, p.mockKey)
	h.Write([]byte(user))
	sum := h.Sum(nil)
	return secret{exists: false, scram: scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(sum[:16]), Iters: 4096},
		StoredKey:  sum, ServerKey: sum,
	}}
}

// lookupSecret finds user's secret in the userlist, then through auth_query.
func (p *Proxy) lookupSecret(ctx context.Context, user string) (secret, error) {
	st := p.state()
	if s, ok := st.secrets[user]; ok {
		return s, nil
	}
	cfg := st.cfg
	if cfg.Auth.AuthUser == "" {
		return secret{}, nil
	}
	v, err := p.authQuery.lookup(ctx, cfg, user)
	if err != nil || v == "" {
		return secret{}, err
	}
	return parseSecret(v)
}

// authQuerier runs auth_query on a few server connections kept open between logins,
// so that unauthenticated clients cannot make the proxy open one each.
type authQuerier struct {
	slots chan struct{}       // at most cap(slots) lookups at once
	idle  chan *pgconn.PgConn // connections kept open
}

const authQueryConns = 2

func newAuthQuerier() *authQuerier {
	return &authQuerier{slots: make(chan struct{}, authQueryConns), idle: make(chan *pgconn.PgConn, authQueryConns)}
}

// lookup returns the stored password of user ("" when there is none).
func (a *authQuerier) lookup(ctx context.Context, cfg *Config, user string) (string, error) {
	select {
	case a.slots <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-a.slots }()
	var conn *pgconn.PgConn
	select {
	case conn = <-a.idle:
	default:
		pcfg, err := serverConfig(cfg, "postgres", cfg.Auth.AuthUser, cfg.Auth.AuthPassword)
		if err != nil {
			return "", err
		}
		if conn, err = pgconn.ConnectConfig(ctx, pcfg); err != nil {
			return "", fmt.Errorf("auth_query: connect as %s: %w", cfg.Auth.AuthUser, err)
		}
	}
	res := conn.ExecParams(ctx, cfg.Auth.AuthQuery, [][]byte{[]byte(user)}, nil, nil, nil).Read()
	if res.Err != nil || conn.TxStatus() != 'I' {
		conn.Close(ctx)
		if res.Err == nil {
			res.Err = errors.New("the query left a transaction open")
		}
		return "", fmt.Errorf("auth_query: %w", res.Err)
	}
	a.idle <- conn // room: at most authQueryConns are out, one per slot
	if len(res.Rows) == 0 || len(res.Rows[0]) < 2 || res.Rows[0][1] == nil {
		return "", nil
	}
	return string(res.Rows[0][1]), nil
}

// close closes the kept connections.
func (a *authQuerier) close() {
	for {
		select {
		case c := <-a.idle:
			c.Close(context.Background())
		default:
			return
		}
	}
}

// serverPassword is the password the proxy logs in to PostgreSQL with as user: from
// [users.NAME] or a plaintext userlist entry; "" when the server trusts the proxy.
func (st *state) serverPassword(user string) string {
	if u, ok := st.cfg.Users[user]; ok && u.Password != "" {
		return u.Password
	}
	if s, ok := st.userlist[user]; ok && !strings.HasPrefix(s, "SCRAM-SHA-256$") {
		return s
	}
	return ""
}

// certUser is the common name of a verified TLS client certificate.
func certUser(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.CommonName
}

func (p *Proxy) authenticate(ctx context.Context, c *client, l Listener) error {
	switch l.Auth {
	case "trust":
		return nil
	case "peer":
		if c.osUser == "" {
			return errors.New("peer: no peer credentials")
		}
		if c.osUser == c.user || slices.Contains(p.state().cfg.PeerMap[c.osUser], c.user) {
			return nil
		}
		return fmt.Errorf("peer: OS user %q may not log in as %q", c.osUser, c.user)
	case "cert":
		if cn := certUser(c.tlsState); cn == "" || cn != c.user {
			return fmt.Errorf("cert: certificate common name %q is not the user", cn)
		}
		return nil
	case "scram-sha-256":
		return p.scramAuth(ctx, c)
	}
	return fmt.Errorf("unknown auth method %q", l.Auth)
}

func (p *Proxy) scramAuth(ctx context.Context, c *client) error {
	sec, err := p.lookupSecret(ctx, c.user)
	if err != nil {
		return err
	}
	if !sec.exists {
		// Run the exchange against a credential nobody knows, so an unknown user looks
		// like a wrong password.
		sec = p.mockSecret(c.user)
	}
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return sec.scram, nil })
	if err != nil {
		return err
	}
	conv := srv.NewConversation()
	if err := c.send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}); err != nil {
		return err
	}
	typ, body, err := c.r.Message()
	if err != nil {
		return err
	}
	var init pgproto3.SASLInitialResponse
	if typ != 'p' || init.Decode(body) != nil || init.AuthMechanism != "SCRAM-SHA-256" {
		return errors.New("scram: expected SASLInitialResponse for SCRAM-SHA-256")
	}
	out, err := conv.Step(string(init.Data))
	if err != nil {
		return fmt.Errorf("scram: %w", err)
	}
	if err := c.send(&pgproto3.AuthenticationSASLContinue{Data: []byte(out)}); err != nil {
		return err
	}
	typ, body, err = c.r.Message()
	if err != nil {
		return err
	}
	var resp pgproto3.SASLResponse
	if typ != 'p' || resp.Decode(body) != nil {
		return errors.New("scram: expected SASLResponse")
	}
	out, err = conv.Step(string(resp.Data))
	if err != nil || !conv.Valid() {
		return fmt.Errorf("scram: wrong password: %v", err)
	}
	return c.send(&pgproto3.AuthenticationSASLFinal{Data: []byte(out)})
}
