//go:build !lab

package proxy_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestChaos runs many clients of six contexts through a transaction-mode pool of three
// while backends are terminated: transactions commit, roll back, fail, pipeline
// batches, or are abandoned midway by clients that vanish. Every statement returns the
// label it ran under and the number of the request it answers; the invariant is zero
// answers under another label or to another request. make test runs 20,000 checked
// statements; make chaos runs SEPGADM_CHAOS_STATEMENTS (1,000,000).
func TestChaos(t *testing.T) {
	target := 20000
	if v := os.Getenv("SEPGADM_CHAOS_STATEMENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SEPGADM_CHAOS_STATEMENTS=%q: want a positive number", v)
		}
		target = n
	}
	const contexts, clients = 6, 24
	var rules strings.Builder
	for i := range contexts {
		fmt.Fprintf(&rules, "\n[[context]]\nuser = \"app\"\napplication_name = \"chaos-%d\"\ncontext = \"system_u:system_r:chaos_%d_t:s0:c%d\"\n", i, i, i)
	}
	c := pg.Get(t)
	setupServer(t, c)
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/token", []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startWith(t, c, dir, fmt.Sprintf(`pool_mode = "transaction"
tag_function = "public.test_tag"
credential_file = %q
max_client_conn = 200
query_wait_timeout = "30s"
[[listen]]
address = "127.0.0.1:0"
auth = "trust"
[server]
host = %q
port = %d
[users.app]
pool_size = 3
%s`, dir+"/token", c.SocketDir, c.Port, rules.String()))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var statements, mismatches, vanished, aborted, failures, terminated atomic.Int64
	var samples, errSamples sync.Map
	admin, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var killer sync.WaitGroup
	killer.Add(1)
	go func() {
		defer killer.Done()
		for ctx.Err() == nil {
			time.Sleep(150 * time.Millisecond)
			var n int64
			if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity
				WHERE usename = 'app' AND application_name = 'sepgadm' ORDER BY random() LIMIT 1) s`).Scan(&n); err == nil {
				terminated.Add(n)
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(i)))
			ctxNo := i % contexts
			want := fmt.Sprintf("system_u:system_r:chaos_%d_t:s0:c%d", ctxNo, ctxNo)
			dsn := h.dsn("app", fmt.Sprintf("chaos-%d", ctxNo))
			var conn *pgx.Conn
			req := 0
			check := func(got string, r int) {
				statements.Add(1)
				if got != fmt.Sprintf("%s|%d", want, r) {
					mismatches.Add(1)
					samples.Store(got, true)
				}
			}
			for statements.Load() < int64(target) {
				if conn == nil {
					var err error
					if conn, err = pgx.Connect(ctx, dsn); err != nil {
						failures.Add(1)
						continue
					}
				}
				ok := true
				switch rng.Intn(4) {
				case 0: // a batch of statements pipelined in one round trip
					b := &pgx.Batch{}
					first := req + 1
					for range 2 + rng.Intn(4) {
						req++
						b.Queue(fmt.Sprintf("SELECT current_setting('sepgadm_test.label') || '|%d'", req))
					}
					br := conn.SendBatch(ctx, b)
					for r := first; r <= req; r++ {
						var got string
						if err := br.QueryRow().Scan(&got); err != nil {
							ok = false
							break
						}
						check(got, r)
					}
					if err := br.Close(); err != nil {
						ok = false
					}
				default: // a transaction
					tx, err := conn.Begin(ctx)
					if err != nil {
						errSamples.Store("begin: "+err.Error(), true)
						ok = false
						break
					}
					for range 1 + rng.Intn(3) {
						req++
						var got string
						if err := tx.QueryRow(ctx, "SELECT current_setting('sepgadm_test.label') || '|' || $1::int", req).Scan(&got); err != nil {
							errSamples.Store("query: "+err.Error(), true)
							ok = false
							break
						}
						check(got, req)
					}
					switch r := rng.Intn(20); {
					case !ok:
					case r == 0:
						_ = conn.PgConn().Conn().Close() // vanish mid-transaction
						conn = nil
						vanished.Add(1)
						continue
					case r < 4:
						_ = tx.Rollback(ctx)
						aborted.Add(1)
					case r == 4:
						_, _ = tx.Exec(ctx, "SELECT 1/0") // a failed transaction
						_ = tx.Rollback(ctx)
						aborted.Add(1)
					default:
						if err := tx.Commit(ctx); err != nil {
							ok = false
						}
					}
				}
				if !ok {
					failures.Add(1)
					conn.Close(ctx)
					conn = nil
				}
			}
			if conn != nil {
				conn.Close(ctx)
			}
		}()
	}
	wg.Wait()
	cancel()
	killer.Wait()
	var s, es []string
	samples.Range(func(k, _ any) bool { s = append(s, k.(string)); return true })
	errSamples.Range(func(k, _ any) bool {
		if len(es) < 3 {
			es = append(es, k.(string))
		}
		return true
	})
	t.Logf("some failures: %v", es)
	t.Logf("chaos: %d clients of %d contexts over a pool of 3, %d backends terminated: %d checked statements, %d transactions rolled back, %d clients vanished mid-transaction, %d failures (terminated backends), %d mismatches %v",
		clients, contexts, terminated.Load(), statements.Load(), aborted.Load(), vanished.Load(), failures.Load(), mismatches.Load(), s)
	if mismatches.Load() != 0 {
		t.Fatalf("%d statements answered under another label or to another request", mismatches.Load())
	}
	if terminated.Load() == 0 || vanished.Load() == 0 {
		t.Fatalf("the chaos was too tame to prove anything: %d terminated, %d vanished", terminated.Load(), vanished.Load())
	}
}
