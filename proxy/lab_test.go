//go:build lab

package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sepgadm/sepgadm/lab"
)

// Lab tests of the proxy in the enforcing guest: the proxy runs as sepgadm_proxy_t
// (exec of /usr/sbin/sepgadm, labelled sepgadm_proxy_exec_t by the policy module),
// clients run under tenant labels with runcon and connect to its Unix socket.

const (
	tenantA     = "system_u:system_r:sepgadm_lab_tenant_a_t:s0"
	tenantB     = "system_u:system_r:sepgadm_lab_tenant_b_t:s0"
	proxyDomain = "system_u:system_r:sepgadm_proxy_t:s0"
	testSocket  = "/run/sepgadm-test"
	testLog     = "/var/log/sepgadm/labtest-sessions.jsonl"
)

var (
	asA      = lab.Context{Type: "sepgadm_lab_tenant_a_t"}
	asB      = lab.Context{Type: "sepgadm_lab_tenant_b_t"}
	asClient = lab.Context{Type: lab.ClientDomain}
	viaProxy = fmt.Sprintf("host=%s port=6432 dbname=demo user=postgres", testSocket)
)

var labSetup struct {
	sync.Once
	proxy *exec.Cmd
	err   error
}

func setupLab(t *testing.T) {
	t.Helper()
	lab.Require(t)
	labSetup.Do(func() { labSetup.err = doLabSetup() })
	if labSetup.err != nil {
		t.Fatalf("lab set-up: %v", labSetup.err)
	}
}

