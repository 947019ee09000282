package refpool

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/sepgadm/sepgadm/internal/pgtest"
	"github.com/sepgadm/sepgadm/proxy/wire"
)

var pg = pgtest.NewShared(pgtest.Options{})

func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }

func frame(typ byte, body string) string { return string(wire.AppendMessage(nil, typ, []byte(body))) }

type fed struct {
	Idle    bool
	Readies int
}

// TestFrames feeds each stream whole and cut in two at every offset: the frame
// boundaries, ReadyForQuery count and final idleness must not depend on the cut.
func TestFrames(t *testing.T) {
	answer := frame('1', "") + frame('2', "") + frame('T', "\x00\x01abcdefghijklmnopqrstuvw") + frame('D', "\x00\x01\x00\x00\x00\x011") + frame('C', "SELECT 1\x00")
	tests := []struct {
		name   string
		stream string
		want   fed
	}{
		{"idle", answer + frame('Z', "I"), fed{true, 1}},
		{"in transaction", answer + frame('Z', "T"), fed{false, 1}},
		{"failed transaction", frame('E', "SERROR\x00") + frame('Z', "E"), fed{false, 1}},
		{"two answers", frame('Z', "T") + answer + frame('Z', "I"), fed{true, 2}},
		{"notice after ready", answer + frame('Z', "I") + frame('N', "Sx\x00"), fed{false, 1}},
		{"body holding Z and I", frame('D', "ZI") + frame('C', "x\x00"), fed{false, 0}},
		{"half a frame", frame('Z', "I") + frame('C', "SELECT 1\x00")[:3], fed{false, 1}},
	}
	for _, tt := range tests {
		for cut := 0; cut <= len(tt.stream); cut++ {
			var f frames
			i1, r1 := f.feed([]byte(tt.stream[:cut]))
			i2, r2 := f.feed([]byte(tt.stream[cut:]))
			if cut == len(tt.stream) {
				i2 = i1 // the second piece is empty
			}
			if diff := cmp.Diff(tt.want, fed{i2, r1 + r2}); diff != "" {
				t.Errorf("%s, cut at %d (-want +got):\n%s", tt.name, cut, diff)
			}
		}
	}
}

// FuzzFrames: any stream, cut anywhere, reads the same as whole.
func FuzzFrames(f *testing.F) {
	f.Add([]byte(frame('C', "SELECT 1\x00")+frame('Z', "I")), 3)
	f.Add([]byte(frame('Z', "T")+frame('Z', "I")), 6)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		b := slices.Clone(in)
		if cut < 0 || cut > len(b) {
			cut = len(b) / 2
		}
		for i := 0; i+5 <= len(b); i++ {
			// Keep lengths small so streams hold several frames.
			if l := binary.BigEndian.Uint32(b[i+1:]); l > 64 {
				binary.BigEndian.PutUint32(b[i+1:], l%64)
			}
		}
		var whole, parts frames
		wi, wr := whole.feed(b)
		_, r1 := parts.feed(b[:cut])
		pi, r2 := parts.feed(b[cut:])
		if cut == len(b) {
			pi = wi // the second piece is empty: feed reports nothing of it
		}
		if wi != pi || wr != r1+r2 || whole != parts {
			t.Fatalf("whole: %v %d %+v; cut at %d: %v %d %+v", wi, wr, whole, cut, pi, r1+r2, parts)
		}
	})
}

