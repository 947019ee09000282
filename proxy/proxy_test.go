//go:build !lab

package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sepgadm/sepgadm/internal/pgtest"
	"github.com/sepgadm/sepgadm/proxy"
	"github.com/sepgadm/sepgadm/trusted"
)

// Host tier: no SELinux here, so the switch is exercised through a test-only stand-in
// for sepgadm.tag, installed by these tests under tag_function = "public.test_tag" (never
// by the product). It keeps the "label" in a session setting the client can read.

var pg = pgtest.NewShared(pgtest.Options{})

func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }

const (
	ctxA     = "system_u:system_r:tenant_a_t:s0"
	ctxB     = "system_u:system_r:tenant_b_t:s0:c5"
	ctxProxy = "system_u:system_r:proxy_t:s0"
	token    = "test-token-0123456789"
)

var setupOnce sync.Once

func setupServer(t testing.TB, c *pgtest.Cluster) {
	t.Helper()
	var err error
	setupOnce.Do(func() {
		ctx := context.Background()
		var conn *pgx.Conn
		conn, err = c.Connect(ctx, "postgres")
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		for _, s := range []string{
			"CREATE ROLE alice LOGIN", "CREATE ROLE bob LOGIN PASSWORD 'bobpw'", "CREATE ROLE app LOGIN",
			"CREATE ROLE denied LOGIN", "CREATE ROLE mismatch LOGIN", "CREATE ROLE nocontext LOGIN", "CREATE ROLE leaky LOGIN",
			"GRANT ALL ON SCHEMA public TO PUBLIC",
			"CREATE TABLE canary (v text)", "GRANT ALL ON canary TO PUBLIC",
			`CREATE FUNCTION public.test_tag(cred text, ctx text) RETURNS text LANGUAGE plpgsql AS $$
			BEGIN
				IF cred IS DISTINCT FROM '` + token + `' THEN
					RAISE EXCEPTION 'sepgadm: invalid credential' USING ERRCODE = '28000';
				END IF;
				IF ctx LIKE '%:deny_t:%' THEN
					RAISE EXCEPTION 'SELinux: security policy violation' USING ERRCODE = '42501';
				END IF;
				IF ctx LIKE '%:mismatch_t:%' THEN
					RETURN 'system_u:system_r:somebody_else_t:s0';
				END IF;
				PERFORM set_config('sepgadm_test.label', coalesce(ctx, '` + ctxProxy + `'), false);
				RETURN coalesce(ctx, '` + ctxProxy + `');
			END $$`,
			// Stand-in for sepgsql's getcon, for verify_label = "always".
			`CREATE FUNCTION pg_catalog.sepgsql_getcon() RETURNS text LANGUAGE sql AS
				$$ SELECT current_setting('sepgadm_test.label', true) $$`,
		} {
			if _, err = conn.Exec(ctx, s); err != nil {
				err = fmt.Errorf("%s: %w", s, err)
				return
			}
		}
		// What sepgadm install --proxy-role does; leaky is left as it was.
		for _, role := range []string{"alice", "bob", "app", "denied", "mismatch", "nocontext", "postgres"} {
			if err = trusted.ProtectRole(ctx, conn, role); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

type harness struct {
	cluster *pgtest.Cluster
	p       *proxy.Proxy
	tcp     string // host:port
	port    int
	dir     string // unix socket dir, token, session log
	logs    *syncBuffer
}

// syncBuffer collects the proxy's log for assertions while the proxy writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProxy runs a proxy in process in front of the shared cluster.
func startProxy(t testing.TB, extra string) *harness {
	t.Helper()
	c := pg.Get(t)
	setupServer(t, c)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`
tag_function = "public.test_tag"
credential_file = %q
session_log = %q
admin_users = ["admin"]
%s

[[listen]]
address = "127.0.0.1:0"
auth = "trust"

[[listen]]
unix_socket_dir = %q
port = 6432
auth = "trust"

[server]
host = %q
port = %d

[[context]]
user = "alice"
context = %q

[[context]]
user = "bob"
context = %q

[[context]]
user = "app"
application_name = "tenant-a*"
context = %q

[[context]]
user = "app"
application_name = "tenant-b*"
context = %q

[[context]]
user = "denied"
context = "system_u:system_r:deny_t:s0"

[[context]]
user = "mismatch"
context = "system_u:system_r:mismatch_t:s0"

[[context]]
user = "leaky"
context = %q
`, filepath.Join(dir, "token"), filepath.Join(dir, "sessions.jsonl"), extra, dir, c.SocketDir, c.Port, ctxA, ctxB, ctxA, ctxB, ctxA)
	return startWith(t, c, dir, text)
}

func startWith(t testing.TB, c *pgtest.Cluster, dir, text string) *harness {
	t.Helper()
	cfg, err := proxy.ParseConfig(strings.NewReader(text), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return startWithConfig(t, c, dir, cfg)
}

func startWithConfig(t testing.TB, c *pgtest.Cluster, dir string, cfg *proxy.Config) *harness {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := proxy.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Ready():
	case err := <-done:
		t.Fatalf("proxy did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy Run: %v", err)
		}
	})
	h := &harness{cluster: c, p: p, dir: dir, logs: logs}
	for _, a := range p.Addrs() {
		if ta, ok := a.(*net.TCPAddr); ok {
			h.tcp, h.port = ta.String(), ta.Port
		}
	}
	return h
}

func (h *harness) dsn(user, app string) string {
	d := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=disable", h.port, user)
	if app != "" {
		d += " application_name=" + app
	}
	return d
}

// adminDSN reaches the admin console on the Unix socket (it is not served on TCP trust).
func (h *harness) adminDSN(user string) string {
	return fmt.Sprintf("host=%s port=6432 user=%s dbname=sepgadm", h.dir, user)
}

func (h *harness) connect(t *testing.T, user, app string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), h.dsn(user, app))
	if err != nil {
		t.Fatalf("connect through the proxy as %s: %v", user, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func label(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var l string
	if err := conn.QueryRow(context.Background(), "SELECT coalesce(current_setting('sepgadm_test.label', true), '')").Scan(&l); err != nil {
		t.Fatal(err)
	}
	return l
}

func backendPID(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var pid int
	if err := conn.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestEachClientRunsUnderItsContext(t *testing.T) {
	h := startProxy(t, "")
	for _, tt := range []struct{ user, app, want string }{
		{"alice", "", ctxA}, {"bob", "", ctxB}, {"app", "tenant-a-web", ctxA}, {"app", "tenant-b-batch", ctxB},
	} {
		conn := h.connect(t, tt.user, tt.app)
		if got := label(t, conn); got != tt.want {
			t.Errorf("%s/%s runs under %q, want %q", tt.user, tt.app, got, tt.want)
		}
		var app string
		if err := conn.QueryRow(context.Background(), "SHOW application_name").Scan(&app); err != nil || app != tt.app {
			t.Errorf("application_name through the proxy = %q (%v), want %q", app, err, tt.app)
		}
	}
}

func TestServerConnectionPassesBetweenContexts(t *testing.T) {
	h := startProxy(t, "[users.app]\npool_size = 1\n")
	ctx := context.Background()
	a := h.connect(t, "app", "tenant-a")
	pidA := backendPID(t, a)
	if got := label(t, a); got != ctxA {
		t.Fatalf("A runs under %q", got)
	}
	if _, err := a.Exec(ctx, "SET work_mem = '7MB'"); err != nil {
		t.Fatal(err)
	}
	a.Close(ctx)

	b := h.connect(t, "app", "tenant-b")
	if pid := backendPID(t, b); pid != pidA {
		t.Fatalf("B got backend %d, want the reused %d (pool_size 1)", pid, pidA)
	}
	if got := label(t, b); got != ctxB {
		t.Errorf("B on A's old server connection runs under %q, want %q", got, ctxB)
	}
	var wm string
	_ = b.QueryRow(ctx, "SHOW work_mem").Scan(&wm)
	if wm == "7MB" {
		t.Error("A's SET work_mem leaked to B: DISCARD ALL did not run")
	}
	// B leaves in the middle of a transaction, without Terminate: that server connection
	// must be closed, never handed to the next client.
	if _, err := b.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	_ = b.PgConn().Conn().Close()

	a2 := h.connect(t, "app", "tenant-a")
	if pid := backendPID(t, a2); pid == pidA {
		t.Errorf("the server connection of a client that vanished mid-transaction was reused (pid %d)", pid)
	}
	if got := label(t, a2); got != ctxA {
		t.Errorf("next client runs under %q, want %q", got, ctxA)
	}
}

func TestFailClosed(t *testing.T) {
	h := startProxy(t, "")
	ctx := context.Background()
	for _, tt := range []struct {
		user, code, msg string
	}{
		{"denied", "42501", "sepgadm: could not switch the session to system_u:system_r:deny_t:s0"},
		// What the server returned to the proxy's own call is never shown to a client.
		{"mismatch", "42501", "sepgadm: could not switch the session to system_u:system_r:mismatch_t:s0: the switch was not confirmed"},
		{"nocontext", "28000", "sepgadm: no SELinux context for this client"},
	} {
		t.Run(tt.user, func(t *testing.T) {
			// psql sends its statement right after login: it must never run.
			cmd := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
				"-c", "INSERT INTO canary VALUES ('"+tt.user+"')", h.dsn(tt.user, ""))
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("psql as %s succeeded:\n%s", tt.user, out)
			}
			if !strings.Contains(string(out), "FATAL:  sepgadm: ") || !strings.Contains(string(out), tt.msg) ||
				strings.Contains(string(out), "somebody_else_t") {
				t.Errorf("psql as %s said:\n%s\nwant FATAL with %q", tt.user, out, tt.msg)
			}
			_, err = pgx.Connect(ctx, h.dsn(tt.user, ""))
			if sqlState(err) != tt.code {
				t.Errorf("pgx as %s: %v, want SQLSTATE %s", tt.user, err, tt.code)
			}
		})
	}
	admin, err := h.cluster.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM canary WHERE v IN ('denied', 'mismatch', 'nocontext')").Scan(&n); err != nil || n != 0 {
		t.Fatalf("a refused client's statement ran: %d canary rows (%v)", n, err)
	}
}