func doLabSetup() error {
	if out, err := exec.Command("bash", "/src/lab/demo-setup.sh").CombinedOutput(); err != nil {
		return fmt.Errorf("demo-setup.sh: %w\n%s", err, out)
	}
	if out, err := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", "demo", "-c",
		"CREATE TABLE canary (v text); GRANT ALL ON canary TO PUBLIC").CombinedOutput(); err != nil {
		return fmt.Errorf("canary: %w\n%s", err, out)
	}
	cfg := fmt.Sprintf(`credential_file = "/etc/sepgadm/credential"
session_log = %q
log_level = "debug"
[[listen]]
unix_socket_dir = %q
port = 6432
auth = "trust"
[[listen]]
address = "127.0.0.1:6433"
auth = "trust"
[server]
host = "/var/run/postgresql"
[users.postgres]
pool_size = 1
[[context]]
user = "alice"
context = %q
`, testLog, testSocket, tenantA)
	if err := os.WriteFile("/etc/sepgadm/labtest.toml", []byte(cfg), 0o644); err != nil {
		return err
	}
	_ = exec.Command("restorecon", "-F", "/etc/sepgadm/labtest.toml").Run()
	logf, err := os.Create(filepath.Join(os.Getenv("OUT"), "proxy-labtest.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("/usr/sbin/sepgadm", "proxy", "--config", "/etc/sepgadm/labtest.toml")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	labSetup.proxy = cmd
	for range 100 {
		if _, err := os.Stat(testSocket + "/.s.PGSQL.6432"); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the test proxy did not create its socket")
}

// labHelpers are run by the test binary re-executed under another SELinux domain.
var labHelpers = map[string]lab.Helper{}

func TestMain(m *testing.M) {
	if code := lab.HelperMain(labHelpers); code >= 0 {
		os.Exit(code)
	}
	code := m.Run()
	for _, p := range append([]*exec.Cmd{labSetup.proxy, txnSetup.proxy}, extraProxies...) {
		if p != nil {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}
	os.Exit(code)
}

func psql(t *testing.T, as lab.Context, dsn, sql string) lab.Result {
	t.Helper()
	r, err := lab.PSQLDSN(context.Background(), as, dsn, sql)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLabProxyRunsInItsDomain(t *testing.T) {
	setupLab(t)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/attr/current", labSetup.proxy.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimRight(string(b), "\x00\n"); got != proxyDomain {
		t.Fatalf("the proxy runs as %q, want %q", got, proxyDomain)
	}
}

func TestLabPeerLabelsRunUnderTheirOwnContext(t *testing.T) {
	setupLab(t)
	for _, tt := range []struct {
		as          lab.Context
		want        string
		own, others string
	}{
		{asA, tenantA, "alice_notes", "bob_notes"},
		{asB, tenantB, "bob_notes", "alice_notes"},
	} {
		r := psql(t, tt.as, viaProxy, "SELECT sepgsql_getcon()")
		if r.SQLState != "" || r.Stdout != tt.want {
			t.Errorf("%s through the proxy: getcon %q (%s)", tt.as.Type, r.Stdout, r.Stderr)
		}
		if r := psql(t, tt.as, viaProxy, "SELECT count(*) FROM "+tt.own); r.SQLState != "" || r.Stdout == "0" {
			t.Errorf("%s reads %s: %+v", tt.as.Type, tt.own, r)
		}
		if r := psql(t, tt.as, viaProxy, "SELECT count(*) FROM "+tt.others); r.SQLState != "42501" {
			t.Errorf("%s reads %s: %+v, want 42501", tt.as.Type, tt.others, r)
		}
	}
}

func pid(t *testing.T, as lab.Context, sql string) int {
	t.Helper()
	r := psql(t, as, viaProxy, sql)
	lines := strings.Fields(r.Stdout)
	if r.SQLState != "" || len(lines) == 0 {
		t.Fatalf("%s: %+v", sql, r)
	}
	n, err := strconv.Atoi(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("%s: %q", sql, r.Stdout)
	}
	return n
}

func TestLabServerConnectionFollowsTheClient(t *testing.T) {
	setupLab(t)
	pidA := pid(t, asA, "SELECT pg_backend_pid()")
	r := psql(t, asB, viaProxy, "SELECT pg_backend_pid() || ' ' || sepgsql_getcon()")
	if r.Stdout != fmt.Sprintf("%d %s", pidA, tenantB) {
		t.Fatalf("B after A on a pool of one: %q, want backend %d as %s", r.Stdout, pidA, tenantB)
	}
	// A leaves in the middle of a transaction: that connection is closed, and B runs as B
	// on the next one.
	pidA2 := pid(t, asA, "BEGIN; SELECT pg_backend_pid()")
	r = psql(t, asB, viaProxy, "SELECT pg_backend_pid() || ' ' || sepgsql_getcon()")
	f := strings.Fields(r.Stdout)
	if len(f) != 2 || f[1] != tenantB || f[0] == strconv.Itoa(pidA2) {
		t.Fatalf("B after A vanished mid-transaction on backend %d: %q (%s)", pidA2, r.Stdout, r.Stderr)
	}
	t.Logf("reused backend %d across A and B; closed %d after A left mid-transaction; B now on %s", pidA, pidA2, f[0])
}

func TestLabFailingSwitchRunsNothing(t *testing.T) {
	setupLab(t)
	r := psql(t, asClient, viaProxy, "INSERT INTO canary VALUES ('not a tenant')")
	if !r.LoginRefused || !strings.Contains(r.Stderr, "sepgadm: could not switch the session to system_u:system_r:"+lab.ClientDomain) {
		t.Fatalf("a client whose label is not a tenant: %+v", r)
	}
	out, err := exec.Command("psql", "-X", "-At", "-d", "demo", "-c", "SELECT count(*) FROM canary").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("canary rows after the refused login: %s %v", out, err)
	}
	t.Logf("refused: %s", strings.TrimSpace(r.Stderr))
}

func TestLabClientWithoutContextIsRefused(t *testing.T) {
	setupLab(t)
	r := psql(t, lab.Context{Type: "initrc_t"}, "host=127.0.0.1 port=6433 dbname=demo user=bob", "SELECT 1")
	if !r.LoginRefused || !strings.Contains(r.Stderr, "sepgadm: no SELinux context for this client") {
		t.Fatalf("TCP client with no rule: %+v", r)
	}
	r = psql(t, lab.Context{Type: "initrc_t"}, "host=127.0.0.1 port=6433 dbname=demo user=alice", "SELECT sepgsql_getcon()")
	if r.Stdout != tenantA {
		t.Fatalf("TCP client matched by rule: %+v", r)
	}
}

var pidRE = regexp.MustCompile(`\[(\d+)\]`)

func TestLabSessionLogAttributesDenial(t *testing.T) {
	setupLab(t)
	r := psql(t, asA, viaProxy, "SELECT count(*) FROM bob_notes")
	if r.SQLState != "42501" {
		t.Fatalf("A reading bob_notes: %+v", r)
	}
	line, err := lab.ServerLogContains(context.Background(), 10*time.Second, "SELinux: denied { select }",
		"scontext="+tenantA, "tcontext=system_u:object_r:sepgadm_lab_b_table_t:s0", `name="public.bob_notes"`)
	if err != nil {
		t.Fatal(err)
	}
	m := pidRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no pid in %q", line)
	}
	backend, _ := strconv.Atoi(m[1])
	// The line found may be an earlier test's denial on a backend that several sessions
	// have used since: the session it belongs to is the last one switched onto that
	// backend before the denial's time.
	at, err := time.Parse("2006-01-02 15:04:05.000 MST", line[:27])
	if err != nil {
		t.Fatalf("denial time in %q: %v", line, err)
	}
	f, err := os.Open(testLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("session log line %q: %v", sc.Text(), err)
		}
		when, _ := time.Parse(time.RFC3339Nano, rec["time"].(string))
		if rec["event"] == "tag" && int(rec["backend_pid"].(float64)) == backend && !when.After(at) {
			last = rec
		}
	}
	if last == nil {
		t.Fatalf("no tag record for backend %d in %s", backend, testLog)
	}
	if last["peer_label"] != tenantA || last["context"] != tenantA || last["context_source"] != "peer" || last["client_addr"] != "unix" {
		t.Fatalf("denial on backend %d attributed to %v", backend, last)
	}
	t.Logf("denial %q attributed to session %v (peer pid %v)", line, last["session_id"], last["peer_pid"])

	// The same session log, read by the auditor: the writer's and the reader's record
	// are one type (package sessionlog), and this is the real proxy's file.
	args := []string{"audit", "review", "--sessions", testLog, "--scontext", tenantA, "--class", "db_table"}
	logs, _ := filepath.Glob(filepath.Join(lab.PGData, "log", "*.log"))
	for _, f := range logs {
		args = append(args, "--pglog", f)
	}
	// The plain binary on PATH: /usr/sbin/sepgadm enters the proxy's domain, which may
	// not read the server log.
	out, err := exec.Command("/usr/local/bin/sepgadm", args...).CombinedOutput()
	want := fmt.Sprintf("session %v client unix peer pid %v label %s", last["session_id"], last["peer_pid"], tenantA)
	if err != nil || !strings.Contains(string(out), want) {
		t.Fatalf("sepgadm audit review: %v; want a line with %q in:\n%s", err, want, out)
	}
}

