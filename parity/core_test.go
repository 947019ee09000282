//go:build !lab

package parity_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sepgadm/sepgadm/internal/pgtest"
	"github.com/sepgadm/sepgadm/proxy"
)

// sessionModeDifferences are the core tests whose output through the proxy in session
// mode may differ from a direct run, each because the server connection is reused (as
// through any session pooler): nothing the proxy itself does shows.
var sessionModeDifferences = map[string]string{
	"guc":   "plpgsql is already loaded in the reused backend, so its reserved prefix errors instead of warning",
	"stats": "the reused backend's own statistics counters already moved",
	"temp":  "the reused backend's temporary namespace exists already, so PREPARE TRANSACTION reaches the max_prepared_transactions check first",
}

// TestCoreRegressionSuite runs PostgreSQL's core regression suite (217 tests, one at a
// time) straight against a server, then through sepgadm in session mode, which must
// give identical output but for the named sessionModeDifferences, then through sepgadm
// in transaction mode, which must complete (no hang) and whose differences are listed.
// make setup fetches the suite (parity/fetch.sh).
func TestCoreRegressionSuite(t *testing.T) {
	suite := os.Getenv("SEPGADM_PG_REGRESS")
	if suite == "" {
		suite, _ = filepath.Abs("../build/pgregress")
	}
	pgRegress := filepath.Join(pgtest.DefaultBinDir, "../lib/pgxs/src/test/regress/pg_regress")
	for _, need := range []string{filepath.Join(suite, ".fetched"), pgRegress} {
		if _, err := os.Stat(need); err != nil {
			if pgtest.RequireAll() {
				t.Fatalf("the regression suite is missing (%v): run make setup", err)
			}
			t.Skipf("the regression suite is missing (%v): run make setup", err)
		}
	}
	ctx := context.Background()
	c, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		if pgtest.RequireAll() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	defer c.Stop()

	direct := runSuite(t, pgRegress, suite, "direct", c.SocketDir, c.Port)
	for _, mode := range []string{"session", "transaction"} {
		sock, stop := startProxy(t, c, mode)
		got := runSuite(t, pgRegress, suite, mode, sock, 6432)
		stop() // its pooled connections would keep the next run from dropping the database
		var differ []string
		for name, out := range direct {
			if !bytes.Equal(out, got[name]) {
				differ = append(differ, name)
			}
		}
		slices.Sort(differ)
		t.Logf("%s mode: %d of %d tests identical to the direct run; differing: %v", mode, len(direct)-len(differ), len(direct), differ)
		if mode == "transaction" {
			continue // completing is the test; the differences are session state (see docs)
		}
		for _, name := range differ {
			if _, ok := sessionModeDifferences[name]; !ok {
				t.Errorf("session mode: %s differs from the direct run:\n%s", name, diff(t, direct[name], got[name]))
			}
		}
	}
}

// runSuite runs the serial schedule against host:port and returns each test's output.
// It fails the test unless every test of the schedule ran.
func runSuite(t *testing.T, pgRegress, suite, name, host string, port int) map[string][]byte {
	t.Helper()
	// Not under t.TempDir(): its parent is private to root, and pg_regress and the
	// server (which writes COPY files there) run as the postgres OS user.
	out, err := os.MkdirTemp("", "sepgadm-parity-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(out) })
	cred, err := pgtest.ServerUser()
	if err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		if err := os.Chown(out, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pgRegress, "--inputdir="+suite, "--dlpath="+suite, "--bindir="+pgtest.DefaultBinDir,
		"--schedule="+filepath.Join(suite, "serial_schedule"), "--host="+host, fmt.Sprintf("--port=%d", port),
		"--user="+pgtest.Superuser, "--outputdir="+out)
	cmd.Dir = suite
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	log, _ := cmd.CombinedOutput() // failing tests make it exit 1: the outputs are compared instead
	results, _ := filepath.Glob(filepath.Join(out, "results", "*.out"))
	want := len(regexp.MustCompile(`(?m)^test: `).FindAllString(mustRead(t, filepath.Join(suite, "serial_schedule")), -1))
	if len(results) != want {
		t.Fatalf("%s: %d of %d tests ran (pg_regress: %v)\n%s", name, len(results), want, ctx.Err(), lastLines(string(log), 30))
	}
	m := map[string][]byte{}
	for _, f := range results {
		m[strings.TrimSuffix(filepath.Base(f), ".out")] = []byte(mustRead(t, f))
	}
	return m
}

// startProxy runs sepgadm in process (tagging off: there is no SELinux on this tier) in
// front of c, on a Unix socket in a new directory.
func startProxy(t *testing.T, c *pgtest.Cluster, mode string) (sockDir string, stop func()) {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "sepgadm-parity-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	if err := os.Chmod(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := proxy.ParseConfig(strings.NewReader(fmt.Sprintf(`tagging = "off"
pool_mode = %q
max_client_conn = 200
default_pool_size = 20
[[listen]]
unix_socket_dir = %q
port = 6432
auth = "trust"
[server]
host = %q
port = %d
`, mode, sockDir, c.SocketDir, c.Port)), "parity.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Ready():
	case err := <-done:
		t.Fatalf("proxy: %v", err)
	}
	return sockDir, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy: %v", err)
		}
	}
}

func mustRead(t *testing.T, f string) string {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func diff(t *testing.T, a, b []byte) string {
	t.Helper()
	dir := t.TempDir()
	fa, fb := filepath.Join(dir, "direct"), filepath.Join(dir, "proxy")
	_ = os.WriteFile(fa, a, 0o644)
	_ = os.WriteFile(fb, b, 0o644)
	out, _ := exec.Command("diff", "-u", fa, fb).CombinedOutput()
	return lastLines(string(out), 40)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
