//go:build !lab

package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// metricsOf reads the proxy's Prometheus metrics from the address the
// proxy logged (metrics_listen = "127.0.0.1:0").
func metricsOf(t *testing.T, h *harness) map[string]float64 {
	t.Helper()
	addr := ""
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"metrics"`) {
			i := strings.Index(line, `"address":"`)
			addr = strings.SplitN(line[i+11:], `"`, 2)[0]
		}
	}
	if addr == "" {
		t.Fatalf("no metrics address in the log:\n%s", h.logs.String())
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if name, v, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			out[name] = f
		}
	}
	return out
}

// pgbenchRun runs pgbench through the proxy as alice and checks every transaction ran.
func pgbenchRun(t *testing.T, h *harness, args ...string) {
	t.Helper()
	cmd := exec.Command("pgbench", append([]string{"-n"}, args...)...)
	cmd.Env = append(os.Environ(), "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(h.port), "PGUSER=alice", "PGDATABASE=postgres")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "number of failed transactions: 0") ||
		strings.Contains(string(out), "aborted") {
		t.Fatalf("pgbench %v: %v\n%s", args, err, out)
	}
}

// Many clients over a small pool, in every query mode: the event loop serves nearly
// every request, connections pass from client to client through the pool's queue, and
// no transaction fails. (A hand-over inside the loop's own inbox handling once lost
// messages here, and only with many more clients than connections.)
func TestEventLoopManyClientsSmallPool(t *testing.T) {
	h := startProxy(t, "pool_mode = \"transaction\"\nevent_loop = \"on\"\nmetrics_listen = \"127.0.0.1:0\"\n[users.alice]\npool_size = 3")
	init := exec.Command("pgbench", "-i", "-s", "1", "-q")
	init.Env = append(os.Environ(), "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(h.port), "PGUSER=alice", "PGDATABASE=postgres")
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	before := metricsOf(t, h)["sepgadm_event_loop_requests_total"]
	const clients, txns = 40, 150
	for _, mode := range []string{"extended", "prepared", "simple"} {
		pgbenchRun(t, h, "-S", "-M", mode, "-c", strconv.Itoa(clients), "-j", "4", "-t", strconv.Itoa(txns))
	}
	pgbenchRun(t, h, "-M", "prepared", "-c", "20", "-j", "4", "-t", "40") // tpcb-like: 7 statements a transaction
	m := metricsOf(t, h)
	served := m["sepgadm_event_loop_requests_total"] - before
	total := float64(3*clients*txns + 20*40*7)
	t.Logf("event loop: %.0f of about %.0f requests, %.0f hand-backs", served, total, m["sepgadm_event_loop_handbacks_total"])
	if served < 0.8*total {
		t.Errorf("the event loop forwarded %.0f requests of about %.0f: most should be its", served, total)
	}
}

// The event loop is off unless asked for: every client stays on its goroutine.
func TestEventLoopOffByDefault(t *testing.T) {
	h := startProxy(t, "pool_mode = \"transaction\"\nmetrics_listen = \"127.0.0.1:0\"\n[users.alice]\npool_size = 2")
	conn := h.connect(t, "alice", "")
	for i := range 50 {
		var v int
		if err := conn.QueryRow(context.Background(), "SELECT $1::int", i).Scan(&v); err != nil || v != i {
			t.Fatalf("query %d: %d %v", i, v, err)
		}
	}
	if n := metricsOf(t, h)["sepgadm_event_loop_requests_total"]; n != 0 {
		t.Errorf("event_loop = off, yet the loop forwarded %.0f requests", n)
	}
}

// A client that stops reading a large answer must hold up nobody else: the loop keeps
// what the client's socket cannot take and gives the client back to its goroutine.
// The answer arrives whole and in order, and the client stays in step.
func TestEventLoopSlowReaderStallsNobody(t *testing.T) {
	h := startProxy(t, "pool_mode = \"transaction\"\nevent_loop = \"on\"\nmetrics_listen = \"127.0.0.1:0\"\n[users.alice]\npool_size = 2")
	ctx := context.Background()
	slow := h.connect(t, "alice", "")
	const q = "SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g"
	readAll := func(conn *pgx.Conn, pause <-chan struct{}) error {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			return err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var g int
			var s string
			if err := rows.Scan(&g, &s); err != nil {
				return err
			}
			n++
			if g != n || len(s) != 200 {
				return fmt.Errorf("row %d: g=%d, %d bytes", n, g, len(s))
			}
			if n == 10 && pause != nil {
				<-pause // stop reading with most of the answer still to come
			}
		}
		if rows.Err() != nil {
			return rows.Err()
		}
		if n != 20000 {
			return fmt.Errorf("%d rows", n)
		}
		return nil
	}
	// Once through the client's goroutine (a text's first use), so that the next run of
	// the same text is the loop's.
	if err := readAll(slow, nil); err != nil {
		t.Fatal(err)
	}
	before := metricsOf(t, h)
	pause := make(chan struct{})
	var wg sync.WaitGroup
	var slowErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		slowErr = readAll(slow, pause)
	}()
	time.Sleep(200 * time.Millisecond) // let the slow client's socket fill
	// Clients are dealt to the loops in turn (one per CPU), so of two clients connected
	// one after the other, one shares the slow reader's loop.
	done := make(chan error, 2)
	for range 2 {
		fast := h.connect(t, "alice", "")
		go func() {
			for i := range 200 {
				var v int
				if err := fast.QueryRow(ctx, "SELECT $1::int + 1", i).Scan(&v); err != nil || v != i+1 {
					done <- fmt.Errorf("query %d: %d %v", i, v, err)
					return
				}
			}
			done <- nil
		}()
	}
	timeout := time.After(30 * time.Second)
wait:
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-timeout:
			t.Error("a client that stopped reading held up another client")
			break wait
		}
	}
	close(pause)
	wg.Wait()
	if slowErr != nil {
		t.Fatalf("slow reader: %v", slowErr)
	}
	var v int
	if err := slow.QueryRow(ctx, "SELECT 41 + 1").Scan(&v); err != nil || v != 42 {
		t.Fatalf("slow reader's next query: %d %v", v, err)
	}
	after := metricsOf(t, h)
	if after["sepgadm_event_loop_requests_total"] == before["sepgadm_event_loop_requests_total"] {
		t.Error("the event loop forwarded none of the slow reader's or the other client's requests")
	}
	if after["sepgadm_event_loop_handbacks_total"] == before["sepgadm_event_loop_handbacks_total"] {
		t.Error("the slow reader was never given back to its goroutine")
	}
}