func TestLabDemoWorks(t *testing.T) {
	setupLab(t)
	out, err := exec.Command("systemctl", "show", "-p", "MainPID", "--value", "sepgadm-demo.service").Output()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/" + strings.TrimSpace(string(out)) + "/attr/current")
	if err != nil || strings.TrimRight(string(b), "\x00\n") != proxyDomain {
		t.Fatalf("the demo proxy runs as %q (%v), want %s", b, err, proxyDomain)
	}
	for _, tt := range []struct{ user, want, own, other string }{
		{"alice", tenantA, "alice_notes", "bob_notes"},
		{"bob", tenantB, "bob_notes", "alice_notes"},
	} {
		dsn := fmt.Sprintf("host=127.0.0.1 port=6432 dbname=demo user=%s password=%s", tt.user, tt.user)
		if r := psql(t, lab.Context{Type: "initrc_t"}, dsn, "SELECT sepgsql_getcon()"); r.Stdout != tt.want {
			t.Errorf("demo %s: getcon %+v", tt.user, r)
		}
		if r := psql(t, lab.Context{Type: "initrc_t"}, dsn, "SELECT note FROM "+tt.own+" LIMIT 1"); r.SQLState != "" || !strings.HasPrefix(r.Stdout, tt.user+":") {
			t.Errorf("demo %s reads %s: %+v", tt.user, tt.own, r)
		}
		if r := psql(t, lab.Context{Type: "initrc_t"}, dsn, "TABLE "+tt.other); r.SQLState != "42501" {
			t.Errorf("demo %s reads %s: %+v, want 42501", tt.user, tt.other, r)
		}
	}
	if r := psql(t, lab.Context{Type: "initrc_t"}, "host=127.0.0.1 port=6432 dbname=demo user=alice password=wrong", "SELECT 1"); !r.LoginRefused {
		t.Errorf("demo alice with a wrong password: %+v", r)
	}
}

