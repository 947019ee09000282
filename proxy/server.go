package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"golang.org/x/sys/unix"

	"github.com/sepgadm/sepgadm/proxy/wire"
)

// serverConn is one authenticated connection to PostgreSQL, taken over from pgconn
// after login so that the relay can forward raw frames.
type serverConn struct {
	conn   net.Conn
	raw    syscall.RawConn // for alive's non-blocking peek (nil if conn has no fd)
	peekOK bool            // the last peek found nothing to read
	r      *wire.Reader
	br     *bufio.Reader
	w      *bufio.Writer
	pid    uint32
	secret []byte
	params map[string]string
	pool   *pool
	// prepared holds the names of client statements prepared on this connection
	// (transaction mode renames them per query; see txn.go).
	prepared map[string]bool
	// fresh is true until a client has used the connection, and again after a reset.
	fresh bool
	// doubtful marks a connection that must not be reused (a cancel request for it
	// may still be on its way).
	doubtful atomic.Bool
	// startupKey is the client.startupKey whose startup settings the session has;
	// loginKey that of the startup packet it logged in with ("" the proxy's own), to
	// which a reset returns it.
	startupKey, loginKey string
	// pkey is settingsKey(params), made when first needed after params changed (setParam).
	pkey   string
	pkeyOK bool

	created time.Time

	// mu guards what the admin console reads while the connection is in use.
	mu sync.Mutex
	// label is the session's SELinux label as the last switch returned it ("" unknown).
	label    string
	state    string // "idle", "active", "tagging", "resetting"
	lastUsed time.Time
}

func (s *serverConn) setLabel(l string) { s.mu.Lock(); s.label = l; s.mu.Unlock() }
func (s *serverConn) setState(st string) {
	s.mu.Lock()
	s.state = st
	if st == "idle" {
		if s.pool != nil {
			s.lastUsed = s.pool.clock.now()
		} else {
			s.lastUsed = time.Now()
		}
	}
	s.mu.Unlock()
}

// snapshot returns label, state and idle time under the lock.
func (s *serverConn) snapshot() (label, state string, lastUsed time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.label, s.state, s.lastUsed
}

// dialServer logs in to PostgreSQL as user on database db.
//
// params is the startup packet's other parameters (nil: the proxy's own,
// application_name=sepgadm); startupKey names them for the pool.
func dialServer(ctx context.Context, cfg *Config, db, user, password string, params map[string]string, startupKey string) (*serverConn, error) {
	pcfg, err := serverConfig(cfg, db, user, password)
	if err != nil {
		return nil, err
	}
	pcfg.RuntimeParams = map[string]string{"application_name": "sepgadm"}
	if params != nil {
		pcfg.RuntimeParams = maps.Clone(params)
	}
	// Settings any user may turn on (in the startup packet, or for the role with ALTER
	// ROLE ... SET) that would print the switch call's plan, its arguments folded in,
	// to the server log: off, and a startup packet's parameters outrank the role's.
	for k, v := range quietSettings {
		pcfg.RuntimeParams[k] = v
	}
	pc, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL as %s on %s: %w", user, db, err)
	}
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if cfg.Tagging == TaggingOn {
		if err := checkNoParamLogging(ctx, pc, user); err != nil {
			pc.Close(ctx)
			return nil, err
		}
	}
	h, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("take over server connection: %w", err)
	}
	rio := newRaw(h.Conn)
	var rw io.ReadWriter = h.Conn
	if rio != nil {
		rw = rio
	}
	br := bufio.NewReaderSize(rw, 32<<10)
	now := time.Now()
	var raw syscall.RawConn
	if sc, ok := h.Conn.(syscall.Conn); ok {
		raw, _ = sc.SyscallConn()
	}
	return &serverConn{
		conn: h.Conn, raw: raw, br: br, r: wire.NewReader(br, cfg.MaxMessageSize), w: bufio.NewWriterSize(rw, 32<<10),
		pid: h.PID, secret: h.SecretKey, params: h.ParameterStatuses, prepared: map[string]bool{}, fresh: true,
		startupKey: startupKey, loginKey: startupKey,
		created: now, lastUsed: now, state: "idle",
	}, nil
}

// quietSettings keep the server from printing the switch call's arguments.
var quietSettings = map[string]string{"debug_print_plan": "off", "debug_print_parse": "off", "debug_print_rewritten": "off"}

// ErrCredentialWouldBeLogged is returned for a server session that could write the
// switch call's bind parameters, the tagging credential among them, to the server log.
var ErrCredentialWouldBeLogged = errors.New("the server could log the tagging credential")

