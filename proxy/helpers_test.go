//go:build !lab

package proxy_test

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
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

// Many clients over a small pool, in every query mode: connections pass from client to
// client through the pool's queue, and no transaction fails.
func TestManyClientsSmallPool(t *testing.T) {
	h := startProxy(t, "pool_mode = \"transaction\"\n[users.alice]\npool_size = 3")
	init := exec.Command("pgbench", "-i", "-s", "1", "-q")
	init.Env = append(os.Environ(), "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(h.port), "PGUSER=alice", "PGDATABASE=postgres")
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	const clients, txns = 40, 150
	for _, mode := range []string{"extended", "prepared", "simple"} {
		pgbenchRun(t, h, "-S", "-M", mode, "-c", strconv.Itoa(clients), "-j", "4", "-t", strconv.Itoa(txns))
	}
	pgbenchRun(t, h, "-M", "prepared", "-c", "20", "-j", "4", "-t", "40") // tpcb-like: 7 statements a transaction
}