// The transaction-mode proxy of the stress and drift tests, with verify_label = "always".
const txnSocket = "/run/sepgadm-txn"

type labProxy struct {
	sync.Once
	proxy *exec.Cmd
	err   error
}

var txnSetup labProxy

func startTxnProxy(t *testing.T) {
	startLabProxy(t, &txnSetup, "txn", txnSocket, `verify_label = "always"`)
}

func startLabProxy(t *testing.T, lp *labProxy, name, socket, extra string) {
	t.Helper()
	setupLab(t)
	lp.Do(func() {
		cfg := fmt.Sprintf(`pool_mode = "transaction"
%s
credential_file = "/etc/sepgadm/credential"
session_log = "/var/log/sepgadm/%s-sessions.jsonl"
max_client_conn = 200
query_wait_timeout = "60s"
[[listen]]
unix_socket_dir = %q
port = 6432
auth = "trust"
[server]
host = "/var/run/postgresql"
[users.postgres]
pool_size = 3
`, extra, name, socket)
		file := "/etc/sepgadm/" + name + ".toml"
		if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
			lp.err = err
			return
		}
		logf, err := os.Create(filepath.Join(os.Getenv("OUT"), "proxy-"+name+".log"))
		if err != nil {
			lp.err = err
			return
		}
		cmd := exec.Command("/usr/sbin/sepgadm", "proxy", "--config", file)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			lp.err = err
			return
		}
		lp.proxy = cmd
		for range 100 {
			if _, err := os.Stat(socket + "/.s.PGSQL.6432"); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		lp.err = fmt.Errorf("the %s proxy did not start", name)
	})
	if lp.err != nil {
		t.Fatal(lp.err)
	}
}

var viaTxn = fmt.Sprintf("host=%s port=6432 dbname=demo user=postgres", txnSocket)

// stressIn / stressOut are the stress helper's input and report.
type stressIn struct {
	// Query is the statement each transaction runs (default SELECT sepgsql_getcon());
	// Expected its one value.
	Query    string `json:"query,omitempty"`
	DSN      string `json:"dsn"`
	Clients  int    `json:"clients"`
	Rounds   int    `json:"rounds"`
	Expected string `json:"expected"`
	Seed     int64  `json:"seed"`
}

type stressOut struct {
	Transactions int      `json:"transactions"`
	Statements   int      `json:"statements"`
	Mismatches   int      `json:"mismatches"`
	Aborts       int      `json:"aborts"`
	Vanished     int      `json:"vanished"`
	Errors       int      `json:"errors"`
	Samples      []string `json:"samples,omitempty"`
}

func init() { labHelpers["stress"] = stressHelper }

// stressHelper runs in a tenant's domain: Clients goroutines, each running Rounds
// transactions through the transaction-mode proxy, checking sepgsql_getcon() in every
// statement; some transactions roll back, some clients vanish mid-transaction.
func stressHelper(ctx context.Context, in io.Reader, out io.Writer) error {
	var req stressIn
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		return err
	}
	var mu sync.Mutex
	var rep stressOut
	var wg sync.WaitGroup
	for i := range req.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(req.Seed + int64(i)))
			var conn *pgx.Conn
			count := func(f func()) { mu.Lock(); f(); mu.Unlock() }
			for range req.Rounds {
				if conn == nil {
					var err error
					if conn, err = pgx.Connect(ctx, req.DSN); err != nil {
						count(func() { rep.Errors++ })
						time.Sleep(50 * time.Millisecond)
						continue
					}
				}
				tx, err := conn.Begin(ctx)
				if err != nil {
					count(func() { rep.Errors++ })
					conn.Close(ctx)
					conn = nil
					continue
				}
				ok := true
				query := req.Query
				if query == "" {
					query = "SELECT sepgsql_getcon()"
				}
				for range 1 + rng.Intn(3) {
					var got string
					if err := tx.QueryRow(ctx, query).Scan(&got); err != nil {
						ok = false
						break
					}
					count(func() {
						rep.Statements++
						if got != req.Expected {
							rep.Mismatches++
							if len(rep.Samples) < 5 {
								rep.Samples = append(rep.Samples, got)
							}
						}
					})
				}
				switch r := rng.Intn(10); {
				case !ok:
					count(func() { rep.Errors++ })
					conn.Close(ctx)
					conn = nil
				case r == 0:
					_ = conn.PgConn().Conn().Close() // vanish mid-transaction
					conn = nil
					count(func() { rep.Vanished++ })
				case r < 3:
					_ = tx.Rollback(ctx)
					count(func() { rep.Aborts++; rep.Transactions++ })
				default:
					if err := tx.Commit(ctx); err != nil {
						count(func() { rep.Errors++ })
						conn.Close(ctx)
						conn = nil
						continue
					}
					count(func() { rep.Transactions++ })
				}
			}
			if conn != nil {
				conn.Close(ctx)
			}
		}()
	}
	wg.Wait()
	return json.NewEncoder(out).Encode(rep)
}

