package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultBinDir is where Debian's postgresql-15 package puts the server binaries.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// Superuser is the bootstrap superuser of every throwaway cluster.
const Superuser = "postgres"

// Options says how to start a cluster.
type Options struct {
	// BinDir holds initdb and postgres; empty means $SEPGADM_PG_BIN, else DefaultBinDir.
	BinDir string
	// Sepgsql preloads the sepgsql module (shared_preload_libraries = 'sepgsql').
	// On a host without SELinux it loads but registers no label provider.
	Sepgsql bool
	// Settings are extra server settings, passed as -c NAME=VALUE.
	Settings map[string]string
	// StartTimeout bounds initdb plus start-up; zero means 60 s.
	StartTimeout time.Duration
}

// Cluster is a running throwaway PostgreSQL cluster.
type Cluster struct {
	// Dir holds the data directory, the socket directory and the server log.
	Dir string
	// SocketDir is the Unix-socket directory (the cluster's "host" for libpq).
	SocketDir string
	// Port is the TCP port on 127.0.0.1, also the socket's port number.
	Port int
	// LogFile is the server's stderr log.
	LogFile string

	proc *exec.Cmd
	done chan struct{}
}

// RequireAll reports whether CI demands that every tier runs (SEPGADM_REQUIRE_ALL=1):
// then a cluster that cannot start fails the test instead of skipping it.
func RequireAll() bool { return os.Getenv("SEPGADM_REQUIRE_ALL") == "1" }

// Start initialises a new cluster in a temporary directory and starts it. When the
// caller is root, initdb and postgres run as the "postgres" OS user (initdb refuses root).
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin := opts.BinDir
	if bin == "" {
		bin = os.Getenv("SEPGADM_PG_BIN")
	}
	if bin == "" {
		bin = DefaultBinDir
	}
	for _, name := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return nil, fmt.Errorf("find PostgreSQL 15 server binaries (apt-get install postgresql-15): %w", err)
		}
	}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sepgadm-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("make cluster directory: %w", err)
	}
	c := &Cluster{Dir: dir, SocketDir: filepath.Join(dir, "sock"), LogFile: filepath.Join(dir, "server.log")}
	fail := func(err error) (*Cluster, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(fmt.Errorf("make cluster directory: %w", err))
	}
	if err := os.Mkdir(c.SocketDir, 0o755); err != nil {
		return fail(fmt.Errorf("make socket directory: %w", err))
	}
	if cred != nil {
		for _, p := range []string{dir, c.SocketDir} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return fail(fmt.Errorf("hand %s to the postgres user: %w", p, err))
			}
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", Superuser, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w\n%s", err, lastLines(string(out), 20)))
	}

	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	c.Port = port
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-k", c.SocketDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "log_line_prefix=%m [%p] %q%u@%d ",
	}
	if opts.Sepgsql {
		args = append(args, "-c", "shared_preload_libraries=sepgsql")
	}
	for k, v := range opts.Settings {
		args = append(args, "-c", k+"="+v)
	}
	logf, err := os.OpenFile(c.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fail(fmt.Errorf("open server log: %w", err))
	}
	defer logf.Close()
	// Not CommandContext: the server must outlive the start-up context.
	proc := exec.Command(filepath.Join(bin, "postgres"), args...)
	proc.Stdout, proc.Stderr = logf, logf
	proc.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := proc.Start(); err != nil {
		return fail(fmt.Errorf("start postgres: %w", err))
	}
	c.proc = proc
	c.done = make(chan struct{})
	go func() { _ = proc.Wait(); close(c.done) }()

	if err := c.waitReady(ctx); err != nil {
		log, _ := os.ReadFile(c.LogFile)
		_ = c.Stop()
		return nil, fmt.Errorf("start postgres: %w\nserver log:\n%s", err, lastLines(string(log), 20))
	}
	return c, nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := pgconn.Connect(ctx, c.DSN("postgres"))
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-c.done:
			return errors.New("the server exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last error: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// Stop shuts the server down (fast shutdown, then kill after 10 s) and removes its files.
func (c *Cluster) Stop() error {
	if c.proc != nil && c.proc.Process != nil {
		_ = c.proc.Process.Signal(syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.proc.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		return fmt.Errorf("remove cluster directory: %w", err)
	}
	return nil
}

// DSN is a keyword/value connection string for database db over the Unix socket.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", quote(c.SocketDir), c.Port, Superuser, quote(db))
}

// TCPDSN is like DSN but over TCP on 127.0.0.1.
func (c *Cluster) TCPDSN(db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", c.Port, Superuser, quote(db))
}

// quote makes v a single-quoted keyword/value connection-string value.
func quote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// Env is the PG* environment that points libpq clients (psql, pgbench) at the cluster.
func (c *Cluster) Env(db string) []string {
	return []string{"PGHOST=" + c.SocketDir, "PGPORT=" + strconv.Itoa(c.Port), "PGUSER=" + Superuser, "PGDATABASE=" + db}
}

// Connect opens a pgx connection to database db over the Unix socket.
func (c *Cluster) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return nil, fmt.Errorf("connect to test cluster database %s: %w", db, err)
	}
	return conn, nil
}

// CreateDatabase makes a new, empty database named name.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// serverCredential is the identity initdb and postgres run as: the postgres OS user
// when the caller is root, else the caller (nil).
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as the postgres OS user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user id %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres group id %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free TCP port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Shared is one cluster shared by all tests of a package run, started on first use.
// Declare one in a _test.go file and wire it to TestMain:
//
//	var pg = pgtest.NewShared(pgtest.Options{})
//	func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }
type Shared struct {
	opts    Options
	once    sync.Once
	cluster *Cluster
	err     error
}

// NewShared returns a Shared cluster that will start with opts.
func NewShared(opts Options) *Shared { return &Shared{opts: opts} }

// Run runs the tests and stops the cluster afterwards if one was started.
func (s *Shared) Run(m *testing.M) int {
	code := m.Run()
	if s.cluster != nil {
		if err := s.cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}
	return code
}

// Get returns the shared cluster, starting it on first use. When it cannot start the
// test fails under SEPGADM_REQUIRE_ALL=1 and is skipped otherwise.
func (s *Shared) Get(t testing.TB) *Cluster {
	t.Helper()
	s.once.Do(func() {
		s.cluster, s.err = Start(context.Background(), s.opts)
	})
	if s.err != nil {
		if RequireAll() {
			t.Fatalf("PostgreSQL test tier required (SEPGADM_REQUIRE_ALL=1) but the cluster did not start: %v", s.err)
		}
		t.Skipf("PostgreSQL test tier unavailable (set SEPGADM_REQUIRE_ALL=1 to make this a failure): %v", s.err)
	}
	return s.cluster
}

// ServerUser is the identity the server runs as: the postgres OS user when the caller
// is root, else nil (the caller). Tests give it to client programs that must write
// where the server reads (pg_regress's output directory).
func ServerUser() (*syscall.Credential, error) { return serverCredential() }
