// Command benchproxy is make bench-proxy: it races sepgadm's transaction pooling against
// PostgreSQL itself and PgBouncer (Debian's pgbouncer, transaction mode, same pool size)
// with pgbench on a throwaway cluster, and measures the proxy's memory with idle clients.
//
// Usage: benchproxy -sepgadm build/sepgadm [-seconds 15] [-clients 1,10,50,100] [-idle 10000]
//
// sepgadm runs with the test-only stand-in switch function (this host has no SELinux):
// untagged (tagging off), one context for every client (label affinity: switches only
// when a connection's label must change), and a distinct context per client (one pgbench
// process per client, told apart by application_name rules: a switch on nearly every
// transaction). It prints TPS and mean latency per point, the ratios sepgadm/PgBouncer and
// tagged/untagged, and the RSS of each pooler holding the idle clients. Each point also
// shows the pooler's CPU per transaction (user + system, and user alone), how busy the
// machine was and its context switches per transaction (/proc/stat), which tell a
// pooler's own work from what it makes the kernel and the other processes do.
//
// Next to them runs the reference pooler (package refpool): the least work any
// transaction pooler must do, on raw epoll loops that Go's netpoller never sees, with
// less user CPU per transaction than PgBouncer. It shows what a pooler's design can
// gain on the machine at hand: a pooler that does more per transaction has little hope
// of beating it. "ref" runs a loop per CPU, "ref1" one loop, as PgBouncer does; -targets
// pgb2 adds a second PgBouncer, whose ratio to the first is the spread between two equal
// poolers (an A/A control).
// benchproxy runs it as a child process of its own ("benchproxy reference ...").
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sepgadm/sepgadm/internal/pgtest"
	"github.com/sepgadm/sepgadm/trusted"
)

const poolSize = 20

type target struct {
	name, short string
	port        int
	pid         int // the pooler's process, whose CPU time per transaction is reported
	// perClient: run one pgbench per client with application_name bench-N.
	perClient bool
}

// point is one pgbench run: TPS, mean latency (ms) and the pooler's CPU per transaction
// (µs, user + system, and the user part alone).
type point struct{ tps, latency, cpu, cpuUser float64 }

type options struct {
	seconds, idle, rounds, pprof int
	byProcess                    bool
	mode                         string
	scripts, only                []string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "reference" {
		if err := serveReference(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench-proxy reference:", err)
			os.Exit(1)
		}
		return
	}
	sepgadm := flag.String("sepgadm", "build/sepgadm", "sepgadm binary")
	seconds := flag.Int("seconds", 15, "seconds per point")
	clientList := flag.String("clients", "1,10,50,100", "client counts")
	idle := flag.Int("idle", 10000, "idle clients for the memory measurement (0: skip)")
	// Debian's PgBouncer 1.18 has no protocol-level prepared statements in transaction
	// mode (1.21 does), so the race uses the extended protocol without them.
	mode := flag.String("mode", "extended", "pgbench -M mode")
	only := flag.String("targets", "", "comma-separated target names to run (default: postgres,pgbouncer,untagged,1ctx,Nctx,ref; pgb2 adds a second PgBouncer (PgBouncer against itself), ref1 the reference pooler on one loop, 1p untagged with GOMAXPROCS=1)")
	scripts := flag.String("scripts", "select-only,tpcb-like", "pgbench built-in scripts")
	rounds := flag.Int("rounds", 1, "runs per point; the median TPS is reported")
	byProcess := flag.Bool("by-process", false, "also print the machine's CPU per transaction by process (postgres, poolers, the rest)")
	pprofPort := flag.Int("pprof", 0, "serve each sepgadm's metrics and pprof on 127.0.0.1 from this port up (untagged, tagged, loop)")
	flag.Parse()
	o := options{seconds: *seconds, idle: *idle, mode: *mode, rounds: max(*rounds, 1), scripts: strings.Split(*scripts, ","), pprof: *pprofPort, byProcess: *byProcess}
	if *only != "" {
		o.only = strings.Split(*only, ",")
	}
	if err := run(*sepgadm, *clientList, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-proxy:", err)
		os.Exit(1)
	}
}