func TestLabTransactionModeStress(t *testing.T) {
	startTxnProxy(t)
	stress(t, viaTxn)
}

// stress runs 24 clients of 4 contexts through the transaction-mode proxy at dsn while
// backends are terminated, and fails on any statement under another context.
func stress(t *testing.T, dsn string) {
	ctx := context.Background()
	tenants := []lab.Context{
		{Type: "sepgadm_lab_tenant_a_t"}, {Type: "sepgadm_lab_tenant_a_t", Level: "s0:c1"},
		{Type: "sepgadm_lab_tenant_b_t"}, {Type: "sepgadm_lab_tenant_b_t", Level: "s0:c2"},
	}
	stop := make(chan struct{})
	terminated := 0
	var killer sync.WaitGroup
	killer.Add(1)
	go func() {
		defer killer.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(700 * time.Millisecond):
			}
			out, err := exec.Command("psql", "-X", "-At", "-d", "demo", "-c",
				"SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity WHERE datname = 'demo' AND usename = 'postgres' AND application_name <> 'psql' AND pid <> pg_backend_pid() ORDER BY random() LIMIT 1) s").Output()
			if err == nil && strings.TrimSpace(string(out)) == "1" {
				terminated++
			}
		}
	}()
	reports := make([]stressOut, len(tenants))
	var wg sync.WaitGroup
	for i, as := range tenants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := "system_u:system_r:" + as.Type + ":s0"
			if as.Level != "" {
				want = "system_u:system_r:" + as.Type + ":" + as.Level
			}
			if err := lab.RunHelper(ctx, as, "stress", stressIn{DSN: dsn, Clients: 6, Rounds: 60, Expected: want, Seed: int64(i) * 1000}, &reports[i]); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	killer.Wait()
	var total stressOut
	for i, r := range reports {
		t.Logf("%s%s: %d transactions (%d rolled back), %d statements, %d vanished mid-transaction, %d errors, %d mismatches %v",
			tenants[i].Type, map[bool]string{true: ":" + tenants[i].Level, false: ""}[tenants[i].Level != ""],
			r.Transactions, r.Aborts, r.Statements, r.Vanished, r.Errors, r.Mismatches, r.Samples)
		total.Transactions += r.Transactions
		total.Statements += r.Statements
		total.Mismatches += r.Mismatches
		total.Vanished += r.Vanished
		total.Errors += r.Errors
	}
	t.Logf("stress: 24 clients of 4 contexts over a pool of 3, %d backends terminated: %d transactions, %d statements, %d vanished, %d errors, %d mismatches",
		terminated, total.Transactions, total.Statements, total.Vanished, total.Errors, total.Mismatches)
	if total.Mismatches != 0 {
		t.Fatalf("%d statements ran under another client's context", total.Mismatches)
	}
	if total.Statements < 1000 || terminated == 0 {
		t.Fatalf("the stress test did too little to prove anything: %d statements, %d backends terminated", total.Statements, terminated)
	}
}

