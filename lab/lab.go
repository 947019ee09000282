package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	// PGBin holds the PostgreSQL 15 client and server binaries in the guest.
	PGBin = "/usr/lib/postgresql/15/bin"
	// PGData is the guest cluster's data directory.
	PGData = "/var/lib/postgresql/15/main"
	// PGSocketDir is the guest cluster's Unix-socket directory.
	PGSocketDir = "/var/run/postgresql"
	// ClientDomain is a lab domain with OS rights but only unprivileged sepgsql rights.
	ClientDomain = "sepgadm_lab_client_t"
)

// InGuest reports whether this process runs in the lab guest (SEPGADM_LAB=1, set by
// the guest's runner).
func InGuest() bool { return os.Getenv("SEPGADM_LAB") == "1" }

// Require fails the test unless it runs in the lab guest with SELinux enforcing. Lab
// tests never skip: outside the lab they are not even compiled (build tag "lab").
func Require(t testing.TB) {
	t.Helper()
	if !InGuest() {
		t.Fatal("lab test outside the lab guest: run it with make test-lab (SEPGADM_LAB is not 1)")
	}
	mode, err := Enforce()
	if err != nil {
		t.Fatalf("read SELinux mode: %v", err)
	}
	if mode != "Enforcing" {
		t.Fatalf("SELinux is %s in the lab guest, want Enforcing", mode)
	}
}

// Enforce returns the kernel's SELinux mode as getenforce prints it.
func Enforce() (string, error) {
	b, err := os.ReadFile("/sys/fs/selinux/enforce")
	if errors.Is(err, os.ErrNotExist) {
		return "Disabled", nil
	}
	if err != nil {
		return "", fmt.Errorf("read SELinux mode: %w", err)
	}
	if strings.TrimSpace(string(b)) == "1" {
		return "Enforcing", nil
	}
	return "Permissive", nil
}

// DSN is a connection string for database db over the guest's Unix socket as the
// postgres superuser (trusted in the lab's pg_hba.conf; sepgsql still decides).
func DSN(db string) string {
	return fmt.Sprintf("host=%s user=postgres dbname=%s sslmode=disable", PGSocketDir, db)
}

// Context names an SELinux domain to act as: Type is required; Level (e.g. "s0:c5")
// is optional and keeps the caller's level when empty.
type Context struct {
	Type  string
	Level string
}

func (c Context) runconArgs() []string {
	args := []string{"-t", c.Type}
	if c.Level != "" {
		args = append(args, "-l", c.Level)
	}
	return args
}

// Result is what a psql run returned.
type Result struct {
	Stdout, Stderr string
	// SQLState is the SQLSTATE of the first error psql reported, or "".
	SQLState string
	// ExitCode is psql's exit status.
	ExitCode int
	// LoginRefused: psql could not log in (its stderr holds the server's FATAL message).
	LoginRefused bool
}

var sqlstateRE = regexp.MustCompile(`(?m)^(?:ERROR|FATAL):\s+([0-9A-Z]{5}):`)

// PSQL runs sql with psql as the given domain (runcon), connected to database db over
// the Unix socket. psql stops at the first error and reports its SQLSTATE; an error in
// SQL is not an error of PSQL, which fails only when psql could not run at all.
func PSQL(ctx context.Context, as Context, db, sql string) (Result, error) {
	return PSQLDSN(ctx, as, DSN(db), sql)
}

// PSQLDSN is PSQL with any libpq connection string, e.g. to reach the proxy.
func PSQLDSN(ctx context.Context, as Context, dsn, sql string) (Result, error) {
	args := append(as.runconArgs(), "--", filepath.Join(PGBin, "psql"),
		"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", dsn, "-c", sql)
	cmd := exec.CommandContext(ctx, "runcon", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: strings.TrimSpace(stdout.String()), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	case err != nil:
		return res, fmt.Errorf("run psql as %s: %w", as.Type, err)
	}
	if m := sqlstateRE.FindStringSubmatch(res.Stderr); m != nil {
		res.SQLState = m[1]
	}
	res.LoginRefused = res.ExitCode == 2 && strings.Contains(res.Stderr, "FATAL:")
	if res.ExitCode != 0 && res.SQLState == "" && !res.LoginRefused {
		return res, fmt.Errorf("psql as %s exited %d without an SQL error: %s", as.Type, res.ExitCode, res.Stderr)
	}
	return res, nil
}

// ServerLogContains waits up to timeout for a line of the server's stderr log (the
// logging collector's *.log files) that contains every one of parts, and returns it.
func ServerLogContains(ctx context.Context, timeout time.Duration, parts ...string) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		files, _ := filepath.Glob(filepath.Join(PGData, "log", "*.log"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return "", fmt.Errorf("read server log: %w", err)
			}
			for _, line := range strings.Split(string(b), "\n") {
				if containsAll(line, parts) {
					return line, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no server log line in %s/log contains all of %q after %s", PGData, parts, timeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