// start runs Serve for the test on a free port and returns a DSN for it.
func start(t *testing.T, db string, pool, loops int) string {
	t.Helper()
	c := pg.Get(t)
	port := freePort(t)
	cfg := Config{
		Listen:   "127.0.0.1:" + strconv.Itoa(port),
		Socket:   filepath.Join(c.SocketDir, fmt.Sprintf(".s.PGSQL.%d", c.Port)),
		User:     pgtest.Superuser,
		Database: db,
		PoolSize: pool,
		Loops:    loops,
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Serve: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after its context ended", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10 s of its context ending")
		}
	})
	// Unnamed statements only: named ones do not survive transaction pooling.
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=prefer default_query_exec_mode=exec", port, pgtest.Superuser, db)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestServeMultiplexes: many clients over a small pool, each answer its own, and no
// more backends than the pool.
func TestServeMultiplexes(t *testing.T) {
	for _, tc := range []struct{ pool, loops int }{{2, 1}, {4, 2}} {
		t.Run(fmt.Sprintf("pool %d, %d loops", tc.pool, tc.loops), func(t *testing.T) {
			dsn := start(t, "postgres", tc.pool, tc.loops)
			ctx := context.Background()
			var mu sync.Mutex
			pids := map[uint32]bool{}
			var wg sync.WaitGroup
			errs := make(chan error, 12)
			for i := range 12 {
				wg.Go(func() {
					conn, err := pgx.Connect(ctx, dsn)
					if err != nil {
						errs <- err
						return
					}
					defer conn.Close(ctx)
					for j := range 30 {
						var got int
						if err := conn.QueryRow(ctx, "SELECT $1::int", i*1000+j).Scan(&got); err != nil || got != i*1000+j {
							errs <- fmt.Errorf("client %d: SELECT %d gave %d, %v", i, i*1000+j, got, err)
							return
						}
						var pid uint32
						err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
							return tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid)
						})
						if err != nil {
							errs <- fmt.Errorf("client %d: transaction: %w", i, err)
							return
						}
						mu.Lock()
						pids[pid] = true
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if len(pids) == 0 || len(pids) > tc.pool {
				t.Errorf("%d distinct backends served 12 clients through a pool of %d", len(pids), tc.pool)
			}
		})
	}
}

// TestServeAbandonedTransaction: a client that leaves inside a transaction does not
// hand that transaction to the next client.
func TestServeAbandonedTransaction(t *testing.T) {
	dsn := start(t, "postgres", 1, 1)
	ctx := context.Background()
	a, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "BEGIN; SET LOCAL application_name = 'abandoned'"); err != nil {
		t.Fatal(err)
	}
	a.Close(ctx)
	b, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	var name string
	if err := b.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name == "abandoned" {
		t.Error("the next client's statement ran inside the transaction the first client left open")
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	err := Serve(context.Background(), Config{Listen: "127.0.0.1:0", PoolSize: 1, Loops: 2}, nil)
	if err == nil {
		t.Fatal("a pool smaller than its loops was accepted")
	}
}

// TestServeReplacesDeadServers: idle server connections whose backends are terminated
// are replaced, and every client is served afterwards.
func TestServeReplacesDeadServers(t *testing.T) {
	c := pg.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.CreateDatabase(ctx, "refpool_dead"); err != nil {
		t.Fatal(err)
	}
	dsn := start(t, "refpool_dead", 2, 1)
	admin, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	backends := func() (pids []int32) {
		rows, err := admin.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE datname = 'refpool_dead' ORDER BY pid")
		if err != nil {
			t.Fatal(err)
		}
		pids, err = pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			t.Fatal(err)
		}
		return pids
	}
	before := backends()
	if len(before) != 2 {
		t.Fatalf("backends of the pool before: %v, want 2", before)
	}
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'refpool_dead'"); err != nil {
		t.Fatal(err)
	}
	var after []int32
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if after = backends(); len(after) == 2 && !slices.ContainsFunc(after, func(p int32) bool { return slices.Contains(before, p) }) {
			break
		}
	}
	if len(after) != 2 || slices.ContainsFunc(after, func(p int32) bool { return slices.Contains(before, p) }) {
		t.Fatalf("backends after terminating %v: %v, want two new ones", before, after)
	}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(ctx)
			for j := range 20 {
				var got int
				if err := conn.QueryRow(ctx, "SELECT $1::int", i*100+j).Scan(&got); err != nil || got != i*100+j {
					t.Errorf("client %d: SELECT %d gave %d, %v", i, i*100+j, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestServeHoldsUnsyncedRequest: a client that sends a Query and then extended-protocol
// messages without their Sync keeps its server connection after the Query's
// ReadyForQuery 'I': nobody else's statement runs between its Execute and its Sync.
func TestServeHoldsUnsyncedRequest(t *testing.T) {
	dsn := start(t, "postgres", 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	a, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_ = a.SetDeadline(time.Now().Add(20 * time.Second))
	startup := []byte{0, 0, 0, 0, 0, 3, 0, 0}
	startup = append(startup, "user\x00"+pgtest.Superuser+"\x00database\x00postgres\x00\x00"...)
	binary.BigEndian.PutUint32(startup, uint32(len(startup)))
	readUntilReady := func() string {
		var got []byte
		buf := make([]byte, 4096)
		for {
			n, err := a.Read(buf)
			if err != nil {
				t.Fatalf("client A: %v after %q", err, got)
			}
			got = append(got, buf[:n]...)
			if len(got) >= 6 && string(got[len(got)-6:len(got)-1]) == "Z\x00\x00\x00\x05" {
				return string(got)
			}
		}
	}
	if _, err := a.Write(startup); err != nil {
		t.Fatal(err)
	}
	readUntilReady()
	// Q, then Parse/Bind/Execute without Sync, in one write.
	req := frame('Q', "SELECT 1\x00") + frame('P', "\x00SELECT 42\x00\x00\x00") +
		frame('B', "\x00\x00\x00\x00\x00\x00\x00\x00") + frame('E', "\x00\x00\x00\x00\x00")
	if _, err := a.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	readUntilReady()

	// Client B wants the only server connection meanwhile.
	done := make(chan error, 1)
	go func() {
		b, err := pgx.Connect(ctx, dsn)
		if err != nil {
			done <- err
			return
		}
		defer b.Close(ctx)
		var got int
		if err := b.QueryRow(ctx, "SELECT 2").Scan(&got); err != nil || got != 2 {
			done <- fmt.Errorf("client B: SELECT 2 gave %d, %v", got, err)
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		t.Fatalf("client B was served between A's Execute and A's Sync (%v)", err)
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := a.Write([]byte(frame('S', ""))); err != nil {
		t.Fatal(err)
	}
	if got := readUntilReady(); !strings.Contains(got, "\x00\x0242") {
		t.Errorf("client A's Execute answered %q, want a row with 42", got)
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
}