// A tenant that may call sepgsql_setcon itself changes its label inside its own
// transaction; with verify_label = "always" the next client with the tenant's context
// must not inherit it.
func TestLabVerifyLabelCatchesDrift(t *testing.T) {
	startTxnProxy(t)
	asC := lab.Context{Type: "sepgadm_lab_tenant_c_t"}
	cLabel := "system_u:system_r:sepgadm_lab_tenant_c_t:s0"
	r := psql(t, asC, viaTxn, "SELECT sepgsql_setcon('"+tenantB+"'); SELECT sepgsql_getcon()")
	if r.SQLState != "" || !strings.HasSuffix(r.Stdout, tenantB) {
		t.Fatalf("tenant C switching itself to B: %+v", r)
	}
	for range 5 {
		r = psql(t, asC, viaTxn, "SELECT sepgsql_getcon()")
		if r.Stdout != cLabel {
			t.Fatalf("the next client of context C runs under %q (%s), want %q", r.Stdout, r.Stderr, cLabel)
		}
	}
	b, _ := os.ReadFile(filepath.Join(os.Getenv("OUT"), "proxy-txn.log"))
	if !strings.Contains(string(b), "label drift") {
		t.Errorf("the proxy did not log the drift it corrected")
	}
}

func init() { labHelpers["attacker"] = attackerHelper }

// attackIn / attackOut are the attacker helper's input and report.
type attackIn struct {
	Socket   string `json:"socket"`
	Rounds   int    `json:"rounds"`
	Expected string `json:"expected"`
}

type attackOut struct {
	Rounds  int      `json:"rounds"`
	Answers int      `json:"answers"` // own-label answers checked
	Refused int      `json:"refused"` // hijack attempts refused with 0A000
	Foreign []string `json:"foreign,omitempty"`
	Errors  []string `json:"errors,omitempty"`
}

// attackerHelper runs in a hostile tenant's domain against the transaction-mode proxy:
// each round a FunctionCall pipelined with a query, session state left behind
// (set_config, a temp table, a session advisory lock in dynamic SQL), attempts to take
// over prepared statements, a Flush-only pipeline and an abandoned COPY. It checks that
// every answer it gets is its own.
func attackerHelper(ctx context.Context, in io.Reader, out io.Writer) error {
	var req attackIn
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		return err
	}
	var rep attackOut
	for range req.Rounds {
		rep.Rounds++
		if err := attackRound(req, &rep); err != nil {
			rep.Errors = append(rep.Errors, err.Error())
			if len(rep.Errors) > 5 {
				break
			}
		}
	}
	return json.NewEncoder(out).Encode(rep)
}

func attackRound(req attackIn, rep *attackOut) error {
	conn, err := net.Dial("unix", req.Socket+"/.s.PGSQL.6432")
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	fe := pgproto3.NewFrontend(conn, conn)
	send := func(msgs ...pgproto3.FrontendMessage) error {
		for _, m := range msgs {
			fe.Send(m)
		}
		return fe.Flush()
	}
	// answer reads up to n ReadyForQuery; rows must be the attacker's own label.
	answer := func(n int) (codes []string, err error) {
		for n > 0 {
			m, err := fe.Receive()
			if err != nil {
				return codes, err
			}
			switch m := m.(type) {
			case *pgproto3.DataRow:
				if len(m.Values) > 0 && strings.HasPrefix(string(m.Values[0]), "system_u:") {
					if v := string(m.Values[0]); v != req.Expected {
						rep.Foreign = append(rep.Foreign, v)
					} else {
						rep.Answers++
					}
				}
			case *pgproto3.ErrorResponse:
				codes = append(codes, m.Code)
			case *pgproto3.CopyInResponse:
				return codes, nil
			case *pgproto3.ReadyForQuery:
				n--
			}
		}
		return codes, nil
	}
	if err := send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "postgres", "database": "demo"}}); err != nil {
		return err
	}
	if _, err := answer(1); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	// A FunctionCall (pg_backend_pid) pipelined with a query.
	if err := send(&pgproto3.FunctionCall{Function: 2026}, &pgproto3.Query{String: "SELECT sepgsql_getcon()"}); err != nil {
		return err
	}
	if _, err := answer(2); err != nil {
		return fmt.Errorf("function call: %w", err)
	}
	// State left behind for the next tenant (each may be denied by the policy: fine).
	for _, sql := range []string{
		"SELECT set_config('myapp.tenant_id', 'A', false)",
		"SELECT set_config('search_path', 'evil, public', false)",
		"CREATE TEMP TABLE IF NOT EXISTS a_secret(v text)",
		"DO $$ BEGIN PERFORM pg_advisory_lock(4242); END $$",
	} {
		if err := send(&pgproto3.Query{String: sql}); err != nil {
			return err
		}
		if _, err := answer(1); err != nil {
			return err
		}
	}
	// Prepared-statement takeover attempts: each must be refused.
	for _, sql := range []string{"/**/PREPARE sepgadm_x AS SELECT 'hijacked'", "DEALLOCATE ALL", "/* x */ deallocate prepare y"} {
		if err := send(&pgproto3.Query{String: sql}); err != nil {
			return err
		}
		codes, err := answer(1)
		if err != nil {
			return err
		}
		if len(codes) == 1 && codes[0] == "0A000" {
			rep.Refused++
		} else {
			return fmt.Errorf("%q was not refused: %v", sql, codes)
		}
	}
	// A Flush-only pipeline, then its Sync.
	if err := send(&pgproto3.Parse{Query: "SELECT sepgsql_getcon()"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}); err != nil {
		return err
	}
	time.Sleep(5 * time.Millisecond)
	if err := send(&pgproto3.Sync{}); err != nil {
		return err
	}
	if _, err := answer(1); err != nil {
		return err
	}
	// A COPY abandoned midway: the connection goes away with it.
	if err := send(&pgproto3.Query{String: "COPY (SELECT 1) TO STDOUT; CREATE TEMP TABLE IF NOT EXISTS cp(v int); COPY cp FROM STDIN"}); err != nil {
		return err
	}
	_, _ = answer(1)
	_ = send(&pgproto3.CopyData{Data: []byte("1\n")})
	return nil
}

