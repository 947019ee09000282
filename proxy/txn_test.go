//go:build !lab

package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

func TestTransactionModePgbench(t *testing.T) {
	// 8 clients over 2 server connections.
	pgbenchThrough(t, startProxy(t, "pool_mode = \"transaction\"\n[users.alice]\npool_size = 2"), 8, 100)
}

// Many clients of two contexts over a pool of two: every statement sees its own label.
func TestTransactionModeLabelFollowsEveryTransaction(t *testing.T) {
	h := startProxy(t, "pool_mode = \"transaction\"\n[users.app]\npool_size = 2")
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	mismatches, total := 0, 0
	for i := range 8 {
		app, want := "tenant-a", ctxA
		if i%2 == 1 {
			app, want = "tenant-b", ctxB
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, h.dsn("app", app))
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(ctx)
			for range 50 {
				var got string
				err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
					return tx.QueryRow(ctx, "SELECT coalesce(current_setting('sepgadm_test.label', true), '')").Scan(&got)
				})
				mu.Lock()
				total++
				if err != nil || got != want {
					mismatches++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d transactions, %d mismatches", total, mismatches)
	if mismatches != 0 || total != 400 {
		t.Fatalf("%d of %d transactions ran under another label", mismatches, total)
	}
}

func TestTransactionModeReplaysSettings(t *testing.T) {
	h := startProxy(t, "pool_mode = \"transaction\"\n[users.app]\npool_size = 1")
	ctx := context.Background()
	a := h.connect(t, "app", "tenant-a")
	b := h.connect(t, "app", "tenant-b")
	for _, s := range []string{"SET TimeZone = 'Asia/Tokyo'", "SET DateStyle = 'German'", "SET search_path TO pg_catalog, public"} {
		if _, err := a.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	show := func(c *pgx.Conn, what string) string {
		var v string
		if err := c.QueryRow(ctx, "SHOW "+what).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for range 3 { // alternate over the single server connection
		if got := show(b, "TimeZone"); got == "Asia/Tokyo" {
			t.Errorf("A's TimeZone leaked to B")
		}
		if got := show(b, "application_name"); got != "tenant-b" {
			t.Errorf("B's application_name = %q", got)
		}
		if got := show(a, "TimeZone"); got != "Asia/Tokyo" {
			t.Errorf("A's TimeZone after B = %q", got)
		}
		if got := show(a, "DateStyle"); got != "German, DMY" {
			t.Errorf("A's DateStyle after B = %q", got)
		}
		if got := show(a, "search_path"); got != "pg_catalog, public" {
			t.Errorf("A's search_path after B = %q", got)
		}
		if got := show(a, "application_name"); got != "tenant-a" {
			t.Errorf("A's application_name = %q", got)
		}
	}
}

func TestTransactionModePreparedStatementsFollowTheClient(t *testing.T) {
	h := startProxy(t, "pool_mode = \"transaction\"\n[users.alice]\npool_size = 2")
	ctx := context.Background()
	c1 := h.connect(t, "alice", "")
	c2 := h.connect(t, "alice", "")
	if _, err := c1.Prepare(ctx, "add_one", "SELECT $1::int + 1"); err != nil {
		t.Fatal(err)
	}
	pids := map[int]bool{}
	for i := range 6 {
		// c2 holds one server connection in a transaction half of the time, so c1 lands
		// on the other one and the statement must be prepared there too.
		var tx pgx.Tx
		if i%2 == 0 {
			var err error
			if tx, err = c2.Begin(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
		}
		var v, pid int
		if err := c1.QueryRow(ctx, "add_one", i).Scan(&v); err != nil || v != i+1 {
			t.Fatalf("prepared statement on round %d: %d %v", i, v, err)
		}
		if err := c1.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids[pid] = true
		if tx != nil {
			_ = tx.Rollback(ctx)
		}
	}
	if len(pids) < 2 {
		t.Errorf("c1 used server backends %v; the test wants it on both", pids)
	}
	// The client's Close works and the name can be prepared again.
	if err := c1.Deallocate(ctx, "add_one"); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Prepare(ctx, "add_one", "SELECT $1::int + 2"); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := c1.QueryRow(ctx, "add_one", 1).Scan(&v); err != nil || v != 3 {
		t.Fatalf("re-prepared statement: %d %v", v, err)
	}
}

func TestTransactionModeRefusesSessionFeatures(t *testing.T) {
	h := startProxy(t, "pool_mode = \"transaction\"")
	ctx := context.Background()
	conn := h.connect(t, "alice", "")
	for _, sql := range []string{
		"LISTEN chan",
		"SELECT pg_advisory_lock(42)",
		"BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT 1; COMMIT",
		"PREPARE p1 AS SELECT 1",
	} {
		_, err := conn.Exec(ctx, sql)
		if sqlState(err) != "0A000" || !strings.Contains(err.Error(), "cannot work in transaction pooling mode") {
			t.Errorf("%s: %v, want 0A000", sql, err)
		}
		// The session goes on.
		if got := label(t, conn); got != ctxA {
			t.Fatalf("after refusing %q: label %q", sql, got)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_xact_lock(42)"); err != nil {
		t.Errorf("transaction-level advisory lock: %v", err)
	}
	// Through the extended protocol the refusal ends the session.
	_, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", 7)
	if sqlState(err) != "0A000" {
		t.Errorf("extended-protocol session lock: %v", err)
	}
}

func TestTransactionModeClientVanishingMidTransaction(t *testing.T) {
	h := startProxy(t, "pool_mode = \"transaction\"\n[users.app]\npool_size = 1")
	ctx := context.Background()
	a := h.connect(t, "app", "tenant-a")
	if _, err := a.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	pidA := backendPID(t, a)
	_ = a.PgConn().Conn().Close()
	b := h.connect(t, "app", "tenant-b")
	if pid := backendPID(t, b); pid == pidA {
		t.Errorf("the connection of a client that vanished mid-transaction was reused")
	}
	if got := label(t, b); got != ctxB {
		t.Errorf("B runs under %q", got)
	}
}

// A client that leaves while its statement runs: the relay hands the wait to a reader
// goroutine after inlineWait, notices the client is gone, and closes the server
// connection, which ends the backend (PgBouncer does the same).
func TestTransactionModeClientVanishingDuringSlowStatement(t *testing.T) {
	h := startProxy(t, "pool_mode = \"transaction\"\n[users.app]\npool_size = 2")
	ctx := context.Background()
	a := h.connect(t, "app", "tenant-a")
	pid := backendPID(t, a)
	if err := a.PgConn().Conn().SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// Send the statement without waiting for its answer, then vanish. The backend
	// notices its own client (the proxy) closing only with client_connection_check_interval.
	q, err := (&pgproto3.Query{String: "SET client_connection_check_interval = 100; SELECT pg_sleep(60)"}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.PgConn().Conn().Write(q); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the proxy has sent it and waits for the answer
	_ = a.PgConn().Conn().Close()

	watch, err := pg.Get(t).Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := watch.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still runs the vanished client's pg_sleep(60) after 10 s", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A client that changes its own label (here through the stand-in's setting) leaves the
// connection under another label; verify_label = "always" catches it before reuse.
func TestVerifyLabelAlways(t *testing.T) {
	for _, mode := range []string{"on_switch", "always"} {
		t.Run(mode, func(t *testing.T) {
			h := startProxy(t, fmt.Sprintf("pool_mode = \"transaction\"\nverify_label = %q\n[users.alice]\npool_size = 1", mode))
			ctx := context.Background()
			a := h.connect(t, "alice", "")
			if _, err := a.Exec(ctx, "SELECT set_config('sepgadm_test.label', 'system_u:system_r:elsewhere_t:s0', false)"); err != nil {
				t.Fatal(err)
			}
			a2 := h.connect(t, "alice", "")
			got := label(t, a2)
			switch mode {
			case "always":
				if got != ctxA {
					t.Errorf("with verify_label = always the next client runs under %q, want %q", got, ctxA)
				}
			case "on_switch":
				if got != "system_u:system_r:elsewhere_t:s0" {
					t.Logf("on_switch: %q", got)
				}
			}
		})
	}
}

func TestTransactionModeCancel(t *testing.T) {
	h := startProxy(t, "pool_mode = \"transaction\"")
	conn := h.connect(t, "alice", "")
	cancelSleep(t, conn)
	if got := label(t, conn); got != ctxA {
		t.Errorf("after the cancel: label %q", got)
	}
}
