//go:build !lab

package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// writeCert makes a certificate for cn signed by parent (self-signed when parent is nil)
// and writes cert and key as PEM into dir.
func writeCert(t *testing.T, dir, name, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"sepgadm tests"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames:    []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:        isCA, BasicConstraintsValid: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// authProxy starts a proxy with one TCP listener configured by listen (TOML lines).
func authProxy(t *testing.T, listen, extra string) *harness {
	t.Helper()
	c := pg.Get(t)
	setupServer(t, c)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`tag_function = "public.test_tag"
credential_file = %q
%s
[[listen]]
address = "127.0.0.1:0"
%s
[server]
host = %q
port = %d
[[context]]
context = %q
`, filepath.Join(dir, "token"), extra, listen, c.SocketDir, c.Port, ctxA)
	return startWith(t, c, dir, text)
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, "server", "localhost", nil, nil, false)
	h := authProxy(t, fmt.Sprintf("auth = \"trust\"\ntls_cert = %q\ntls_key = %q\n", filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")), "")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.dsn("alice", "")+" sslmode=require")
	if err != nil {
		t.Fatalf("sslmode=require through the proxy: %v", err)
	}
	defer conn.Close(ctx)
	if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
		t.Errorf("pgx connection is %T, want *tls.Conn", conn.PgConn().Conn())
	}
	if label(t, conn) != ctxA {
		t.Error("TLS session does not run under its context")
	}
	// psql with sslmode=require reports SSL in \conninfo.
	out, err := runPsql(h.dsn("alice", "")+" sslmode=require", `\conninfo`)
	if err != nil || !strings.Contains(out, "SSL connection (protocol: TLSv1.3") {
		t.Errorf("psql sslmode=require: %v\n%s", err, out)
	}
}

func TestSCRAMUserlistAndAuthQuery(t *testing.T) {
	dir := t.TempDir()
	ul := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(ul, []byte("# plaintext entry\n\"alice\" \"alice-pw\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// bob's verifier comes from pg_authid through auth_query (his role has PASSWORD 'bobpw').
	h := authProxy(t, "auth = \"scram-sha-256\"\n", fmt.Sprintf("[auth]\nuserlist = %q\nauth_user = \"postgres\"\n", ul))
	ctx := context.Background()
	for _, tt := range []struct {
		user, password string
		ok             bool
	}{
		{"alice", "alice-pw", true},
		{"alice", "wrong", false},
		{"bob", "bobpw", true},
		{"bob", "alice-pw", false},
		{"nobody", "x", false},
	} {
		conn, err := pgx.Connect(ctx, h.dsn(tt.user, "")+" password="+tt.password)
		if tt.ok {
			if err != nil {
				t.Errorf("%s with the right password: %v", tt.user, err)
				continue
			}
			if got := label(t, conn); got != ctxA {
				t.Errorf("%s runs under %q", tt.user, got)
			}
			conn.Close(ctx)
			continue
		}
		if err == nil {
			conn.Close(ctx)
			t.Errorf("%s with password %q logged in", tt.user, tt.password)
		} else if sqlState(err) != "28P01" || strings.Contains(err.Error(), tt.password) {
			t.Errorf("%s with a wrong password: %v, want 28P01 without the password", tt.user, err)
		}
	}
	out, err := runPsql(h.dsn("bob", "")+" password=bobpw", "SELECT current_user")
	if err != nil || strings.TrimSpace(out) != "bob" {
		t.Errorf("psql with SCRAM: %v %s", err, out)
	}
}

func TestCertAuth(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", "test CA", nil, nil, true)
	writeCert(t, dir, "server", "localhost", ca, caKey, false)
	writeCert(t, dir, "alice", "alice", ca, caKey, false)
	h := authProxy(t, fmt.Sprintf("auth = \"cert\"\ntls_cert = %q\ntls_key = %q\ntls_ca = %q\n",
		filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt")), "")
	ctx := context.Background()
	certDSN := fmt.Sprintf(" sslmode=require sslcert=%s sslkey=%s", filepath.Join(dir, "alice.crt"), filepath.Join(dir, "alice.key"))
	conn, err := pgx.Connect(ctx, h.dsn("alice", "")+certDSN)
	if err != nil {
		t.Fatalf("alice with her certificate: %v", err)
	}
	conn.Close(ctx)
	if _, err := pgx.Connect(ctx, h.dsn("bob", "")+certDSN); sqlState(err) != "28P01" {
		t.Errorf("bob with alice's certificate: %v", err)
	}
	if _, err := pgx.Connect(ctx, h.dsn("alice", "")+" sslmode=require"); sqlState(err) != "28P01" {
		t.Errorf("alice without a certificate: %v", err)
	}
}

func TestPeerAuthOnUnixSocket(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	c := pg.Get(t)
	setupServer(t, c)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`tag_function = "public.test_tag"
credential_file = %q
[peer_map]
%q = ["alice"]
[[listen]]
unix_socket_dir = %q
port = 7000
auth = "peer"
[server]
host = %q
port = %d
[[context]]
context = %q
`, filepath.Join(dir, "token"), me.Username, dir, c.SocketDir, c.Port, ctxA)
	startWith(t, c, dir, text)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=7000 user=alice dbname=postgres", dir))
	if err != nil {
		t.Fatalf("peer as %s mapped to alice: %v", me.Username, err)
	}
	if got := label(t, conn); got != ctxA {
		t.Errorf("label %q", got)
	}
	conn.Close(ctx)
	if _, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=7000 user=bob dbname=postgres", dir)); sqlState(err) != "28P01" {
		t.Errorf("peer as %s to unmapped bob: %v", me.Username, err)
	}
}