// Under real sepgsql, tenants of two domains share one database user and one pool: a
// hostile tenant A runs every attack of the attack suite while tenant B's clients check,
// in every statement, their label and that none of A's session state reached them.
// (Advisory locks are checked on the PostgreSQL tier with a pool of one: with several
// backends a lock A holds on its own is contention, not a leak.)
func TestLabAttacksDoNotCrossTenants(t *testing.T) {
	startTxnProxy(t)
	ctx := context.Background()
	victimQuery := "SELECT sepgsql_getcon() || '|' || coalesce(current_setting('myapp.tenant_id', true), '') || '|' || " +
		"coalesce(to_regclass('pg_temp.a_secret')::text, '') || '|' || current_setting('search_path')"
	var attack attackOut
	var victim stressOut
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := lab.RunHelper(ctx, asA, "attacker", attackIn{Socket: txnSocket, Rounds: 40, Expected: tenantA}, &attack); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		defer wg.Done()
		in := stressIn{DSN: viaTxn, Clients: 4, Rounds: 40, Seed: 7, Query: victimQuery,
			Expected: tenantB + `|||"$user", public`}
		if err := lab.RunHelper(ctx, asB, "stress", in, &victim); err != nil {
			t.Error(err)
		}
	}()
	wg.Wait()
	t.Logf("attacker: %d rounds, %d own answers, %d hijack attempts refused, foreign %v, errors %v",
		attack.Rounds, attack.Answers, attack.Refused, attack.Foreign, attack.Errors)
	t.Logf("victim: %d transactions, %d statements, %d mismatches %v, %d errors",
		victim.Transactions, victim.Statements, victim.Mismatches, victim.Samples, victim.Errors)
	if len(attack.Foreign) != 0 || victim.Mismatches != 0 {
		t.Fatalf("answers crossed tenants: attacker saw %v, victim %d mismatches %v", attack.Foreign, victim.Mismatches, victim.Samples)
	}
	if len(attack.Errors) != 0 {
		t.Fatalf("the attacker's own conversation broke: %v", attack.Errors)
	}
	if attack.Refused != 3*attack.Rounds || attack.Answers < 2*attack.Rounds || victim.Statements < 100 {
		t.Fatalf("too little happened to prove anything: %+v %+v", attack, victim)
	}
}

// realUsersProxies start a session-mode and a transaction-mode proxy (pool of one, so
// every label change goes through the trusted procedure from the previous tenant's
// session) whose rules give TCP clients contexts of real SELinux users.
var realUsersSetup labProxy

