package trusted

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDigestIsSHA256Hex(t *testing.T) {
	// FIPS 180-2 test vector; the SQL side computes encode(sha256(convert_to(tok,'UTF8')),'hex').
	if got, want := Digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("Digest(abc) = %s, want %s", got, want)
	}
}

func TestNewTokenIsLongAndRandom(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) != 43 || strings.ContainsAny(tok, "+/=\n ") {
			t.Fatalf("token %q: want 43 base64url characters (32 bytes)", tok)
		}
		if seen[tok] {
			t.Fatal("NewToken repeated a token")
		}
		seen[tok] = true
	}
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	if err := WriteTokenFile(path, "tok-1"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	if got, err := ReadTokenFile(path); err != nil || got != "tok-1" {
		t.Errorf("ReadTokenFile = %q, %v", got, err)
	}
	if err := WriteTokenFile(path, "tok-2"); err != nil {
		t.Fatalf("replacing a 0600 file: %v", err)
	}
	if got, _ := ReadTokenFile(path); got != "tok-2" {
		t.Errorf("after replace: %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := WriteTokenFile(path, "tok-3"); !errors.Is(err, ErrTokenFileExposed) {
		t.Errorf("WriteTokenFile over a 0640 file: %v, want ErrTokenFileExposed", err)
	}
	if _, err := ReadTokenFile(path); !errors.Is(err, ErrTokenFileExposed) {
		t.Errorf("ReadTokenFile of a 0640 file: %v, want ErrTokenFileExposed", err)
	}
	b, _ := os.ReadFile(path)
	if strings.TrimSpace(string(b)) != "tok-2" {
		t.Error("a refused write changed the file")
	}

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTokenFile(empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("ReadTokenFile of an empty file: %v", err)
	}
	if err := WriteTokenFile(dir, "x"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("WriteTokenFile onto a directory: %v", err)
	}
}

func TestQuoteLiteral(t *testing.T) {
	for in, want := range map[string]string{
		"system_u:object_r:t:s0": "'system_u:object_r:t:s0'",
		"it's":                   "'it''s'",
	} {
		if got := quoteLiteral(in); got != want {
			t.Errorf("quoteLiteral(%q) = %s, want %s", in, got, want)
		}
	}
}