func run(sepgadm string, clientList string, o options) error {
	seconds, idle, mode := o.seconds, o.idle, o.mode
	ctx := context.Background()
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)

	var clients []int
	for _, s := range strings.Split(clientList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-clients: %w", err)
		}
		clients = append(clients, n)
	}
	c, err := pgtest.Start(ctx, pgtest.Options{Settings: map[string]string{"max_connections": "400", "shared_buffers": "256MB"}})
	if err != nil {
		return err
	}
	defer c.Stop()
	dir, err := os.MkdirTemp("", "sepgadm-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o755)
	if cred := postgresCredential(); cred != nil {
		_ = os.Chown(dir, int(cred.Uid), int(cred.Gid)) // pgbouncer writes its log and pid there
	}
	fmt.Println("bench-proxy: preparing pgbench -s 10 and the stand-in switch function")
	if out, err := exec.Command("pgbench", "-i", "-q", "-s", "10", c.DSN("postgres")).CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %w\n%s", err, out)
	}
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `CREATE FUNCTION public.bench_tag(cred text, ctx text) RETURNS text LANGUAGE plpgsql AS $$
		BEGIN
			IF cred IS DISTINCT FROM 'bench-token' THEN RAISE EXCEPTION 'sepgadm: invalid credential' USING ERRCODE = '28000'; END IF;
			PERFORM set_config('sepgadm_bench.label', coalesce(ctx, 'proxy'), false);
			RETURN coalesce(ctx, 'system_u:system_r:proxy_t:s0');
		END $$`)
	if err == nil {
		// The proxy sends the credential only on sessions that never log it.
		err = trusted.ProtectRole(ctx, conn, "postgres")
	}
	conn.Close(ctx)
	if err != nil {
		return err
	}
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("bench-token\n"), 0o600); err != nil {
		return err
	}

	// PgBouncer.
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		return err
	}
	pgbPort, pgb, err := startPgBouncer(c, dir, "pgbouncer", idle)
	if err != nil {
		return err
	}
	defer func() { _ = pgb.Process.Kill(); _ = pgb.Wait() }()

	// sepgadm: untagged and tagged (one context, or N through the same process).
	started := 0
	start := func(name, extra string, env ...string) (int, *exec.Cmd, error) {
		port := freePort()
		if o.pprof != 0 {
			extra += fmt.Sprintf("\nmetrics_listen = \"127.0.0.1:%d\"\ndebug_pprof = true\n", o.pprof+started)
			started++
		}
		var rules strings.Builder
		for i := range 128 {
			fmt.Fprintf(&rules, "[[context]]\napplication_name = \"bench-%d\"\nclient_chosen = true\ncontext = \"system_u:system_r:tenant_%d_t:s0\"\n", i, i)
		}
		cfgText := fmt.Sprintf(`pool_mode = "transaction"
tag_function = "public.bench_tag"
credential_file = %q
default_context = "system_u:system_r:bench_t:s0"
default_pool_size = %d
max_client_conn = %d
log_level = "warn"
%s
[[listen]]
address = "127.0.0.1:%d"
auth = "trust"
[server]
host = %q
port = %d
%s`, token, poolSize, idle+500, extra, port, c.SocketDir, c.Port, rules.String())
		file := filepath.Join(dir, name+".toml")
		if err := os.WriteFile(file, []byte(cfgText), 0o644); err != nil {
			return 0, nil, err
		}
		cmd := exec.Command(sepgadm, "proxy", "--config", file)
		cmd.Env = append(os.Environ(), env...)

		logf, _ := os.Create(filepath.Join(dir, name+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return 0, nil, err
		}
		return port, cmd, nil
	}
	plainPort, plain, err := start("untagged", `tagging = "off"`)
	if err != nil {
		return err
	}
	defer func() { _ = plain.Process.Kill(); _ = plain.Wait() }()
	tagPort, tagged, err := start("tagged", "")
	if err != nil {
		return err
	}
	defer func() { _ = tagged.Process.Kill(); _ = tagged.Wait() }()
	ports := []int{pgbPort, plainPort, tagPort}
	// Variants of untagged sepgadm for a same-run A/B, started only when -targets names
	// them: one P (GOMAXPROCS=1) for Go's scheduler.
	var variants []target
	for _, v := range []struct {
		short, name, cfg string
		env              []string
	}{
		{"1p", "untagged, GOMAXPROCS=1", `tagging = "off"`, []string{"GOMAXPROCS=1"}},
	} {
		if !slices.Contains(o.only, v.short) {
			continue
		}
		port, cmd, err := start(v.short, v.cfg, v.env...)
		if err != nil {
			return err
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		variants = append(variants, target{name: v.name, short: v.short, port: port, pid: cmd.Process.Pid})
		ports = append(ports, port)
	}
	// A second PgBouncer, the same in all but its port: PgBouncer against itself shows
	// the spread of a ratio between two equal poolers on this machine (an A/A control).
	if slices.Contains(o.only, "pgb2") {
		port, cmd, err := startPgBouncer(c, dir, "pgbouncer2", idle)
		if err != nil {
			return err
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		variants = append(variants, target{name: "pgbouncer again", short: "pgb2", port: port, pid: cmd.Process.Pid})
		ports = append(ports, port)
	}
	// The reference pooler: a loop per CPU (ref), one loop (ref1).
	for _, v := range []struct {
		short, name string
		loops       int
	}{{"ref", "reference pooler", runtime.NumCPU()}, {"ref1", "reference, 1 loop", 1}} {
		if o.only != nil && !slices.Contains(o.only, v.short) || o.only == nil && v.short != "ref" {
			continue
		}
		port, cmd, err := startReference(c, v.loops)
		if err != nil {
			return err
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		variants = append(variants, target{name: v.name, short: v.short, port: port, pid: cmd.Process.Pid})
		ports = append(ports, port)
	}
	for _, p := range ports {
		if err := waitPort(ctx, p); err != nil {
			return err
		}
	}

	targets := []target{
		{name: "postgres", short: "postgres", port: c.Port},
		{name: "pgbouncer", short: "pgbouncer", port: pgbPort, pid: pgb.Process.Pid},
		{name: "sepgadm untagged", short: "untagged", port: plainPort, pid: plain.Process.Pid},
		{name: "sepgadm 1 context", short: "1ctx", port: tagPort, pid: tagged.Process.Pid},
		{name: "sepgadm N contexts", short: "Nctx", port: tagPort, pid: tagged.Process.Pid, perClient: true},
	}
	var keep []target
	for _, tg := range targets {
		if o.only == nil || slices.Contains(o.only, tg.short) {
			keep = append(keep, tg)
		}
	}
	targets = append(keep, variants...)
	// Points are interleaved (every target at one client count, then the next count) and
	// repeated o.rounds times, so drift in the machine's load spreads over all targets.
	results := map[string]map[string]map[int]point{}
	allRuns := map[string]map[string]map[int][]point{} // per script, target, client count: one point per round
	for _, script := range o.scripts {
		results[script] = map[string]map[int]point{}
		runs := map[string]map[int][]point{}
		allRuns[script] = runs
		for _, tg := range targets {
			results[script][tg.name] = map[int]point{}
			runs[tg.name] = map[int][]point{}
		}
		for round := range o.rounds {
			// Each round starts one target later: PgBouncer against a second PgBouncer
			// (-targets pgb2) showed a target's place in the round moving its TPS by up
			// to 8% the same way in all five rounds (the tables grow under tpcb-like).
			order := append(slices.Clone(targets[round%len(targets):]), targets[:round%len(targets)]...)
			for _, n := range clients {
				for _, tg := range order {
					host := "127.0.0.1"
					if tg.name == "postgres" {
						host = c.SocketDir
					}
					user0, sys0 := cpuSeconds(tg.pid)
					m0 := machineCPU()
					var before map[string]float64
					if o.byProcess {
						before = cpuByCommand()
					}
					pt, err := pgbench(host, tg.port, script, mode, n, seconds, tg.perClient)
					if err != nil {
						return fmt.Errorf("%s, %s, %d clients: %w", tg.name, script, n, err)
					}
					txns := max(pt.tps*float64(seconds), 1)
					if tg.pid != 0 && pt.tps > 0 {
						user1, sys1 := cpuSeconds(tg.pid)
						pt.cpu = (user1 - user0 + sys1 - sys0) / txns * 1e6
						pt.cpuUser = (user1 - user0) / txns * 1e6
					}
					m1 := machineCPU()
					busy := 100 * (m1.busy - m0.busy) / max(m1.all-m0.all, 1)
					switches := (m1.switches - m0.switches) / txns
					runs[tg.name][n] = append(runs[tg.name][n], pt)
					fmt.Printf("  %-12s %-19s %4d clients: %9.0f tps %8.3f ms %6.1f us pooler CPU/txn (%5.1f user), machine %3.0f%% busy, %4.1f context switches/txn\n", script, tg.name, n, pt.tps, pt.latency, pt.cpu, pt.cpuUser, busy, switches)
					if o.byProcess && pt.tps > 0 {
						// pgbench exits before the second reading, so its share is in "other"
						// (with the kernel's own threads and interrupts).
						all := (m1.busy - m0.busy) / 100
						fmt.Printf("      machine CPU per transaction, us: %.1f in all", all/txns*1e6)
						after := cpuByCommand()
						other := all
						for _, k := range []string{"postgres", "pgbouncer", "sepgadm", "benchproxy"} { // benchproxy: the reference pooler, and this harness idling in pgbench's wait
							d := after[k] - before[k]
							other -= d
							fmt.Printf(", %s %.1f", k, d/txns*1e6)
						}
						fmt.Printf(", other (pgbench, kernel) %.1f\n", other/txns*1e6)
					}
				}
			}
		}
		for _, tg := range targets {
			for _, n := range clients {
				results[script][tg.name][n] = median(runs[tg.name][n])
			}
		}
	}

	fmt.Printf("\nbench-proxy: pgbench -s 10 -M %s, %d s per point, median of %d, pool size %d, transaction pooling\n", mode, seconds, o.rounds, poolSize)
	fmt.Println("(ratios: the median of the rounds' own ratios, each between two points of the same round)")
	for _, script := range o.scripts {
		fmt.Printf("\n%s: TPS (mean latency ms)\n", script)
		fmt.Printf("%8s", "clients")
		for _, tg := range targets {
			fmt.Printf(" | %22s", tg.name)
		}
		fmt.Printf(" | %14s | %14s | %14s | %14s | %14s | %14s | %14s\n", "untagged/pgbnc", "1ctx/pgbnc", "1ctx/untagged", "Nctx/untagged", "ref/pgbnc", "ref1/pgbnc", "pgbnc/pgbnc")
		for _, n := range clients {
			fmt.Printf("%8d", n)
			for _, tg := range targets {
				pt := results[script][tg.name][n]
				fmt.Printf(" | %11.0f (%7.3f)", pt.tps, pt.latency)
			}
			r := allRuns[script]
			fmt.Printf(" | %14s | %14s | %14s | %14s | %14s | %14s | %14s\n",
				roundRatio(r["sepgadm untagged"][n], r["pgbouncer"][n]),
				roundRatio(r["sepgadm 1 context"][n], r["pgbouncer"][n]),
				roundRatio(r["sepgadm 1 context"][n], r["sepgadm untagged"][n]),
				roundRatio(r["sepgadm N contexts"][n], r["sepgadm untagged"][n]),
				roundRatio(r["reference pooler"][n], r["pgbouncer"][n]),
				roundRatio(r["reference, 1 loop"][n], r["pgbouncer"][n]),
				roundRatio(r["pgbouncer again"][n], r["pgbouncer"][n]))
		}
		fmt.Printf("%s: pooler CPU per transaction, microseconds: user + system (user)\n", script)
		for _, n := range clients {
			fmt.Printf("%8d", n)
			for _, tg := range targets {
				if tg.pid != 0 {
					pt := results[script][tg.name][n]
					fmt.Printf(" | %s %.1f (%.1f)", tg.short, pt.cpu, pt.cpuUser)
				}
			}
			fmt.Println()
		}
	}
	if idle > 0 {
		fmt.Printf("\nidle clients: %d connected and logged in to each pooler\n", idle)
		for _, p := range []struct {
			name string
			port int
			pid  int
		}{{"pgbouncer", pgbPort, pgb.Process.Pid}, {"sepgadm (1 context)", tagPort, tagged.Process.Pid}} {
			before := rss(p.pid)
			conns, err := openIdle(ctx, p.port, idle)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			time.Sleep(2 * time.Second)
			after := rss(p.pid)
			fmt.Printf("  %-20s RSS %7.1f MiB with %d idle clients (%.1f MiB before; %.1f KiB per client)\n",
				p.name, after/1024, len(conns), before/1024, (after-before)/float64(len(conns)))
			for _, c := range conns {
				_ = c.Close(ctx)
			}
		}
	}
	return nil
}

// median is the point with the median TPS (the upper of the two middle ones for an even
// number of rounds: a point printed is one that ran, with its own latency and CPU).
func median(pts []point) point {
	s := slices.Clone(pts)
	slices.SortFunc(s, func(a, b point) int { return cmp.Compare(a.tps, b.tps) })
	return s[len(s)/2]
}

var (
	tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	latRE = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
)

// pgbench runs one point. With perClient, n pgbench processes of one client each, each
// with its own application_name (so its own context), and the TPS summed.
func pgbench(host string, port int, script, mode string, n, seconds int, perClient bool) (point, error) {
	procs, per := 1, n
	if perClient {
		procs, per = n, 1
	}
	jobs := min(per, 4)
	var mu sync.Mutex
	var total point
	var firstErr error
	var wg sync.WaitGroup
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"-n", "-M", mode, "-b", script, "-c", strconv.Itoa(per), "-j", strconv.Itoa(jobs),
				"-T", strconv.Itoa(seconds), "-h", host, "-p", strconv.Itoa(port), "-U", "postgres", "postgres"}
			cmd := exec.Command("pgbench", args...)
			cmd.Env = append(os.Environ(), fmt.Sprintf("PGAPPNAME=bench-%d", i))
			out, err := cmd.CombinedOutput()
			mu.Lock()
			defer mu.Unlock()
			t, l := tpsRE.FindStringSubmatch(string(out)), latRE.FindStringSubmatch(string(out))
			if err != nil || t == nil || l == nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("pgbench: %v\n%s", err, out)
				}
				return
			}
			tps, _ := strconv.ParseFloat(t[1], 64)
			lat, _ := strconv.ParseFloat(l[1], 64)
			total.tps += tps
			total.latency += lat / float64(procs)
		}()
	}
	wg.Wait()
	return total, firstErr
}

