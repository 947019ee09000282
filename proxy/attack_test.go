//go:build !lab

package proxy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The attack suite: two tenants that log in as the same database user (one pool, as the
// README and the examples set it up) and differ only in their context (tenant-a: ctxA,
// tenant-b: ctxB). In each attack the victim must receive only its own answers, in
// order, and the attacker nothing of the victim's. The stand-in switch function keeps
// the label in a session setting, which the victim reads in every statement.

const labelSQL = "SELECT coalesce(current_setting('sepgadm_test.label', true), '')"

// rawClient speaks the protocol by hand, to send what no driver would.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
}

func dialRaw(t *testing.T, h *harness, app string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", h.tcp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := &rawClient{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	r.send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "app", "database": "postgres", "application_name": app}})
	if got := r.until(1); got[len(got)-1] != "Z:I" {
		t.Fatalf("login as %s: %v", app, got)
	}
	return r
}

func (r *rawClient) send(msgs ...pgproto3.FrontendMessage) {
	r.t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	if err := r.fe.Flush(); err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

// until reads messages up to the n-th ReadyForQuery (or the connection's end) and
// spells each one: its type, with the first column of a DataRow, the tag of a
// CommandComplete, the SQLSTATE of an error, the status of ReadyForQuery.
func (r *rawClient) until(n int) []string {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var out []string
	for n > 0 {
		m, err := r.fe.Receive()
		if err != nil {
			return append(out, "EOF")
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			v := "NULL"
			if len(m.Values) > 0 && m.Values[0] != nil {
				v = string(m.Values[0])
			}
			out = append(out, "D:"+v)
		case *pgproto3.CommandComplete:
			out = append(out, "C:"+string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			out = append(out, "E:"+m.Code)
			if m.Severity == "FATAL" {
				out = append(out, "FATAL")
			}
		case *pgproto3.ReadyForQuery:
			out = append(out, "Z:"+string(m.TxStatus))
			n--
		case *pgproto3.FunctionCallResponse:
			out = append(out, "V:"+string(m.Result))
		case *pgproto3.RowDescription:
			out = append(out, "T")
		case *pgproto3.ParseComplete:
			out = append(out, "1")
		case *pgproto3.BindComplete:
			out = append(out, "2")
		case *pgproto3.CopyInResponse:
			out = append(out, "G")
			return out
		case *pgproto3.ParameterStatus, *pgproto3.NoticeResponse, *pgproto3.AuthenticationOk, *pgproto3.BackendKeyData:
		default:
			out = append(out, fmt.Sprintf("%T", m))
		}
	}
	return out
}

// victim runs labelSQL in a loop through pgx until stop, and counts answers that are
// not its own label or that fail.
type victim struct {
	wg       sync.WaitGroup
	stop     atomic.Bool
	runs     atomic.Int64
	wrong    atomic.Int64
	failures atomic.Int64
	samples  sync.Map
}

func startVictim(t *testing.T, h *harness, app, want string) *victim {
	t.Helper()
	v := &victim{}
	conn := h.connect(t, "app", app)
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		ctx := context.Background()
		for !v.stop.Load() {
			var got string
			err := conn.QueryRow(ctx, labelSQL).Scan(&got)
			v.runs.Add(1)
			switch {
			case err != nil:
				v.failures.Add(1)
				v.samples.Store(err.Error(), true)
			case got != want:
				v.wrong.Add(1)
				v.samples.Store(got, true)
			}
		}
	}()
	return v
}

func (v *victim) check(t *testing.T) {
	t.Helper()
	v.stop.Store(true)
	v.wg.Wait()
	var samples []string
	v.samples.Range(func(k, _ any) bool { samples = append(samples, k.(string)); return true })
	if v.wrong.Load() != 0 || v.failures.Load() != 0 {
		t.Fatalf("victim: %d of %d answers were not its own, %d failed: %v", v.wrong.Load(), v.runs.Load(), v.failures.Load(), samples)
	}
	if v.runs.Load() < 5 {
		t.Fatalf("victim ran only %d statements: the attack did not race it", v.runs.Load())
	}
}

func txnProxy(t *testing.T, extra string) *harness {
	return startProxy(t, "pool_mode = \"transaction\"\nquery_wait_timeout = \"20s\"\n"+extra+"\n[users.app]\npool_size = 1")
}

// A FunctionCall is answered up to its ReadyForQuery: the connection does not pass to
// the waiting victim while the attacker's answer is in flight (it once did, and the
// victim's switch check read the attacker's row).
func TestAttackFunctionCallDesync(t *testing.T) {
	h := txnProxy(t, "")
	a := dialRaw(t, h, "tenant-a")
	a.send(&pgproto3.Query{String: "SELECT 'pg_catalog.pg_backend_pid'::regproc::oid"})
	oidRow := a.until(1)
	var oid uint32
	fmt.Sscanf(strings.TrimPrefix(oidRow[1], "D:"), "%d", &oid)
	v := startVictim(t, h, "tenant-b", ctxB)
	for range 200 {
		a.send(&pgproto3.FunctionCall{Function: oid, ResultFormatCode: 0}, &pgproto3.Query{String: labelSQL})
		got := a.until(2)
		if len(got) != 6 || !strings.HasPrefix(got[0], "V:") || got[1] != "Z:I" || got[2] != "T" || got[3] != "D:"+ctxA || got[5] != "Z:I" {
			t.Fatalf("attacker's own answers: %v", got)
		}
	}
	v.check(t)
}

// In session mode an unanswered FunctionCall before Terminate does not fool the reset:
// the connection is destroyed or reset, and the next client of another label sees
// nothing of it.
func TestAttackFunctionCallBeforeTerminate(t *testing.T) {
	h := startProxy(t, "[users.app]\npool_size = 1")
	for range 20 {
		a := dialRaw(t, h, "tenant-a")
		a.send(&pgproto3.FunctionCall{Function: 2026}, &pgproto3.Terminate{})
		a.conn.Close()
		b := h.connect(t, "app", "tenant-b")
		if got := label(t, b); got != ctxB {
			t.Fatalf("after A's FunctionCall and Terminate, B runs under %q", got)
		}
		b.Close(context.Background())
	}
}

// Statement names: a client cannot see, replace or run another label's prepared
// statements, whatever it writes (comments, case, DEALLOCATE ALL, the proxy's own
// namespace).
func TestAttackPreparedStatementHijack(t *testing.T) {
	h := txnProxy(t, "")
	ctx := context.Background()
	b := h.connect(t, "app", "tenant-b")
	var got string
	if err := b.QueryRow(ctx, labelSQL).Scan(&got); err != nil || got != ctxB {
		t.Fatalf("victim: %q %v", got, err)
	}
	a := h.connect(t, "app", "tenant-a")
	rows, err := a.Query(ctx, "SELECT name, statement FROM pg_prepared_statements")
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for rows.Next() {
		var name, stmt string
		if err := rows.Scan(&name, &stmt); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(stmt, "sepgadm_test.label") && !strings.Contains(stmt, "pg_prepared_statements") {
			seen = append(seen, name)
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(seen) != 0 {
		t.Fatalf("tenant A sees tenant B's prepared statements: %v", seen)
	}
	for _, sql := range []string{
		"/**/PREPARE x AS SELECT 'hijacked'",
		"prepare\tx AS SELECT 'hijacked'",
		"-- a comment\nPrEpArE x AS SELECT 'hijacked'",
		"SELECT 1; PREPARE x AS SELECT 'hijacked'",
		"DEALLOCATE ALL",
		"/* nested /* comment */ */ deallocate all",
	} {
		if _, err := a.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); sqlState(err) != "0A000" {
			t.Errorf("%q: %v, want 0A000", sql, err)
		}
	}
	// A statement name in the proxy's own namespace ends the session.
	if _, err := a.Prepare(ctx, "sepgadm_0123", "SELECT 'hijacked'"); err == nil {
		t.Errorf("a client prepared a statement in the proxy's namespace")
	}
	if err := b.QueryRow(ctx, labelSQL).Scan(&got); err != nil || got != ctxB {
		t.Fatalf("victim after the attack: %q %v", got, err)
	}
}

// Session state a tenant leaves behind (settings by set_config, custom settings, temp
// tables, session advisory locks taken in dynamic SQL) never reaches a client of
// another label: the connection is reset before it changes label.
func TestAttackSessionStateCrossesNoLabel(t *testing.T) {
	h := txnProxy(t, "")
	ctx := context.Background()
	a := h.connect(t, "app", "tenant-a")
	for _, sql := range []string{
		"SELECT set_config('search_path', 'evil, public', false)",
		"SELECT set_config('myapp.tenant_id', 'A', false)",
		"CREATE TEMP TABLE a_secret AS SELECT 'A''s secret' AS v",
		"DO $$ BEGIN PERFORM pg_advisory_lock(4242); END $$",
	} {
		if _, err := a.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	b := h.connect(t, "app", "tenant-b")
	var path, tenant string
	var temp *string
	var locked bool
	if err := b.QueryRow(ctx, `SELECT current_setting('search_path'), coalesce(current_setting('myapp.tenant_id', true), ''),
		to_regclass('pg_temp.a_secret')::text, pg_try_advisory_xact_lock(4242)`).Scan(&path, &tenant, &temp, &locked); err != nil {
		t.Fatal(err)
	}
	if path != `"$user", public` || tenant != "" || temp != nil || !locked {
		t.Fatalf("tenant B inherits A's session: search_path %q, myapp.tenant_id %q, temp table %v, advisory lock free %v", path, tenant, derefStr(temp), locked)
	}
	if got := label(t, b); got != ctxB {
		t.Fatalf("B runs under %q", got)
	}
}

func derefStr(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// A pipeline left without Sync, a Flush-only pipeline, a COPY abandoned midway: the
// connection never passes on in those states.
func TestAttackUnfinishedRequests(t *testing.T) {
	h := txnProxy(t, "")
	for _, tc := range []struct {
		name string
		msgs []pgproto3.FrontendMessage
	}{
		{"no Sync, then gone", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: labelSQL}, &pgproto3.Bind{}, &pgproto3.Execute{}}},
		{"Flush only, then gone", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: labelSQL}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}}},
		{"BEGIN, then gone", []pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN; CREATE TEMP TABLE x(v int)"}}},
		{"COPY midway, then gone", []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "CREATE TEMP TABLE c(v text); COPY c FROM STDIN"}, &pgproto3.CopyData{Data: []byte("half")}}},
		{"half a message, then gone", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := dialRaw(t, h, "tenant-a")
			if tc.msgs == nil {
				_, _ = a.conn.Write([]byte{'Q', 0, 0, 0, 100, 'S', 'E', 'L'})
			} else {
				a.send(tc.msgs...)
			}
			time.Sleep(100 * time.Millisecond)
			a.conn.Close()
			b := h.connect(t, "app", "tenant-b")
			if got := label(t, b); got != ctxB {
				t.Fatalf("B runs under %q", got)
			}
			var temps int
			if err := b.QueryRow(context.Background(), "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()").Scan(&temps); err != nil || temps != 0 {
				t.Fatalf("B sees %d temp tables (%v)", temps, err)
			}
			b.Close(context.Background())
		})
	}
}

