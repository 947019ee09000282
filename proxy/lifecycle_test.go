//go:build !lab

package proxy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sepgadm/sepgadm/proxy"
)

func TestReloadReplacesRulesWithoutDroppingClients(t *testing.T) {
	c := pg.Get(t)
	setupServer(t, c)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "sepgadm.toml")
	write := func(ctx string) {
		text := fmt.Sprintf("tag_function = \"public.test_tag\"\ncredential_file = %q\n[[listen]]\naddress = \"127.0.0.1:0\"\nauth = \"trust\"\n[server]\nhost = %q\nport = %d\n[[context]]\nuser = \"alice\"\ncontext = %q\n",
			filepath.Join(dir, "token"), c.SocketDir, c.Port, ctx)
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(ctxA)
	cfg, err := proxy.LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	h := runConfig(t, cfg, dir)
	before := h.connect(t, "alice", "")
	if got := label(t, before); got != ctxA {
		t.Fatalf("before reload: %q", got)
	}
	write(ctxB)
	if err := h.p.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := label(t, before); got != ctxA {
		t.Errorf("a client connected before the reload changed context: %q", got)
	}
	after := h.connect(t, "alice", "")
	if got := label(t, after); got != ctxB {
		t.Errorf("a client after the reload runs under %q, want %q", got, ctxB)
	}
	// A broken file is refused and the running configuration stays.
	if err := os.WriteFile(file, []byte("tagging = \"maybe\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.p.Reload(); err == nil || !strings.Contains(err.Error(), "sepgadm.toml") {
		t.Errorf("reload of a broken file: %v", err)
	}
	if got := label(t, h.connect(t, "alice", "")); got != ctxB {
		t.Errorf("after a failed reload: %q", got)
	}
}

func runConfig(t *testing.T, cfg *proxy.Config, dir string) *harness {
	t.Helper()
	c := pg.Get(t)
	h := startWithConfig(t, c, dir, cfg)
	return h
}

func TestDrainLetsTransactionsFinish(t *testing.T) {
	h := startProxy(t, "shutdown_timeout = \"20s\"")
	ctx := context.Background()
	conn := h.connect(t, "alice", "")
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	drained := make(chan struct{})
	go func() { h.p.Drain(20 * time.Second); close(drained) }()
	time.Sleep(200 * time.Millisecond)
	if _, err := pgx.Connect(ctx, h.dsn("alice", "")); err == nil {
		t.Error("a new client was accepted while draining")
	}
	if _, err := tx.Exec(ctx, "INSERT INTO canary VALUES ('drain')"); err != nil {
		t.Fatalf("in-flight transaction during drain: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not finish after the last client left")
	}
}

func TestQueryWaitTimeoutAndMaxClientConn(t *testing.T) {
	h := startProxy(t, "query_wait_timeout = \"300ms\"\nmax_client_conn = 3\n[users.alice]\npool_size = 1")
	ctx := context.Background()
	hold := h.connect(t, "alice", "")
	_, err := pgx.Connect(ctx, h.dsn("alice", ""))
	if err == nil || !strings.Contains(err.Error(), "query_wait_timeout") {
		t.Errorf("second client on a full pool of one: %v, want query_wait_timeout", err)
	}
	_ = hold
	b1 := h.connect(t, "bob", "")
	b2 := h.connect(t, "bob", "")
	_, _ = b1, b2
	_, err = pgx.Connect(ctx, h.dsn("bob", ""))
	if sqlState(err) != "53300" {
		t.Errorf("fourth client with max_client_conn 3: %v, want 53300", err)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	h := startProxy(t, "metrics_listen = \"127.0.0.1:0\"")
	h.connect(t, "alice", "")
	m := metricsOf(t, h)
	for _, name := range []string{`sepgadm_tags_total{kind="client",result="ok"}`, "sepgadm_clients", "sepgadm_server_connections", `sepgadm_client_logins_total{result="ok"}`, "sepgadm_tag_seconds_count"} {
		if v, ok := m[name]; !ok || v != 1 {
			t.Errorf("metric %s = %v (present: %v), want 1", name, v, ok)
		}
	}
}

func TestAdminPauseResumeAndShutdown(t *testing.T) {
	h := startProxy(t, "query_wait_timeout = \"2s\"")
	ctx := context.Background()
	admin := func(sql string) {
		t.Helper()
		if out, err := runPsql(h.adminDSN("admin"), sql); err != nil {
			t.Fatalf("%s: %v\n%s", sql, err, out)
		}
	}
	first := h.connect(t, "alice", "")
	first.Close(ctx) // the pool for (postgres, alice) exists now
	admin("PAUSE postgres")
	errc := make(chan error, 1)
	go func() {
		c, err := pgx.Connect(ctx, h.dsn("alice", ""))
		if err == nil {
			c.Close(ctx)
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("a client logged in while its pool was paused: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	admin("RESUME")
	if err := <-errc; err != nil {
		t.Fatalf("the waiting client after RESUME: %v", err)
	}
	admin("SHUTDOWN")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := pgx.Connect(ctx, h.dsn("alice", "")); err != nil {
			return // no longer accepting
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the proxy still accepts clients after SHUTDOWN")
}

func TestServerIdleTimeoutAndLifetime(t *testing.T) {
	h := startProxy(t, "server_idle_timeout = \"1s\"\nserver_lifetime = \"2s\"")
	ctx := context.Background()
	c1 := h.connect(t, "alice", "")
	pid1 := backendPID(t, c1)
	c1.Close(ctx)
	// Idle for longer than server_idle_timeout: the reaper closes it.
	time.Sleep(2500 * time.Millisecond)
	admin, err := h.cluster.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var alive bool
	if err := admin.QueryRow(ctx, "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1", pid1).Scan(&alive); err != nil {
		t.Fatal(err)
	}
	if alive {
		t.Errorf("backend %d still open after server_idle_timeout", pid1)
	}
	// A connection past server_lifetime is closed at release instead of pooled.
	c2 := h.connect(t, "alice", "")
	pid2 := backendPID(t, c2)
	time.Sleep(2500 * time.Millisecond)
	c2.Close(ctx)
	c3 := h.connect(t, "alice", "")
	if pid := backendPID(t, c3); pid == pid2 {
		t.Errorf("backend %d reused after server_lifetime", pid)
	}
}

// The real binary: SIGHUP reloads without dropping clients, SIGTERM drains and exits 0.
func TestSignals(t *testing.T) {
	c := pg.Get(t)
	setupServer(t, c)
	dir := t.TempDir()
	bin := filepath.Join(dir, "sepgadm")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/sepgadm").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "sepgadm.toml")
	write := func(ctx string) {
		text := fmt.Sprintf("tag_function = \"public.test_tag\"\ncredential_file = %q\n[[listen]]\nunix_socket_dir = %q\nport = 7100\nauth = \"trust\"\n[server]\nhost = %q\nport = %d\n[[context]]\nuser = \"alice\"\ncontext = %q\n",
			filepath.Join(dir, "token"), dir, c.SocketDir, c.Port, ctx)
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(ctxA)
	var stderr syncBuffer
	cmd := exec.Command(bin, "proxy", "--config", file)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	dsn := fmt.Sprintf("host=%s port=7100 user=alice dbname=postgres", dir)
	ctx := context.Background()
	var conn *pgx.Conn
	var err error
	for range 50 {
		if conn, err = pgx.Connect(ctx, dsn); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("proxy did not come up: %v\n%s", err, stderr.String())
	}
	if got := label(t, conn); got != ctxA {
		t.Fatalf("label %q", got)
	}
	write(ctxB)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "configuration reloaded") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	c2, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if got := label(t, c2); got != ctxB {
		t.Errorf("after SIGHUP a new client runs under %q, want %q", got, ctxB)
	}
	if got := label(t, conn); got != ctxA {
		t.Errorf("the client connected before SIGHUP now runs under %q", got)
	}
	c2.Close(ctx)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := label(t, conn); got != ctxA {
		t.Errorf("a client during the drain: %q", got)
	}
	conn.Close(ctx)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sepgadm proxy after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("sepgadm proxy did not exit after SIGTERM and its last client leaving")
	}
}

// An idle server connection whose backend was terminated is noticed at checkout and
// replaced; the client never sees it.
func TestTerminatedIdleBackendIsReplaced(t *testing.T) {
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			h := startProxy(t, fmt.Sprintf("pool_mode = %q\n[users.alice]\npool_size = 1", mode))
			ctx := context.Background()
			c1 := h.connect(t, "alice", "")
			pid := backendPID(t, c1)
			c1.Close(ctx)
			admin, err := h.cluster.Connect(ctx, "postgres")
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close(ctx)
			if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			c2, err := pgx.Connect(ctx, h.dsn("alice", ""))
			if err != nil {
				t.Fatalf("login after the idle backend was terminated: %v", err)
			}
			defer c2.Close(ctx)
			if got := label(t, c2); got != ctxA {
				t.Errorf("label %q", got)
			}
			if p2 := backendPID(t, c2); p2 == pid {
				t.Errorf("still on the terminated backend %d", pid)
			}
		})
	}
}