func TestWrongCredentialRefusesEveryClient(t *testing.T) {
	h := startProxy(t, "")
	if err := os.WriteFile(filepath.Join(h.dir, "token"), []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.p.Reload(); err == nil {
		t.Fatal("Reload of a proxy built from a string config should fail (no file)")
	}
	// A fresh proxy reading the wrong token.
	c := pg.Get(t)
	text := fmt.Sprintf("tag_function = \"public.test_tag\"\ncredential_file = %q\n[[listen]]\naddress = \"127.0.0.1:0\"\nauth = \"trust\"\n[server]\nhost = %q\nport = %d\n[[context]]\nuser = \"alice\"\ncontext = %q\n",
		filepath.Join(h.dir, "token"), c.SocketDir, c.Port, ctxA)
	h2 := startWith(t, c, h.dir, text)
	_, err := pgx.Connect(context.Background(), h2.dsn("alice", ""))
	if sqlState(err) != "28000" || !strings.Contains(err.Error(), "sepgadm:") {
		t.Fatalf("login with a wrong proxy credential: %v, want 28000 sepgadm: ...", err)
	}
	if strings.Contains(h2.logs.String(), "wrong") && strings.Contains(h2.logs.String(), "credential_file") {
		t.Log(h2.logs.String())
	}
	if strings.Contains(h.logs.String()+h2.logs.String(), token) {
		t.Fatal("the token appears in the proxy's log")
	}
}

func TestClientCallToSwitchFunctionIsRefused(t *testing.T) {
	h := startProxy(t, "")
	ctx := context.Background()
	for _, sql := range []string{
		"SELECT public.test_tag('x', 'y')",
		`select "public"."test_tag"('x', NULL)`,
		"SELECT test_tag ( 'x', 'y' )",
	} {
		conn := h.connect(t, "alice", "")
		_, err := conn.Exec(ctx, sql)
		if sqlState(err) != "42501" || !strings.Contains(err.Error(), "sepgadm: statements that call the switch function are refused") {
			t.Errorf("%s: %v, want 42501 refusal", sql, err)
		}
	}
}

func TestPsqlAndUnixSocket(t *testing.T) {
	h := startProxy(t, "")
	out, err := exec.Command("psql", "-X", "-At", "-h", h.dir, "-p", "6432", "-U", "alice", "-d", "postgres",
		"-c", "SELECT current_setting('sepgadm_test.label')", "-c", `\conninfo`).CombinedOutput()
	if err != nil {
		t.Fatalf("psql -h %s: %v\n%s", h.dir, err, out)
	}
	if !strings.Contains(string(out), ctxA) || !strings.Contains(string(out), `via socket in "`+h.dir+`"`) {
		t.Errorf("psql over the proxy's Unix socket:\n%s", out)
	}
}

func TestPgbenchModes(t *testing.T) {
	pgbenchThrough(t, startProxy(t, ""), 4, 50)
}

// pgbenchThrough initialises pgbench's tables through the proxy as alice, then runs
// clients × txns transactions in each query mode and checks every one was processed.
func pgbenchThrough(t *testing.T, h *harness, clients, txns int) {
	t.Helper()
	env := append(os.Environ(), "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(h.port), "PGUSER=alice", "PGDATABASE=postgres")
	init := exec.Command("pgbench", "-i", "-s", "1", "-q")
	init.Env = env
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i through the proxy: %v\n%s", err, out)
	}
	want := fmt.Sprintf("number of transactions actually processed: %d/%d", clients*txns, clients*txns)
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command("pgbench", "-n", "-M", mode, "-c", strconv.Itoa(clients), "-j", "2", "-t", strconv.Itoa(txns))
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), want) {
				t.Fatalf("pgbench -M %s, %d clients: %v\n%s", mode, clients, err, out)
			}
		})
	}
}