// A Flush-only pipeline is answered, holds the connection until its Sync, and the
// victim waiting for the connection gets only its own answers.
func TestAttackFlushPipeline(t *testing.T) {
	h := txnProxy(t, "")
	a := dialRaw(t, h, "tenant-a")
	v := startVictim(t, h, "tenant-b", ctxB)
	for range 50 {
		a.send(&pgproto3.Parse{Query: labelSQL}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
		time.Sleep(time.Millisecond)
		a.send(&pgproto3.Sync{})
		got := a.until(1)
		if strings.Join(got, " ") != "1 2 D:"+ctxA+" C:SELECT 1 Z:I" {
			t.Fatalf("attacker's pipeline: %v", got)
		}
	}
	v.check(t)
}

// COPY FROM STDIN aborted by CopyFail, and a COPY whose data fails on the server: the
// attacker gets its errors, the victim its own answers.
func TestAttackCopyAborts(t *testing.T) {
	h := txnProxy(t, "")
	a := dialRaw(t, h, "tenant-a")
	v := startVictim(t, h, "tenant-b", ctxB)
	for range 30 {
		a.send(&pgproto3.Query{String: "CREATE TEMP TABLE IF NOT EXISTS c(v int); COPY c FROM STDIN"})
		if got := a.until(1); got[len(got)-1] != "G" {
			t.Fatalf("COPY: %v", got)
		}
		a.send(&pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyFail{Message: "abort"})
		if got := strings.Join(a.until(1), " "); got != "E:57014 Z:I" {
			t.Fatalf("CopyFail: %v", got)
		}
		a.send(&pgproto3.Query{String: "CREATE TEMP TABLE IF NOT EXISTS c(v int); COPY c FROM STDIN"})
		a.until(1)
		a.send(&pgproto3.CopyData{Data: []byte("not a number\n")}, &pgproto3.CopyData{Data: []byte("2\n")}, &pgproto3.CopyDone{})
		if got := strings.Join(a.until(1), " "); got != "E:22P02 Z:I" {
			t.Fatalf("bad COPY data: %v", got)
		}
		// COPY data streamed right behind the statement, before the CopyInResponse (as
		// pgx sends it).
		a.send(&pgproto3.Query{String: "CREATE TEMP TABLE IF NOT EXISTS c(v int); COPY c FROM STDIN"}, &pgproto3.CopyData{Data: []byte("3\n")}, &pgproto3.CopyDone{})
		if got := strings.Join(a.until(1), " "); !strings.HasSuffix(got, "G") {
			t.Fatalf("early COPY: %v", got)
		}
		if got := strings.Join(a.until(1), " "); got != "C:COPY 1 Z:I" {
			t.Fatalf("early COPY's end: %v", got)
		}
		a.send(&pgproto3.Query{String: labelSQL})
		if got := a.until(1); got[1] != "D:"+ctxA {
			t.Fatalf("attacker's label: %v", got)
		}
	}
	v.check(t)
}

// Cancel requests racing the connection's release never cancel the victim's statement.
func TestAttackCancelRacesRelease(t *testing.T) {
	h := txnProxy(t, "")
	ctx := context.Background()
	a := h.connect(t, "app", "tenant-a")
	v := startVictim(t, h, "tenant-b", ctxB)
	for i := range 100 {
		qctx, cancel := context.WithTimeout(ctx, time.Duration(i%7)*time.Millisecond)
		_, _ = a.Exec(qctx, "SELECT pg_sleep(0.002)")
		cancel()
		if a.IsClosed() {
			a = h.connect(t, "app", "tenant-a")
		}
	}
	v.check(t)
}

// A message the relay does not know destroys the server connection and ends the client.
func TestAttackUnknownMessage(t *testing.T) {
	h := txnProxy(t, "")
	a := dialRaw(t, h, "tenant-a")
	a.send(&pgproto3.Query{String: "BEGIN"})
	a.until(1)
	_, _ = a.conn.Write([]byte{'p', 0, 0, 0, 5, 'x'})
	if got := strings.Join(a.until(1), " "); got != "E:08P01 FATAL EOF" {
		t.Fatalf("after an unknown message: %v", got)
	}
	b := h.connect(t, "app", "tenant-b")
	if got := label(t, b); got != ctxB {
		t.Fatalf("B runs under %q", got)
	}
}

// A client idle inside a transaction is ended after idle_transaction_timeout, and its
// connection serves the next client.
func TestIdleTransactionTimeout(t *testing.T) {
	h := txnProxy(t, `idle_transaction_timeout = "300ms"`)
	ctx := context.Background()
	a := h.connect(t, "app", "tenant-a")
	if _, err := a.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	b := h.connect(t, "app", "tenant-b")
	start := time.Now()
	if got := label(t, b); got != ctxB {
		t.Fatalf("B runs under %q", got)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("B waited %v", waited)
	}
	_, err := a.Exec(ctx, "SELECT 1")
	if sqlState(err) != "25P03" || !strings.Contains(err.Error(), "idle_transaction_timeout") {
		t.Fatalf("A's idle transaction after the timeout: %v, want 25P03 naming idle_transaction_timeout", err)
	}
}

// Before authentication a client cannot make the proxy hold a large message.
func TestPreAuthMessageCap(t *testing.T) {
	dir := t.TempDir()
	ul := dir + "/userlist.txt"
	if err := os.WriteFile(ul, []byte("\"bob\" \"bobpw\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := authProxy(t, "auth = \"scram-sha-256\"\n", fmt.Sprintf("[auth]\nuserlist = %q\n", ul))
	conn, err := net.Dial("tcp", h.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "bob", "database": "postgres"}})
	_ = fe.Flush()
	if _, err := fe.Receive(); err != nil {
		t.Fatal(err)
	}
	// A SASLInitialResponse that claims 64 MiB.
	_, _ = conn.Write([]byte{'p', 0x04, 0, 0, 0})
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		m, err := fe.Receive()
		if err != nil {
			break // closed by the proxy
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok && e.Code != "28P01" {
			t.Fatalf("error %s %s", e.Code, e.Message)
		}
	}
	if !strings.Contains(h.logs.String(), "exceeds the limit") {
		t.Errorf("the proxy did not refuse the oversized message:\n%s", h.logs.String())
	}
}

