package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func startupPacket(code uint32, body []byte) []byte {
	b := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(b, uint32(8+len(body)))
	binary.BigEndian.PutUint32(b[4:], code)
	return append(b, body...)
}

func TestReadStartup(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Startup
		wantErr string
	}{
		{"startup", startupPacket(ProtocolV3, []byte("user\x00alice\x00database\x00demo\x00\x00")),
			Startup{Code: ProtocolV3, Params: map[string]string{"user": "alice", "database": "demo"}}, ""},
		{"ssl", startupPacket(SSLRequestCode, nil), Startup{Code: SSLRequestCode}, ""},
		{"gssenc", startupPacket(GSSENCRequest, nil), Startup{Code: GSSENCRequest}, ""},
		{"cancel", startupPacket(CancelRequestCode, []byte{0, 0, 0, 7, 1, 2, 3, 4}),
			Startup{Code: CancelRequestCode, CancelPID: 7, CancelKey: []byte{1, 2, 3, 4}}, ""},
		{"no user", startupPacket(ProtocolV3, []byte("database\x00demo\x00\x00")), Startup{}, "no user"},
		{"unterminated", startupPacket(ProtocolV3, []byte("user\x00alice")), Startup{}, "has no value"},
		{"protocol 2", startupPacket(2<<16, []byte("user\x00a\x00\x00")), Startup{}, "unsupported protocol version 2.0"},
		{"too long", func() []byte { b := make([]byte, 8); binary.BigEndian.PutUint32(b, 20000); return b }(), Startup{}, "startup packet length 20000"},
		{"short", []byte{0, 0}, Startup{}, "read startup packet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadStartup(bytes.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestReaderFramesAndLimits(t *testing.T) {
	var in []byte
	in = AppendMessage(in, 'Q', []byte("SELECT 1\x00"))
	in = AppendMessage(in, 'P', []byte("s1\x00SELECT $1\x00\x00\x00"))
	in = AppendMessage(in, 'd', bytes.Repeat([]byte{'x'}, 100))
	r := NewReader(bufio.NewReader(bytes.NewReader(in)), 64)
	typ, body, err := r.Message()
	if err != nil || typ != 'Q' || QueryText(typ, body) != "SELECT 1" {
		t.Fatalf("Q: %c %q %v", typ, body, err)
	}
	typ, body, err = r.Message()
	if err != nil || typ != 'P' || QueryText(typ, body) != "SELECT $1" {
		t.Fatalf("P: %c %q %v", typ, body, err)
	}
	if _, _, err = r.Header(); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "exceeds the limit of 64") {
		t.Fatalf("oversized message: %v", err)
	}
}

func TestCopyBodyForwardsUnchanged(t *testing.T) {
	in := AppendMessage(nil, 'D', bytes.Repeat([]byte("row"), 50000))
	r := NewReader(bufio.NewReader(bytes.NewReader(in)), 1<<20)
	typ, n, err := r.Header()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := r.CopyBody(&out, typ, n); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), in) {
		t.Error("forwarded frame differs from the input")
	}
}

func FuzzReadStartup(f *testing.F) {
	f.Add(startupPacket(ProtocolV3, []byte("user\x00alice\x00database\x00demo\x00\x00")))
	f.Add(startupPacket(SSLRequestCode, nil))
	f.Add(startupPacket(CancelRequestCode, []byte{0, 0, 0, 7, 1, 2, 3, 4}))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := ReadStartup(bytes.NewReader(in))
		if err == nil && s.Code == ProtocolV3 && s.Params["user"] == "" {
			t.Fatal("accepted a startup message without user")
		}
	})
}

func FuzzReader(f *testing.F) {
	f.Add(AppendMessage(AppendMessage(nil, 'Q', []byte("SELECT 1\x00")), 'X', nil))
	f.Add(AppendMessage(nil, 'P', []byte("\x00SELECT sepgadm.tag($1,$2)\x00\x00\x00")))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bufio.NewReader(bytes.NewReader(in)), 4096)
		for range 1000 {
			typ, body, err := r.Message()
			if err != nil {
				return
			}
			if len(body) > 4096 {
				t.Fatalf("body of %d bytes over the limit", len(body))
			}
			_ = QueryText(typ, body)
		}
	})
}