// TestPgxTransparency drives pgx's batches, pipelines, COPY, large values, errors,
// notices and cancel through both pool modes (in transaction mode these take the relay's
// hand-off paths: pipelined requests, COPY FROM STDIN, a slow statement).
func TestPgxTransparency(t *testing.T) {
	for _, tc := range []struct{ name, mode, extra string }{
		{"session", "session", ""},
		{"transaction", "transaction", ""},
	} {
		t.Run(tc.name, func(t *testing.T) { testPgxTransparency(t, tc.mode, tc.extra) })
	}
}

func testPgxTransparency(t *testing.T, mode, extra string) {
	h := startProxy(t, fmt.Sprintf("pool_mode = %q\n%s", mode, extra))
	ctx := context.Background()
	var notices []string
	cfg, err := pgx.ParseConfig(h.dsn("alice", "pgx-test"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// In transaction mode, twice: prepared statements are re-used on connections that
	// already hold them.
	passes := 1
	if mode == "transaction" {
		passes = 2
	}
	for pass := range passes {
		t.Run(fmt.Sprintf("pass %d", pass+1), func(t *testing.T) { pgxTransparencyPass(t, conn, mode, &notices) })
	}
}

func pgxTransparencyPass(t *testing.T, conn *pgx.Conn, mode string, notices *[]string) {
	ctx := context.Background()
	t.Run("batch", func(t *testing.T) {
		b := &pgx.Batch{}
		for i := range 100 {
			b.Queue("SELECT $1::int * 2", i)
		}
		br := conn.SendBatch(ctx, b)
		for i := range 100 {
			var v int
			if err := br.QueryRow().Scan(&v); err != nil || v != i*2 {
				t.Fatalf("batch row %d: %d %v", i, v, err)
			}
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("pipeline", func(t *testing.T) {
		pl := conn.PgConn().StartPipeline(ctx)
		for i := range 10 {
			pl.SendQueryParams("SELECT $1::text", [][]byte{[]byte(strconv.Itoa(i))}, nil, nil, nil)
		}
		if err := pl.Sync(); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			r, err := pl.GetResults()
			if err != nil {
				t.Fatal(err)
			}
			res := r.(*pgconn.ResultReader).Read()
			if res.Err != nil || string(res.Rows[0][0]) != strconv.Itoa(i) {
				t.Fatalf("pipeline result %d: %v %v", i, res.Rows, res.Err)
			}
		}
		if _, err := pl.GetResults(); err != nil {
			t.Fatal(err)
		}
		if err := pl.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("copy in and out", func(t *testing.T) {
		// Not a temporary table: in transaction mode the next statement may run on
		// another server connection.
		table := "copyt_" + mode
		if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+table+"; CREATE TABLE "+table+" (a int, b text)"); err != nil {
			t.Fatal(err)
		}
		rows := make([][]any, 10000)
		for i := range rows {
			rows[i] = []any{i, strings.Repeat("z", i%100)}
		}
		n, err := conn.CopyFrom(ctx, pgx.Identifier{table}, []string{"a", "b"}, pgx.CopyFromRows(rows))
		if err != nil || n != 10000 {
			t.Fatalf("COPY FROM: %d %v", n, err)
		}
		var out strings.Builder
		tag, err := conn.PgConn().CopyTo(ctx, &out, "COPY "+table+" TO STDOUT")
		if err != nil || tag.RowsAffected() != 10000 || strings.Count(out.String(), "\n") != 10000 {
			t.Fatalf("COPY TO: %v %v", tag, err)
		}
	})
	t.Run("large row", func(t *testing.T) {
		var s string
		if err := conn.QueryRow(ctx, "SELECT repeat('x', 20000000)").Scan(&s); err != nil || len(s) != 20000000 {
			t.Fatalf("20 MB value: %d bytes, %v", len(s), err)
		}
		if err := conn.QueryRow(ctx, "SELECT $1::text", strings.Repeat("y", 5000000)).Scan(&s); err != nil || len(s) != 5000000 {
			t.Fatalf("5 MB parameter: %d bytes, %v", len(s), err)
		}
	})
	t.Run("errors and notices", func(t *testing.T) {
		*notices = nil
		_, err := conn.Exec(ctx, "SELECT 1/0")
		if sqlState(err) != "22012" {
			t.Fatalf("division by zero: %v", err)
		}
		if _, err := conn.Exec(ctx, "DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$"); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"hello from the server"}, *notices); diff != "" {
			t.Errorf("notices (-want +got):\n%s", diff)
		}
		if got := label(t, conn); got != ctxA {
			t.Errorf("label after errors: %q", got)
		}
	})
	t.Run("cancel", func(t *testing.T) { cancelSleep(t, conn) })
}

func TestSessionLog(t *testing.T) {
	h := startProxy(t, "")
	conn := h.connect(t, "alice", "logged-app")
	pid := backendPID(t, conn)
	conn.Close(context.Background())
	var recs []map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		recs = recs[:0]
		f, err := os.Open(filepath.Join(h.dir, "sessions.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r map[string]any
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("session log line %q: %v", sc.Text(), err)
			}
			recs = append(recs, r)
		}
		f.Close()
		if len(recs) >= 3 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var events []string
	for _, r := range recs {
		events = append(events, r["event"].(string))
		if r["db_user"] != "alice" || r["database"] != "postgres" || r["context"] != ctxA || r["context_source"] != "rule" || r["application_name"] != "logged-app" {
			t.Errorf("session record %v", r)
		}
		if _, err := time.Parse(time.RFC3339Nano, r["time"].(string)); err != nil {
			t.Errorf("time %v: %v", r["time"], err)
		}
	}
	if diff := cmp.Diff([]string{"connect", "tag", "disconnect"}, events); diff != "" {
		t.Fatalf("session log events (-want +got):\n%s", diff)
	}
	if bp := recs[1]["backend_pid"].(float64); int(bp) != pid {
		t.Errorf("tag record backend_pid %v, want %d", bp, pid)
	}
}

func TestAdminConsole(t *testing.T) {
	h := startProxy(t, "")
	keep := h.connect(t, "alice", "")
	_ = keep
	run := func(sql string) string {
		out, err := exec.Command("psql", "-X", "-At", "-F", "|", h.adminDSN("admin"), "-c", sql).CombinedOutput()
		if err != nil {
			t.Fatalf("psql %q on the admin console: %v\n%s", sql, err, out)
		}
		return string(out)
	}
	if out := run("SHOW CLIENTS"); !strings.Contains(out, "|alice|postgres|"+ctxA+"|rule|active|") {
		t.Errorf("SHOW CLIENTS:\n%s", out)
	}
	if out := run("SHOW SERVERS"); !strings.Contains(out, "|postgres|alice|"+ctxA+"|active|") {
		t.Errorf("SHOW SERVERS:\n%s", out)
	}
	if out := run("SHOW POOLS"); !strings.Contains(out, "postgres|alice|20|1|0|1|0|false") {
		t.Errorf("SHOW POOLS:\n%s", out)
	}
	if out := run("SHOW STATS"); !strings.HasPrefix(out, "1|0|") {
		t.Errorf("SHOW STATS:\n%s", out)
	}
	out := run("SHOW CONFIG")
	if !strings.Contains(out, `tagging|"on"`) || !strings.Contains(out, `pool_mode|"session"`) {
		t.Errorf("SHOW CONFIG:\n%s", out)
	}
	if _, err := pgx.Connect(context.Background(), h.adminDSN("alice")); sqlState(err) != "28000" {
		t.Errorf("non-admin on the console: %v", err)
	}
	// Not on the TCP trust listener, even for an admin user.
	_, err := pgx.Connect(context.Background(), h.dsn("admin", "")+" dbname=sepgadm")
	if sqlState(err) != "28000" || !strings.Contains(err.Error(), "not served on this listener") {
		t.Errorf("admin console over TCP trust: %v", err)
	}
}

func TestConfigErrorsNameFileLineAndKey(t *testing.T) {
	for _, tt := range []struct{ name, text, want string }{
		{"unknown key", "tagging = \"on\"\ncredential_file = \"x\"\n[[listen]]\naddress = \"127.0.0.1:1\"\nauth = \"trust\"\nadress = \"y\"\n", "bad.toml:6: listen.adress: unknown key"},
		{"bad context", "credential_file = \"x\"\n[[listen]]\naddress = \"127.0.0.1:1\"\nauth = \"trust\"\n\n[[context]]\nuser = \"a\"\ncontext = \"system_u:system_r:t_t:s0\"\n\n[[context]]\nuser = \"b\"\ncontext = \"system_u:system_r\"\n", "bad.toml:10: context[1].context: invalid context \"system_u:system_r\": missing type after \"system_r\""},
		// The label manager's parser: categories in order, high dominates low.
		{"reversed categories", "credential_file = \"x\"\n[[listen]]\naddress = \"127.0.0.1:1\"\nauth = \"trust\"\n[[context]]\nuser = \"a\"\ncontext = \"u:r:t:s0:c3.c1\"\n", "bad.toml:5: context[0].context: invalid context"},
		{"range high below low", "credential_file = \"x\"\n[[listen]]\naddress = \"127.0.0.1:1\"\nauth = \"trust\"\n[[context]]\nuser = \"a\"\ncontext = \"u:r:t:s1-s0\"\n", "bad.toml:5: context[0].context: invalid context"},
		{"bad level", "credential_file = \"x\"\n[[listen]]\naddress = \"127.0.0.1:1\"\nauth = \"trust\"\n[[context]]\ncontext = \"u:r:t:s0:c5-\"\n", "bad.toml:5: context[0].context"},
		{"syntax", "tagging = on\n", "bad.toml:1:"},
		{"peer on tcp", "credential_file = \"x\"\n[[listen]]\naddress = \"127.0.0.1:1\"\nauth = \"peer\"\n", "bad.toml:2: listen[0].auth: peer works only on a unix_socket_dir listener"},
		{"no credential", "[[listen]]\naddress = \"127.0.0.1:1\"\nauth = \"trust\"\n", "credential_file: required when tagging is on"},
		{"client-chosen rule", "credential_file = \"x\"\n[[listen]]\naddress = \"127.0.0.1:1\"\nauth = \"trust\"\n[[context]]\napplication_name = \"tenant-a\"\ncontext = \"u:r:t:s0\"\n",
			"bad.toml:5: context[0].context: the rule matches only fields the client chooses itself (database, application_name)"},
		{"admin on tcp trust", "credential_file = \"x\"\n[[listen]]\naddress = \"127.0.0.1:1\"\nauth = \"trust\"\nadmin = true\n", "listen[0].admin: the admin console is never served on a TCP listener"},
		{"event loop", "credential_file = \"x\"\nevent_loop = \"on\"\n[[listen]]\naddress = \"127.0.0.1:1\"\nauth = \"trust\"\n", "bad.toml:2: event_loop: \"on\": the experimental event loop was removed"},
		{"empty reset", "credential_file = \"x\"\nserver_reset_query = \" ; \"\n[[listen]]\naddress = \"127.0.0.1:1\"\nauth = \"trust\"\n", "server_reset_query: empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := proxy.ParseConfig(strings.NewReader(tt.text), "bad.toml")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestPlainModeNeedsNoSwitch(t *testing.T) {
	c := pg.Get(t)
	setupServer(t, c)
	dir := t.TempDir()
	text := fmt.Sprintf("tagging = \"off\"\n[[listen]]\naddress = \"127.0.0.1:0\"\nauth = \"trust\"\n[server]\nhost = %q\nport = %d\n", c.SocketDir, c.Port)
	h := startWith(t, c, dir, text)
	conn := h.connect(t, "nocontext", "")
	if got := label(t, conn); got != "" {
		t.Errorf("plain mode called the switch: label %q", got)
	}
	if !strings.Contains(h.logs.String(), "tagging is off") {
		t.Errorf("plain mode was not logged as a warning:\n%s", h.logs.String())
	}
}

func TestGSSENCRequestRefusedCleanly(t *testing.T) {
	h := startProxy(t, "")
	conn, err := net.Dial("tcp", h.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(conn, b); err != nil || b[0] != 'N' {
		t.Fatalf("GSSENCRequest answer %q %v, want N", b, err)
	}
}

func runPsql(dsn, sql string) (string, error) {
	out, err := exec.Command("psql", "-X", "-At", dsn, "-c", sql).CombinedOutput()
	return string(out), err
}

// cancelSleep starts a long query on conn, sends a CancelRequest through the proxy with
// the key the proxy gave the client, and checks the server canceled it (57014).
func cancelSleep(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if sqlState(err) != "57014" {
			t.Fatalf("canceled query: %v, want 57014", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the cancel request did not reach the server")
	}
}

// Startup parameters are the client's: options with -c and --name=value take effect in
// both pool modes (in transaction mode on every connection the client lands on), and
// what the proxy cannot honour is refused, never dropped.
func TestStartupOptions(t *testing.T) {
	for _, mode := range []string{"session", "transaction"} {
		pool := map[string]int{"session": 2, "transaction": 1}[mode]
		h := startProxy(t, fmt.Sprintf("pool_mode = %q\n[users.app]\npool_size = %d", mode, pool))
		ctx := context.Background()
		cfg, err := pgx.ParseConfig(h.dsn("app", "tenant-a"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["options"] = `-c search_path=pg_catalog,public --statement-timeout=1234 -cwork_mem=5MB -c application_name=with\ space`
		cfg.RuntimeParams["datestyle"] = "German"
		a, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("%s mode: %v", mode, err)
		}
		// What the same startup packet gives connected straight to the server.
		dcfg := cfg.Copy()
		dcfg.Host, dcfg.Port = h.cluster.SocketDir, uint16(h.cluster.Port)
		direct, err := pgx.ConnectConfig(ctx, dcfg)
		if err != nil {
			t.Fatal(err)
		}
		settings := func(c *pgx.Conn) []string {
			var path, timeout, mem, app, style string
			if err := c.QueryRow(ctx, "SELECT current_setting('search_path'), current_setting('statement_timeout'), current_setting('work_mem'), current_setting('application_name'), current_setting('DateStyle')").Scan(&path, &timeout, &mem, &app, &style); err != nil {
				t.Fatal(err)
			}
			return []string{path, timeout, mem, app, style}
		}
		want := settings(direct)
		direct.Close(ctx)
		if want[1] != "1234ms" || want[0] != "pg_catalog,public" {
			t.Fatalf("the direct connection did not take the options: %v", want)
		}
		b := h.connect(t, "app", "tenant-b")
		for range 2 { // in transaction mode, b takes the one connection in between
			got := settings(a)
			want := slices.Clone(want)
			if mode == "transaction" {
				// search_path may be replayed with SET, which spells the list "a, b"
				// where the startup packet's "a,b" stays as written.
				got[0] = strings.ReplaceAll(got[0], ", ", ",")
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("%s mode: settings (-want +got):\n%s", mode, d)
			}
			if got := label(t, b); got != ctxB {
				t.Fatalf("b: %q", got)
			}
		}
		a.Close(ctx)
		for _, opts := range []string{"-d 5", "-c nonsense", "-B 100"} {
			cfg.RuntimeParams["options"] = opts
			if _, err := pgx.ConnectConfig(ctx, cfg); err == nil || !strings.Contains(err.Error(), "sepgadm: ") {
				t.Errorf("%s mode: options %q: %v, want a refusal", mode, opts, err)
			}
		}
	}
}

// At login a client receives the ParameterStatus messages a direct connection gets,
// with the same values, search_path (which PostgreSQL 15 does not report) not among them.
func TestLoginParameterStatusAsDirect(t *testing.T) {
	h := startProxy(t, "")
	ctx := context.Background()
	cfg, err := pgconn.ParseConfig(h.dsn("alice", "status-test"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["options"] = "-c search_path=public"
	cfg.RuntimeParams["DateStyle"] = "ISO, DMY"
	viaProxy, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer viaProxy.Close(ctx)
	dcfg := cfg.Copy()
	dcfg.Host, dcfg.Port = h.cluster.SocketDir, uint16(h.cluster.Port)
	direct, err := pgconn.ConnectConfig(ctx, dcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	names := []string{"application_name", "client_encoding", "DateStyle", "default_transaction_read_only", "in_hot_standby",
		"integer_datetimes", "IntervalStyle", "is_superuser", "search_path", "server_encoding", "server_version",
		"session_authorization", "standard_conforming_strings", "TimeZone"}
	status := func(c *pgconn.PgConn) map[string]string {
		m := map[string]string{}
		for _, n := range names {
			if v := c.ParameterStatus(n); v != "" {
				m[n] = v
			}
		}
		return m
	}
	if d := cmp.Diff(status(direct), status(viaProxy)); d != "" {
		t.Errorf("ParameterStatus at login, direct (-) against through the proxy (+):\n%s", d)
	}
}