// Connections count against max_client_conn before they log in: a flood of silent
// connections cannot exceed it.
func TestMaxClientConnCountsUnauthenticated(t *testing.T) {
	h := startProxy(t, "max_client_conn = 5")
	var silent []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", h.tcp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	time.Sleep(100 * time.Millisecond)
	_, err := pgx.Connect(context.Background(), h.dsn("alice", ""))
	if sqlState(err) != "53300" {
		t.Fatalf("a sixth connection while five wait to log in: %v, want 53300", err)
	}
	for _, c := range silent {
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	conn := h.connect(t, "alice", "")
	if got := label(t, conn); got != ctxA {
		t.Fatalf("after the flood: %q", got)
	}
}

// The credential never reaches the server log, even with every statement and its
// duration logged, in session and transaction mode; a role whose sessions could log
// bind parameters is never sent the credential.
func TestCredentialNeverLogged(t *testing.T) {
	c := pg.Get(t)
	setupServer(t, c)
	ctx := context.Background()
	admin, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for _, sql := range []string{
		"ALTER ROLE alice SET log_statement = 'all'", "ALTER ROLE alice SET log_min_duration_statement = 0",
		// Any role may set these for itself; the plan would carry the switch's arguments.
		"ALTER ROLE alice SET debug_print_plan = on", "ALTER ROLE alice SET debug_print_parse = on",
		"ALTER ROLE leaky SET log_statement = 'all'", "ALTER ROLE leaky SET log_min_duration_statement = 0",
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, "ALTER ROLE alice RESET log_statement")
		_, _ = admin.Exec(ctx, "ALTER ROLE alice RESET log_min_duration_statement")
		_, _ = admin.Exec(ctx, "ALTER ROLE alice RESET debug_print_plan")
		_, _ = admin.Exec(ctx, "ALTER ROLE alice RESET debug_print_parse")
	})
	for _, mode := range []string{"session", "transaction"} {
		h := startProxy(t, fmt.Sprintf("pool_mode = %q", mode))
		// A client asking for the plan in its own startup packet is overruled too.
		cfg, err := pgx.ParseConfig(h.dsn("alice", ""))
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["options"] = "-c debug_print_plan=on"
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := label(t, conn); got != ctxA {
			t.Fatalf("%s mode: label %q", mode, got)
		}
		conn.Close(ctx)
		_, err = pgx.Connect(ctx, h.dsn("leaky", ""))
		if sqlState(err) != "55000" || !strings.Contains(err.Error(), `role "leaky" has log_parameter_max_length = -1`) ||
			!strings.Contains(err.Error(), "sepgadm install --proxy-role leaky") {
			t.Fatalf("%s mode: a role that logs bind parameters: %v", mode, err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the logger flushes
	log, err := os.ReadFile(c.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "test_tag") {
		t.Fatalf("the server log shows no switch call: the test proves nothing")
	}
	if strings.Contains(string(log), token) {
		t.Fatalf("the credential is in the server log")
	}
}

// query_timeout ends a client whose statement the server does not answer in time, and
// the pool goes on with a fresh connection.
func TestQueryTimeout(t *testing.T) {
	for _, mode := range []string{"session", "transaction"} {
		h := startProxy(t, fmt.Sprintf("pool_mode = %q\nquery_timeout = \"300ms\"\n[users.app]\npool_size = 1", mode))
		ctx := context.Background()
		a := h.connect(t, "app", "tenant-a")
		start := time.Now()
		_, err := a.Exec(ctx, "SELECT pg_sleep(5)")
		if sqlState(err) != "57014" || !strings.Contains(err.Error(), "query_timeout") || time.Since(start) > 3*time.Second {
			t.Fatalf("%s mode: a slow statement: %v after %v", mode, err, time.Since(start))
		}
		b := h.connect(t, "app", "tenant-b")
		var got string
		if err := b.QueryRow(ctx, "SELECT pg_sleep(0.1)::text || "+strings.TrimPrefix(labelSQL, "SELECT ")).Scan(&got); err != nil || got != ctxB {
			t.Fatalf("%s mode: the next client: %q %v", mode, got, err)
		}
	}
}

// In session mode a tenant's LISTEN and WITH HOLD cursors end with its session: the
// next tenant on the same server connection receives no notification for the channel
// and cannot fetch from the cursor.
func TestAttackSessionModeLeavesNothing(t *testing.T) {
	h := startProxy(t, "[users.app]\npool_size = 1")
	ctx := context.Background()
	a := h.connect(t, "app", "tenant-a")
	pidA := backendPID(t, a)
	for _, sql := range []string{"LISTEN secret_channel", "BEGIN", "DECLARE a_cursor CURSOR WITH HOLD FOR SELECT 'A''s row'", "COMMIT"} {
		if _, err := a.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	a.Close(ctx)
	b := dialRaw(t, h, "tenant-b")
	b.send(&pgproto3.Query{String: "SELECT pg_backend_pid()"})
	if got := b.until(1); got[1] != fmt.Sprintf("D:%d", pidA) {
		t.Fatalf("B is not on A's old connection (%v): the test proves nothing", got)
	}
	admin, err := h.cluster.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "NOTIFY secret_channel, 'for A only'"); err != nil {
		t.Fatal(err)
	}
	b.send(&pgproto3.Query{String: "FETCH a_cursor"}, &pgproto3.Query{String: "SELECT pg_sleep(0.2)"}, &pgproto3.Query{String: labelSQL})
	got := strings.Join(b.until(3), " ")
	if got != "E:34000 Z:I T D: C:SELECT 1 Z:I T D:"+ctxB+" C:SELECT 1 Z:I" {
		t.Fatalf("B after A's LISTEN and WITH HOLD cursor: %s", got)
	}
}

// client_idle_timeout ends a client idle outside a transaction (57P05); one that keeps
// talking stays.
func TestClientIdleTimeout(t *testing.T) {
	h := txnProxy(t, `client_idle_timeout = "300ms"`)
	ctx := context.Background()
	idle := h.connect(t, "app", "tenant-a")
	busy := h.connect(t, "app", "tenant-b")
	for range 8 {
		time.Sleep(100 * time.Millisecond)
		if got := label(t, busy); got != ctxB {
			t.Fatalf("busy client: %q", got)
		}
	}
	_, err := idle.Exec(ctx, "SELECT 1")
	if sqlState(err) != "57P05" || !strings.Contains(err.Error(), "client_idle_timeout") {
		t.Fatalf("a client idle for 800 ms: %v, want 57P05 naming client_idle_timeout", err)
	}
}

// A client cannot hold more than max_prepared_statements named statements (54000).
func TestMaxPreparedStatements(t *testing.T) {
	h := txnProxy(t, "max_prepared_statements = 5")
	ctx := context.Background()
	a := h.connect(t, "app", "tenant-a")
	var err error
	for i := range 6 {
		if _, err = a.Prepare(ctx, fmt.Sprintf("s%d", i), fmt.Sprintf("SELECT %d", i)); err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "max_prepared_statements") {
		t.Fatalf("the sixth statement: %v, want a refusal naming max_prepared_statements", err)
	}
}

// libpq's extended-protocol COPY FROM STDIN (PQexecParams): a Sync right behind the
// Execute, which the server ignores during the COPY, then the data and the Sync that
// counts; in both pool modes, and the connection serves another label next.
func TestExtendedProtocolCopy(t *testing.T) {
	for _, mode := range []string{"session", "transaction"} {
		h := startProxy(t, fmt.Sprintf("pool_mode = %q\n[users.app]\npool_size = 1", mode))
		a := dialRaw(t, h, "tenant-a")
		a.send(&pgproto3.Query{String: "CREATE TEMP TABLE IF NOT EXISTS xc(v int)"})
		a.until(1)
		for _, early := range []bool{false, true} {
			msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "COPY xc FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}
			data := []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("7\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{}}
			if early { // all at once, as pgx-style clients stream it
				a.send(append(msgs, data...)...)
			} else {
				a.send(msgs...)
			}
			if got := strings.Join(a.until(1), " "); got != "1 2 G" {
				t.Fatalf("%s mode: COPY via Execute: %q", mode, got)
			}
			if !early {
				a.send(data...)
			}
			if got := strings.Join(a.until(1), " "); got != "C:COPY 1 Z:I" {
				t.Fatalf("%s mode: end of COPY via Execute: %q", mode, got)
			}
		}
		a.send(&pgproto3.Query{String: "SELECT count(*) FROM xc"})
		if got := strings.Join(a.until(1), " "); got != "T D:2 C:SELECT 1 Z:I" {
			t.Fatalf("%s mode: rows copied: %q", mode, got)
		}
		a.conn.Close()
		if mode == "transaction" {
			b := h.connect(t, "app", "tenant-b")
			if got := label(t, b); got != ctxB {
				t.Fatalf("B after A's COPY: %q", got)
			}
		}
	}
}

// COPY data a client sends after its COPY failed (the server drops it unanswered) is
// skipped whole, never read as the client's next messages: a payload that holds a frame
// does not become a statement.
func TestLateCopyDataIsNotParsed(t *testing.T) {
	h := txnProxy(t, "")
	a := dialRaw(t, h, "tenant-a")
	a.send(&pgproto3.Query{String: "CREATE TEMP TABLE IF NOT EXISTS lc(v int); COPY lc FROM STDIN"})
	if got := strings.Join(a.until(1), " "); !strings.HasSuffix(got, "G") {
		t.Fatalf("COPY: %s", got)
	}
	a.send(&pgproto3.CopyData{Data: []byte("not a number\n")})
	if got := strings.Join(a.until(1), " "); got != "E:22P02 Z:I" {
		t.Fatalf("bad row: %s", got)
	}
	smuggled := (&pgproto3.Query{String: "SELECT 'smuggled'"})
	frame, _ := smuggled.Encode(nil)
	a.send(&pgproto3.CopyData{Data: frame}, &pgproto3.CopyDone{}, &pgproto3.Query{String: "SELECT 'asked'"})
	if got := strings.Join(a.until(1), " "); got != "T D:asked C:SELECT 1 Z:I" {
		t.Fatalf("after late COPY data holding a frame: %s", got)
	}
}