func openIdle(ctx context.Context, port, n int) ([]*pgconn.PgConn, error) {
	conns := make([]*pgconn.PgConn, 0, n)
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", port)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	var firstErr error
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := pgconn.Connect(ctx, dsn)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		for _, c := range conns {
			_ = c.Close(ctx)
		}
		return nil, fmt.Errorf("open %d idle clients: %w", n, firstErr)
	}
	return conns, nil
}

// cpuSeconds is the user and system CPU time pid has used (0 for pid 0).
func cpuSeconds(pid int) (user, sys float64) {
	if pid == 0 {
		return 0, 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	_, user, sys, _ = parseStat(b)
	return user, sys
}

// parseStat reads a /proc/PID/stat line: the command name and the user and system CPU
// seconds of all the process's threads.
func parseStat(b []byte) (comm string, user, sys float64, ok bool) {
	open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return "", 0, 0, false
	}
	// Fields after the parenthesised command: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[close+1:]))
	if len(f) < 13 {
		return "", 0, 0, false
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return string(b[open+1 : close]), u / 100, st / 100, true // USER_HZ
}

// cpuByCommand sums the CPU seconds of the processes alive now by command name. A
// process that exits between two calls (each pgbench run) is in neither.
func cpuByCommand() map[string]float64 {
	out := map[string]float64{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if comm, user, sys, ok := parseStat(b); ok {
			out[comm] += user + sys
		}
	}
	return out
}

// machineStat is what machineCPU reads from /proc/stat.
type machineStat struct {
	busy, all float64 // CPU time in USER_HZ ticks: busy is all but idle and iowait
	switches  float64 // context switches (ctxt)
}

// machineCPU is the machine's CPU time and context switches so far, from /proc/stat.
func machineCPU() machineStat {
	var m machineStat
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return m
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "ctxt "); ok {
			m.switches, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			continue
		}
		rest, ok := strings.CutPrefix(line, "cpu ")
		if !ok {
			continue
		}
		for i, f := range strings.Fields(rest) {
			v, _ := strconv.ParseFloat(f, 64)
			if i >= 8 { // guest time is already in user time
				break
			}
			m.all += v
			if i != 3 && i != 4 {
				m.busy += v
			}
		}
	}
	return m
}