// checkNoParamLogging makes sure the server never logs the bind parameters of this
// session's statements, whatever log_statement, log_min_duration_statement or the
// sampling settings say: the switch call carries the credential as one. Only a
// superuser can change these two settings, so a role-level 0 (sepgadm install
// --proxy-role) holds for every session of the role.
func checkNoParamLogging(ctx context.Context, pc *pgconn.PgConn, user string) error {
	res := pc.ExecParams(ctx, "SELECT current_setting('log_parameter_max_length'), current_setting('log_parameter_max_length_on_error'), "+
		"current_setting('debug_print_plan')::bool OR current_setting('debug_print_parse')::bool OR current_setting('debug_print_rewritten')::bool", nil, nil, nil, nil).Read()
	if res.Err != nil {
		return fmt.Errorf("read the server's logging settings: %w", res.Err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 3 {
		return errors.New("read the server's logging settings: unexpected answer")
	}
	if string(res.Rows[0][2]) != "f" {
		return fmt.Errorf("%w: a debug_print setting is on for role %q", ErrCredentialWouldBeLogged, user)
	}
	if a, b := string(res.Rows[0][0]), string(res.Rows[0][1]); a != "0" || b != "0" {
		return fmt.Errorf("%w: role %q has log_parameter_max_length = %s and log_parameter_max_length_on_error = %s; set both to 0 for the role (sepgadm install --proxy-role %s)",
			ErrCredentialWouldBeLogged, user, a, b, user)
	}
	return nil
}

// serverConfig is how the proxy reaches PostgreSQL as user on database db: the
// configured server only (no PG* fallbacks, no TLS on the Unix socket).
func serverConfig(cfg *Config, db, user, password string) (*pgconn.Config, error) {
	pcfg, err := pgconn.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("server connection settings: %w", err)
	}
	pcfg.Host, pcfg.Port = cfg.Server.Host, uint16(cfg.Server.Port)
	pcfg.Database, pcfg.User, pcfg.Password = db, user, password
	pcfg.TLSConfig, pcfg.Fallbacks = nil, nil
	pcfg.ConnectTimeout = cfg.ServerConnectTimeout.Duration
	return pcfg, nil
}

func (s *serverConn) close() { _ = s.conn.Close() }

// setParam records a ParameterStatus (or a setting the proxy replayed).
func (s *serverConn) setParam(k, v string) {
	s.params[k] = v
	s.pkeyOK = false
}

// paramsKey is settingsKey of the session's settings. Only the connection's user calls it.
func (s *serverConn) paramsKey() string {
	if !s.pkeyOK {
		s.pkey, s.pkeyOK = settingsKey(s.params), true
	}
	return s.pkey
}

// alive checks, without blocking, that an idle connection has nothing to say: a backend
// terminated while idle has sent its FATAL and closed. One read syscall per checkout.
func (s *serverConn) alive() bool {
	if s.br.Buffered() > 0 {
		return false
	}
	if s.raw == nil {
		return true
	}
	err := s.raw.Read(s.peek)
	return err == nil && s.peekOK
}

// peek is alive's read callback: data (a FATAL) or end of stream means the backend is
// gone; EAGAIN, all quiet. It never waits for readiness.
func (s *serverConn) peek(fd uintptr) bool {
	var buf [1]byte
	_, _, err := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	s.peekOK = err == unix.EAGAIN || err == unix.EWOULDBLOCK
	return true
}

// cancel asks the server to cancel whatever this connection runs.
func (s *serverConn) cancel(cfg *Config) error {
	network, addr := "tcp", net.JoinHostPort(cfg.Server.Host, strconv.Itoa(cfg.Server.Port))
	if len(cfg.Server.Host) > 0 && cfg.Server.Host[0] == '/' {
		network, addr = "unix", cfg.Server.Host+"/.s.PGSQL."+strconv.Itoa(cfg.Server.Port)
	}
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("send cancel to server: %w", err)
	}
	defer c.Close()
	msg, err := (&pgproto3.CancelRequest{ProcessID: s.pid, SecretKey: s.secret}).Encode(nil)
	if err != nil {
		return err
	}
	if _, err = c.Write(msg); err != nil {
		return fmt.Errorf("send cancel to server: %w", err)
	}
	// The postmaster closes the connection once it has signalled the backend: until
	// then the cancel could still land on whatever the backend runs next.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.Copy(io.Discard, c)
	return err
}

// afterReset forgets what the server_reset_query dropped: the proxy's prepared
// statements and the settings PostgreSQL does not report (search_path).
func (s *serverConn) afterReset() {
	clear(s.prepared)
	delete(s.params, "search_path")
	s.pkeyOK = false
	s.startupKey = s.loginKey
}
