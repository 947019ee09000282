package proxy

import "testing"

// Plaintext userlist entries get a random salt each (equal passwords, different
// verifiers); an unknown user is challenged with the same salt on every try, and
// another unknown user with another.
func TestSalts(t *testing.T) {
	a, err := parseSecret("same-password")
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseSecret("same-password")
	if err != nil {
		t.Fatal(err)
	}
	if a.scram.Salt == b.scram.Salt || string(a.scram.StoredKey) == string(b.scram.StoredKey) {
		t.Errorf("equal plaintext passwords got the same salt or verifier")
	}
	p := &Proxy{mockKey: []byte("0123456789abcdef0123456789abcdef")}
	m1, m2, other := p.mockSecret("nobody"), p.mockSecret("nobody"), p.mockSecret("someone")
	if m1.scram.Salt != m2.scram.Salt || m1.scram.Iters != 4096 {
		t.Errorf("an unknown user's salt changes between tries")
	}
	if m1.scram.Salt == other.scram.Salt {
		t.Errorf("two unknown users share a salt")
	}
	if m1.exists {
		t.Errorf("a mock secret claims to exist")
	}
}