// extraProxies are stopped by TestMain with the others.
var extraProxies []*exec.Cmd

const (
	ctxUnconfined = "unconfined_u:unconfined_r:sepgadm_lab_tenant_a_t:s0-s0:c0.c1023"
	ctxStaff      = "staff_u:staff_r:sepgadm_lab_tenant_a_t:s0"
	ctxUser       = "user_u:user_r:sepgadm_lab_tenant_a_t:s0"
)

func startRealUsersProxies(t *testing.T) {
	t.Helper()
	setupLab(t)
	realUsersSetup.Do(func() {
		rules := ""
		for app, ctx := range map[string]string{
			"unconfined": ctxUnconfined, "staff": ctxStaff, "user": ctxUser, "system": tenantB,
			// Refused: a domain nobody declared, a role the user may not take, a range
			// above the user's, a role the tenant was not declared for.
			"undeclared": "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023",
			"badrole":    "user_u:staff_r:sepgadm_lab_tenant_a_t:s0",
			"badrange":   "user_u:user_r:sepgadm_lab_tenant_a_t:s0:c5",
			"notforrole": "unconfined_u:unconfined_r:sepgadm_lab_tenant_b_t:s0",
		} {
			rules += fmt.Sprintf("[[context]]\nuser = \"postgres\"\napplication_name = %q\ncontext = %q\n", app, ctx)
		}
		for i, mode := range []string{"session", "transaction"} {
			cfg := fmt.Sprintf(`pool_mode = %q
credential_file = "/etc/sepgadm/credential"
[[listen]]
address = "127.0.0.1:%d"
auth = "trust"
[server]
host = "/var/run/postgresql"
[users.postgres]
pool_size = 1
%s`, mode, 6440+i, rules)
			file := fmt.Sprintf("/etc/sepgadm/realusers-%s.toml", mode)
			if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
				realUsersSetup.err = err
				return
			}
			logf, err := os.Create(filepath.Join(os.Getenv("OUT"), "proxy-realusers-"+mode+".log"))
			if err != nil {
				realUsersSetup.err = err
				return
			}
			cmd := exec.Command("/usr/sbin/sepgadm", "proxy", "--config", file)
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Start(); err != nil {
				realUsersSetup.err = err
				return
			}
			extraProxies = append(extraProxies, cmd)
		}
		time.Sleep(time.Second)
	})
	if realUsersSetup.err != nil {
		t.Fatal(realUsersSetup.err)
	}
}

// Real SELinux users can be tagged: tenants declared for unconfined_r, staff_r and
// user_r run under unconfined_u (with its full MCS range), staff_u and user_u, in both
// pool modes, and a connection passes between them; a domain nobody declared, a
// user/role pair or range the policy forbids, and a role the tenant was not declared
// for are refused.
func TestLabRealSELinuxUsers(t *testing.T) {
	startRealUsersProxies(t)
	initrc := lab.Context{Type: "initrc_t"}
	for i, mode := range []string{"session", "transaction"} {
		dsn := func(app string) string {
			return fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo user=postgres application_name=%s", 6440+i, app)
		}
		for round := range 2 { // the second round reuses connections last used by another user
			for _, tt := range []struct{ app, want string }{
				{"unconfined", ctxUnconfined}, {"system", tenantB}, {"staff", ctxStaff}, {"user", ctxUser}, {"unconfined", ctxUnconfined},
			} {
				r := psql(t, initrc, dsn(tt.app), "SELECT sepgsql_getcon()")
				if r.Stdout != tt.want {
					t.Fatalf("%s mode, round %d, %s: %+v, want %s", mode, round, tt.app, r, tt.want)
				}
			}
		}
		for _, tt := range []struct{ app, code string }{
			{"undeclared", "42501"}, {"badrole", "42602"}, {"badrange", "42602"}, {"notforrole", "42602"},
		} {
			_, err := pgx.Connect(context.Background(), dsn(tt.app))
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != tt.code || !strings.Contains(pe.Message, "sepgadm: could not switch the session to") {
				t.Errorf("%s mode, %s: %v, want a refused login with %s", mode, tt.app, err, tt.code)
			}
		}
	}
}