// rss is a process's resident set in KiB (0 when it cannot be read).
func rss(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmRSS:") {
			v, _ := strconv.ParseFloat(strings.Fields(sc.Text())[1], 64)
			return v
		}
	}
	return 0
}

func waitPort(ctx context.Context, port int) error {
	for range 100 {
		if c, err := netDial(port); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on port %d", port)
}

// roundRatio is the median over rounds of a's TPS over b's in the same round (the mean
// of the two middle ones for an even number of rounds): points of one round ran minutes
// apart at most, so the machine's drift over a run cancels out of each ratio. It is "-"
// when either side was not measured in this run (its target was left out with -targets),
// so a missing peer never reads as a 0.00x result.
func roundRatio(a, b []point) string {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if a[i].tps > 0 && b[i].tps > 0 {
			rs = append(rs, a[i].tps/b[i].tps)
		}
	}
	if len(rs) == 0 {
		return "-"
	}
	slices.Sort(rs)
	m := rs[len(rs)/2]
	if len(rs)%2 == 0 {
		m = (rs[len(rs)/2-1] + m) / 2
	}
	return fmt.Sprintf("%.2fx", m)
}

// startPgBouncer starts Debian's PgBouncer in transaction mode in front of c, with the
// pool size sepgadm gets; its ini, log and pid file are named after name, in dir.
func startPgBouncer(c *pgtest.Cluster, dir, name string, idle int) (int, *exec.Cmd, error) {
	port := freePort()
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%d
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = %d
logfile = %s
pidfile = %s
`, c.SocketDir, c.Port, port, filepath.Join(dir, "users.txt"), poolSize, idle+500, filepath.Join(dir, name+".log"), filepath.Join(dir, name+".pid"))
	file := filepath.Join(dir, name+".ini")
	if err := os.WriteFile(file, []byte(ini), 0o644); err != nil {
		return 0, nil, err
	}
	cmd := exec.Command("pgbouncer", file)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: postgresCredential()}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start pgbouncer (apt-get install pgbouncer): %w", err)
	}
	return port, cmd, nil
}
