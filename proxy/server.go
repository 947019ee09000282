package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
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
func dialServer(ctx context.Context, cfg *Config, db, user, password string) (*serverConn, error) {
	pcfg, err := serverConfig(cfg, db, user, password)
	if err != nil {
		return nil, err
	}
	pcfg.RuntimeParams = map[string]string{"application_name": "sepgadm"}
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
		created: now, lastUsed: now, state: "idle",
	}, nil
}

// ErrCredentialWouldBeLogged is returned for a server session that could write the
// switch call's bind parameters, the tagging credential among them, to the server log.
var ErrCredentialWouldBeLogged = errors.New("the server could log the tagging credential")

// checkNoParamLogging makes sure the server never logs the bind parameters of this
// session's statements, whatever log_statement, log_min_duration_statement or the
// sampling settings say: the switch call carries the credential as one. Only a
// superuser can change these two settings, so a role-level 0 (sepgadm install
// --proxy-role) holds for every session of the role.
func checkNoParamLogging(ctx context.Context, pc *pgconn.PgConn, user string) error {
	res := pc.ExecParams(ctx, "SELECT current_setting('log_parameter_max_length'), current_setting('log_parameter_max_length_on_error')", nil, nil, nil, nil).Read()
	if res.Err != nil {
		return fmt.Errorf("read the server's logging settings: %w", res.Err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 2 {
		return errors.New("read the server's logging settings: unexpected answer")
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

// serverError is an ErrorResponse from the server during a call the proxy made itself.
type serverError struct{ *pgproto3.ErrorResponse }

func (e serverError) Error() string {
	return e.Severity + ": " + e.Message + " (SQLSTATE " + e.Code + ")"
}

// command runs sql, a simple Query whose statements return no rows (SET, DISCARD), and
// checks the exact answer: a CommandComplete per statement, then ReadyForQuery 'I'.
func (s *serverConn) command(ctx context.Context, sql string) error {
	msg, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	_, err := s.exchange(ctx, msg, strings.Repeat("C", max(1, len(scanSQL(sql))))+"Z")
	return err
}

// queryValue runs a one-row, one-column query and returns its value (nil: NULL).
func (s *serverConn) queryValue(ctx context.Context, sql string) (*string, error) {
	msg, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	return s.exchange(ctx, msg, "TDCZ")
}

// appendCall appends SELECT fn($1, $2) with text parameters over the extended protocol,
// so the arguments never appear in SQL text (nor, therefore, in the statement log). Its
// answer is callAnswer.
func appendCall(buf []byte, fn string, a string, b *string) []byte {
	buf, _ = (&pgproto3.Parse{Query: "SELECT " + fn + "($1, $2)", ParameterOIDs: []uint32{25, 25}}).Encode(buf)
	params := [][]byte{[]byte(a), nil}
	if b != nil {
		params[1] = []byte(*b)
	}
	buf, _ = (&pgproto3.Bind{Parameters: params}).Encode(buf)
	buf, _ = (&pgproto3.Execute{}).Encode(buf)
	buf, _ = (&pgproto3.Sync{}).Encode(buf)
	return buf
}

// callAnswer is the exact answer to appendCall: ParseComplete, BindComplete, one
// DataRow, CommandComplete, ReadyForQuery.
const callAnswer = "12DCZ"

// exchange sends msg and reads the answer, which must be exactly want: message types in
// order, where '*' stands for any number of RowDescription, DataRow, CommandComplete and
// EmptyQueryResponse. NoticeResponse, ParameterStatus (recorded) and
// NotificationResponse may come anywhere. Every ReadyForQuery must report 'I'. A
// server error ends the exchange as a serverError; any other departure as an error
// naming it. Either way the caller must destroy the connection. first is the first
// column of the first DataRow.
func (s *serverConn) exchange(ctx context.Context, msg []byte, want string) (first *string, err error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = s.conn.SetDeadline(dl)
		defer s.conn.SetDeadline(time.Time{})
	}
	if _, err := s.w.Write(msg); err != nil {
		return nil, fmt.Errorf("write to server: %w", err)
	}
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("write to server: %w", err)
	}
	gotRow := false
	for i := 0; i < len(want); {
		typ, body, err := s.r.Message()
		if err != nil {
			return nil, fmt.Errorf("read from server: %w", err)
		}
		switch typ {
		case 'N', 'A':
			continue
		case 'S':
			var ps pgproto3.ParameterStatus
			if ps.Decode(body) == nil {
				s.setParam(ps.Name, ps.Value)
			}
			continue
		case 'E':
			var e pgproto3.ErrorResponse
			if err := e.Decode(body); err != nil {
				return nil, fmt.Errorf("decode server error: %w", err)
			}
			return nil, serverError{&e}
		}
		if want[i] == '*' {
			if strings.IndexByte("TDCI", typ) >= 0 {
				continue
			}
			i++
		}
		if i >= len(want) || want[i] != typ {
			return nil, fmt.Errorf("unexpected server message %q in answer to the proxy's own call", typ)
		}
		switch typ {
		case 'D':
			if !gotRow {
				first, gotRow = firstColumn(body), true
			}
		case 'Z':
			if len(body) != 1 || body[0] != 'I' {
				return nil, errors.New("the proxy's own call left the session inside a transaction")
			}
		}
		i++
	}
	return first, nil
}

// firstColumn extracts column 0 of a DataRow body; nil for SQL NULL or no column.
func firstColumn(body []byte) *string {
	if len(body) < 6 || binary.BigEndian.Uint16(body) == 0 {
		return nil
	}
	n := int32(binary.BigEndian.Uint32(body[2:]))
	if n < 0 || int(n) > len(body)-6 {
		return nil
	}
	v := string(body[6 : 6+n])
	return &v
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

type poolKey struct{ db, user string }

// pool holds the server connections of one (database, user).
type pool struct {
	key  poolKey
	size int

	mu      sync.Mutex
	idle    []*serverConn
	all     map[*serverConn]struct{}
	opening int
	clock   *clock
	waiters []*waiter // oldest first
	paused  bool
	// expiry ends waits at their deadline; expiryAt is when it fires (zero: not set).
	expiry   *time.Timer
	expiryAt time.Time
}

func newPool(k poolKey, size int, clk *clock) *pool {
	return &pool{key: k, size: size, all: map[*serverConn]struct{}{}, clock: clk}
}

var errPoolTimeout = errors.New("query_wait_timeout: no server connection became free")

// acquire returns an idle connection (preferring one already labelled want) or opens a
// new one while the pool is below its size; otherwise it waits, for at most timeout in
// all (dialing included). A wait makes no timer of its own: the pool's one timer
// (expire) ends the waits that reach their deadline. w is the caller's waiter, reused
// from one wait to the next (nil: a new one).
func (p *pool) acquire(ctx context.Context, timeout time.Duration, want string, w *waiter, open func(context.Context) (*serverConn, error)) (*serverConn, error) {
	if w == nil {
		w = &waiter{}
	}
	if w.ch == nil {
		w.ch = make(chan *serverConn, 1)
	}
	var deadline time.Time // set when the pool first has nothing idle
	for {
		p.mu.Lock()
		if s := p.takeIdleLocked(want); s != nil {
			p.mu.Unlock()
			if !p.checkAlive(s) {
				continue
			}
			return s, nil
		}
		if deadline.IsZero() {
			deadline = p.clock.now().Add(timeout)
		}
		if !p.paused && len(p.all)+p.opening < p.size {
			p.opening++
			p.mu.Unlock()
			dctx, cancel := context.WithDeadline(ctx, deadline)
			s, err := open(dctx)
			cancel()
			p.mu.Lock()
			p.opening--
			if err != nil {
				p.wakeOne()
				p.mu.Unlock()
				return nil, err
			}
			s.pool = p
			s.setState("active")
			p.all[s] = struct{}{}
			p.mu.Unlock()
			return s, nil
		}
		// Wait for a connection handed over by release (nil: retry, something changed).
		w.deadline, w.expired = deadline, false
		p.waiters = append(p.waiters, w)
		p.armExpiry(deadline)
		p.mu.Unlock()
		var s *serverConn
		select {
		case s = <-w.ch:
		case <-ctx.Done():
			if p.cancelWait(w) {
				return nil, ctx.Err()
			}
			s = <-w.ch // handed over just as the wait ended: take it
		}
		if s == nil {
			if w.expired {
				return nil, errPoolTimeout
			}
			continue
		}
		// Handed over by release: it served a transaction microseconds ago and was never
		// idle, so it is not peeked (a backend that dies now is seen at the first read,
		// as one that dies during the transaction is).
		return s, nil
	}
}

// takeIdleLocked takes an idle connection, preferring one labelled want (the most
// recently used otherwise); nil if none may be taken. p.mu must be held.
func (p *pool) takeIdleLocked(want string) *serverConn {
	if p.paused || len(p.idle) == 0 {
		return nil
	}
	i := len(p.idle) - 1
	for j := len(p.idle) - 1; j >= 0; j-- {
		if l, _, _ := p.idle[j].snapshot(); l == want {
			i = j
			break
		}
	}
	s := p.idle[i]
	p.idle = append(p.idle[:i], p.idle[i+1:]...)
	s.setState("active")
	return s
}

// checkAlive peeks at a connection just taken from the idle list and closes it if its
// backend is gone.
func (p *pool) checkAlive(s *serverConn) bool {
	if s.alive() {
		return true
	}
	p.mu.Lock()
	delete(p.all, s)
	p.mu.Unlock()
	s.close()
	return false
}

// cancelWait takes w out of the queue; false if it was already handed something.
func (p *pool) cancelWait(w *waiter) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.Index(p.waiters, w)
	if i < 0 {
		return false
	}
	p.waiters = slices.Delete(p.waiters, i, i+1)
	return true
}

// waiter is a client waiting for a server connection. When acquire returns, the waiter
// is in no list and its channel is empty, so a client keeps one for all its waits.
type waiter struct {
	ch       chan *serverConn // buffered (1): a connection, or nil (retry; expired: give up)
	deadline time.Time
	expired  bool // set under p.mu before nil is sent
}

// hand gives w a connection, or nil (retry; w.expired: give up). p.mu is held.
func (w *waiter) hand(s *serverConn) {
	w.ch <- s
}

// armExpiry makes sure the pool's timer fires by deadline. p.mu must be held.
func (p *pool) armExpiry(deadline time.Time) {
	if p.expiry == nil {
		p.expiry = time.AfterFunc(time.Until(deadline), p.expire)
		p.expiryAt = deadline
		return
	}
	if p.expiryAt.IsZero() || deadline.Before(p.expiryAt) {
		p.expiry.Reset(time.Until(deadline))
		p.expiryAt = deadline
	}
}

// expire ends the waits past their deadline and sets the timer for the next one.
func (p *pool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	kept := p.waiters[:0]
	next := time.Time{}
	for _, w := range p.waiters {
		if !w.deadline.After(now) {
			w.expired = true
			w.hand(nil)
			continue
		}
		if next.IsZero() || w.deadline.Before(next) {
			next = w.deadline
		}
		kept = append(kept, w)
	}
	clear(p.waiters[len(kept):])
	p.waiters = kept
	p.expiryAt = next
	if !next.IsZero() {
		p.expiry.Reset(time.Until(next))
	}
}

// wakeOne lets one waiter retry. p.mu must be held.
func (p *pool) wakeOne() {
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w.hand(nil)
	}
}

// release returns s to the pool, or closes it when it cannot be reused. A reusable
// connection goes straight to the longest waiter, if any: one wake-up, and no client
// that arrives meanwhile can take it first.
func (p *pool) release(s *serverConn, reusable bool, lifetime time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !reusable || p.clock.now().Sub(s.created) > lifetime:
		delete(p.all, s)
		s.close()
		p.wakeOne()
	case len(p.waiters) > 0 && !p.paused:
		s.setState("active")
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w.hand(s)
	default:
		s.setState("idle")
		p.idle = append(p.idle, s)
		p.wakeOne()
	}
}

// reap closes idle connections past the idle timeout or their lifetime.
func (p *pool) reap(idleTimeout, lifetime time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.idle[:0]
	for _, s := range p.idle {
		if _, _, last := s.snapshot(); time.Since(last) > idleTimeout || time.Since(s.created) > lifetime {
			delete(p.all, s)
			s.close()
			continue
		}
		kept = append(kept, s)
	}
	p.idle = kept
}

// closeIdle closes every idle connection (shutdown, reload of the server address).
func (p *pool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.idle {
		delete(p.all, s)
		s.close()
	}
	p.idle = nil
}

func (p *pool) setPaused(v bool) {
	p.mu.Lock()
	p.paused = v
	if !v {
		for range p.waiters {
			p.wakeOne()
		}
	}
	p.mu.Unlock()
}

// afterReset forgets what the server_reset_query dropped: the proxy's prepared
// statements and the settings PostgreSQL does not report (search_path).
func (s *serverConn) afterReset() {
	clear(s.prepared)
	delete(s.params, "search_path")
	s.pkeyOK = false
}
