package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sepgadm/sepgadm/proxy/wire"
)

// relay is one client's conversation with the server, in session and in transaction
// mode alike. The client's goroutine reads the client and writes the server; a reader
// goroutine, one per attached server connection, reads the server and writes the
// client. A wire.Tracker follows every message both ways, so the relay knows exactly
// when everything sent has been answered:
//
//   - in transaction mode the server connection goes back to the pool only when the
//     tracker is idle (ReadyForQuery 'I', nothing outstanding, no unfinished batch or
//     COPY) and nobody is still writing to it or cancelling on it;
//   - any message the tracker did not expect destroys the server connection and ends
//     the client with an error;
//   - a server connection the client leaves in any other state is destroyed.
type relay struct {
	c   *client
	txn bool

	mu sync.Mutex
	s  *serverConn // attached server connection, nil when none
	// trk follows s's conversation; reset at every attachment.
	trk wire.Tracker
	// holds counts the client's goroutine writing to s and cancel requests in flight
	// for it: while any is held, s may not pass to another client. parked says the
	// reader found s idle while a hold was on and left the release to whoever drops
	// the last hold.
	holds  int
	parked bool
	done   chan struct{} // closed when s's reader goroutine has returned
	mid    atomic.Bool   // the reader stopped inside a frame
	failed bool          // the server side failed: the client is being ended

	unflushed int // messages written to s but not yet flushed (each holds s)
	// idleKind says which idle timeout the client's read deadline stands for.
	idleKind    error
	deadlineSet bool
	// queryDeadline: s has a read deadline for query_timeout.
	queryDeadline bool

	// Transaction mode: the client's named statements, the server-side names parsed in
	// the current batch (forgotten if the batch fails), and whether a batch answered
	// by the proxy itself awaits its Sync.
	stmts       map[string]clientStmt
	batchParses []string
	batchFailed bool // an ErrorResponse came since the last ReadyForQuery
	local       bool
	// clean holds query texts that passed inspect under configuration cleanSt, and
	// needed nothing of it; discardNext says the message inspect just passed may drop
	// the session's prepared statements or settings.
	clean       map[string]struct{}
	cleanSt     *state
	discardNext bool
}

var (
	errTooManyStatements = errors.New("max_prepared_statements reached")
	errTerminate         = errors.New("client sent Terminate")
	errForbidden         = errors.New("client statement calls the switch function")
)

// run serves the client until it leaves or a side fails. In session mode s is the
// client's server connection for the whole session and run returns it with whether it
// ended idle and clean; in transaction mode s is nil and connections are checked out
// per transaction.
func (rl *relay) run(ctx context.Context, s *serverConn) (*serverConn, bool) {
	if s != nil {
		rl.mu.Lock()
		rl.attach(s)
		rl.mu.Unlock()
	}
	err := rl.clientLoop(ctx)
	return rl.finish(err)
}

// clientLoop reads client messages and forwards them until the client leaves.
func (rl *relay) clientLoop(ctx context.Context) error {
	c, p := rl.c, rl.c.p
	var in tally
	defer p.metrics.addIn(&in)
	for {
		rl.mu.Lock()
		rl.setIdleDeadline()
		rl.mu.Unlock()
		typ, n, err := c.r.Header()
		if err != nil {
			return rl.timedOut(err)
		}
		in.bytes += int64(n + 5)
		if typ == 'X' {
			return errTerminate
		}
		var body []byte
		if typ != 'd' {
			if body, err = c.r.Body(n); err != nil {
				return err
			}
		}
		if q := wire.QueryBytes(typ, body); q != nil {
			if body, err = rl.inspect(typ, body, string(q)); err != nil {
				return err
			}
		}
		s, local, err := rl.target(ctx, typ, body)
		if err != nil {
			return err
		}
		if local != nil {
			if err := c.send(local...); err != nil {
				return err
			}
			continue
		}
		if s == nil {
			// Dropped: nothing to send it to, and nothing it asks for. A CopyData's
			// body has not been read yet: skip it, or the next header would be read
			// from inside the client's data.
			if typ == 'd' {
				if err := c.r.Skip(n); err != nil {
					return err
				}
			}
			continue
		}
		if err := rl.forward(s, typ, n, body); err != nil {
			return err
		}
	}
}

// inspect refuses what a client may never send and, in transaction mode, what cannot
// work there. A refused simple Query is replaced by one that raises the error on the
// server, so the client's transaction state stays exact.
func (rl *relay) inspect(typ byte, body []byte, sql string) ([]byte, error) {
	c, p := rl.c, rl.c.p
	rl.discardNext = false
	if rl.knownClean(sql) {
		return body, nil
	}
	if p.forbidden(sql) {
		p.metrics.refusedCalls.Inc()
		p.log.Warn("client statement calls the switch function; session closed", "session", c.id, "client", c.addr, "user", c.user)
		c.fatal("42501", "sepgadm: statements that call the switch function are refused")
		return nil, errForbidden
	}
	if !rl.txn {
		return body, nil
	}
	sts := scanSQL(sql)
	what := sessionOnlyIn(sts)
	if what == "" {
		rl.discardNext = discardsIn(sts)
		if typ == 'Q' && containsFold(sql, "search_path") && len(sts) == 1 {
			if m := setSearchPathRE.FindStringSubmatch(sql); m != nil {
				c.setDesired("search_path", m[1])
			}
		}
		if !rl.discardNext && !containsFold(sql, "search_path") && len(rl.clean) < maxCleanQueries && len(sql) <= maxCleanQueryLen {
			rl.clean[sql] = struct{}{}
		}
		return body, nil
	}
	msg := "sepgadm: " + what + " cannot work in transaction pooling mode"
	if typ == 'Q' {
		return appendCString(nil, "DO $sepgadm$ BEGIN RAISE EXCEPTION '"+msg+"' USING ERRCODE = '0A000'; END $sepgadm$"), nil
	}
	c.fatal("0A000", msg)
	return nil, errors.New(msg)
}

// A client's set of clean query texts stays small: a few dozen statements of modest size.
const (
	maxCleanQueries  = 64
	maxCleanQueryLen = 4096
)

// knownClean reports whether sql passed inspect before, under the configuration in
// force (a reload may rename the switch function): clients send the same few
// statements again and again, and the lexer need not read them every time.
func (rl *relay) knownClean(sql string) bool {
	if st := rl.c.p.state(); st != rl.cleanSt {
		clear(rl.clean)
		rl.cleanSt = st
		return false
	}
	_, ok := rl.clean[sql]
	return ok
}

// target is where a client message goes: the attached server connection (checked out
// first in transaction mode), or nowhere with the proxy's own answer (local), or
// nowhere at all (s and local nil).
func (rl *relay) target(ctx context.Context, typ byte, body []byte) (s *serverConn, local []pgproto3.BackendMessage, err error) {
	rl.mu.Lock()
	if rl.failed {
		rl.mu.Unlock()
		return nil, nil, errors.New("server connection lost")
	}
	if rl.s != nil {
		s = rl.s
		rl.holds++ // released by forward
		rl.mu.Unlock()
		return s, nil, nil
	}
	rl.mu.Unlock()
	if !rl.txn {
		return nil, nil, errors.New("no server connection")
	}
	if local, ok := rl.answerLocally(typ, body); ok {
		return nil, local, nil
	}
	switch typ {
	case 'd', 'c', 'f', 'H':
		// Nothing outstanding: a Flush asks for nothing, and stray COPY messages are
		// what a server would drop.
		return nil, nil, nil
	}
	rl.local = false
	s, err = rl.c.p.checkout(ctx, rl.c)
	if err != nil {
		rl.c.fatalLogin(err)
		return nil, nil, err
	}
	rl.mu.Lock()
	rl.attach(s)
	rl.holds++
	rl.mu.Unlock()
	return s, nil, nil
}

// attach makes s the client's server connection and starts its reader. rl.mu is held.
func (rl *relay) attach(s *serverConn) {
	rl.s = s
	rl.trk.Reset()
	rl.holds, rl.parked = 0, false
	rl.batchParses, rl.batchFailed = rl.batchParses[:0], false
	rl.c.setServer(s)
	rl.startReader(s)
}

func (rl *relay) startReader(s *serverConn) {
	rl.done = make(chan struct{})
	go rl.serverLoop(s, rl.done)
}

// detach takes s off the client. rl.mu is held.
func (rl *relay) detach() {
	rl.s = nil
	rl.c.setServer(nil)
}

// forward sends one client message to s. A hold on s was taken by target; it is dropped
// once the message has left the proxy (flushed), not before, or s could pass to
// another client with the message still in its buffer.
func (rl *relay) forward(s *serverConn, typ byte, n int, body []byte) error {
	c := rl.c
	rl.mu.Lock()
	out, err := rl.record(s, typ, body)
	rl.mu.Unlock()
	if err == nil {
		switch {
		case out != nil:
			_, err = s.w.Write(out)
		case typ == 'd':
			err = c.r.CopyBody(s.w, typ, n)
		default:
			err = writeFrame(s, typ, body)
		}
	}
	rl.unflushed++
	if err == nil && !c.r.HasMessage() {
		err = s.w.Flush()
		if err == nil {
			rl.armQueryTimeout(s)
			rl.dropHolds(rl.unflushed)
			rl.unflushed = 0
		}
	}
	switch {
	case errors.Is(err, errTooManyStatements):
		c.fatal("54000", fmt.Sprintf("sepgadm: too many prepared statements (max_prepared_statements = %d)", c.p.state().cfg.MaxPreparedStatements))
	case errors.Is(err, wire.ErrUnexpected):
		c.p.log.Warn("client broke the protocol; server connection destroyed", "session", c.id, "error", err)
		c.fatal("08P01", "sepgadm: protocol violation: "+err.Error())
	}
	return err
}

func writeFrame(s *serverConn, typ byte, body []byte) error {
	if err := frameHeader(s.w, typ, len(body)); err != nil {
		return err
	}
	_, err := s.w.Write(body)
	return err
}

// armQueryTimeout gives the server query_timeout to answer what was just sent; the
// reader disarms it once nothing is outstanding.
func (rl *relay) armQueryTimeout(s *serverConn) {
	qt := rl.c.p.state().cfg.QueryTimeout.Duration
	if qt == 0 {
		return
	}
	rl.mu.Lock()
	if rl.s == s && rl.trk.Outstanding() > 0 {
		_ = s.conn.SetReadDeadline(time.Now().Add(qt))
		rl.queryDeadline = true
	}
	rl.mu.Unlock()
}

// dropHolds drops n holds on the attached connection; the last one finishes a release
// the reader left parked (or restarts the reader if more is outstanding).
func (rl *relay) dropHolds(n int) {
	rl.mu.Lock()
	rl.holds -= n
	if rl.holds > 0 || !rl.parked || rl.s == nil {
		rl.mu.Unlock()
		return
	}
	rl.parked = false
	s := rl.s
	if rl.trk.Idle() {
		rl.detach()
		rl.mu.Unlock()
		rl.c.p.releaseTxn(s)
		return
	}
	rl.startReader(s)
	rl.mu.Unlock()
}

// record tells the tracker about a client message and, in transaction mode, renames
// the client's prepared statements to their server-side names, re-preparing them where
// this connection lacks them. It returns the bytes to send, or nil to send the message
// as it came. rl.mu is held.
func (rl *relay) record(s *serverConn, typ byte, body []byte) ([]byte, error) {
	if !rl.txn || rl.trk.InCopyIn() {
		return nil, rl.trk.Frontend(typ)
	}
	switch typ {
	case 'P':
		return rl.parse(s, body)
	case 'B':
		return rl.bind(s, body)
	case 'D', 'C':
		if len(body) >= 2 && body[0] == 'S' {
			return rl.statementRef(s, typ, body)
		}
	case 'Q':
		if rl.discardNext {
			// The client may drop every prepared statement or setting: forget them.
			s.afterReset()
			rl.discardNext = false
		}
	}
	return nil, rl.trk.Frontend(typ)
}

// parse renames a named Parse to its server-side name, closing whatever this
// connection holds under that name first, so that nothing is assumed and the client
// gets its ParseComplete in order. rl.mu is held.
func (rl *relay) parse(s *serverConn, body []byte) ([]byte, error) {
	name, rest, ok := cstring(body)
	if !ok {
		return nil, fmt.Errorf("%w: malformed Parse", wire.ErrUnexpected)
	}
	if name == "" {
		return nil, rl.trk.Frontend('P')
	}
	if err := checkClientName(name); err != nil {
		return nil, err
	}
	if _, known := rl.stmts[name]; !known && len(rl.stmts) >= rl.c.p.state().cfg.MaxPreparedStatements {
		return nil, errTooManyStatements
	}
	st := rl.recordParse(name, rest)
	out, err := rl.inject(nil, 'C', appendCString([]byte{'S'}, st.server))
	if err != nil {
		return nil, err
	}
	if err := rl.trk.Frontend('P'); err != nil {
		return nil, err
	}
	s.prepared[st.server] = true
	rl.batchParses = append(rl.batchParses, st.server)
	return wire.AppendMessage(out, 'P', st.body), nil
}

// bind renames the statement a Bind names, preparing it here first if needed.
func (rl *relay) bind(s *serverConn, body []byte) ([]byte, error) {
	portal, rest, ok := cstring(body)
	name, tail, ok2 := cstring(rest)
	if !ok || !ok2 {
		return nil, fmt.Errorf("%w: malformed Bind", wire.ErrUnexpected)
	}
	out, srv, err := rl.ensure(nil, s, name)
	if err != nil {
		return nil, err
	}
	if err := rl.trk.Frontend('B'); err != nil {
		return nil, err
	}
	b := append(appendCString(appendCString(make([]byte, 0, len(body)+32), portal), srv), tail...)
	return wire.AppendMessage(out, 'B', b), nil
}

// statementRef renames the statement a Describe or Close names; Close forgets it.
func (rl *relay) statementRef(s *serverConn, typ byte, body []byte) ([]byte, error) {
	name, _, ok := cstring(body[1:])
	if !ok {
		return nil, fmt.Errorf("%w: malformed %q", wire.ErrUnexpected, typ)
	}
	if err := checkClientName(name); err != nil {
		return nil, err
	}
	if typ == 'C' {
		st, known := rl.stmts[name]
		if !known {
			return nil, rl.trk.Frontend(typ) // the server answers CloseComplete
		}
		delete(rl.stmts, name)
		delete(s.prepared, st.server)
		if err := rl.trk.Frontend(typ); err != nil {
			return nil, err
		}
		return wire.AppendMessage(nil, 'C', appendCString([]byte{'S'}, st.server)), nil
	}
	out, srv, err := rl.ensure(nil, s, name)
	if err != nil {
		return nil, err
	}
	if err := rl.trk.Frontend(typ); err != nil {
		return nil, err
	}
	return wire.AppendMessage(out, 'D', appendCString([]byte{'S'}, srv)), nil
}

// ensure returns the server-side name of the client's statement name, preparing it
// on s first (into out) if s lacks it.
func (rl *relay) ensure(out []byte, s *serverConn, name string) ([]byte, string, error) {
	if name == "" {
		return out, "", nil
	}
	if err := checkClientName(name); err != nil {
		return nil, "", err
	}
	st, ok := rl.stmts[name]
	if !ok {
		return out, name, nil // unknown to the proxy: the server reports it missing
	}
	if s.prepared[st.server] {
		return out, st.server, nil
	}
	var err error
	if out, err = rl.inject(out, 'C', appendCString([]byte{'S'}, st.server)); err != nil {
		return nil, "", err
	}
	if out, err = rl.inject(out, 'P', st.body); err != nil {
		return nil, "", err
	}
	s.prepared[st.server] = true
	rl.batchParses = append(rl.batchParses, st.server)
	return out, st.server, nil
}

// inject appends a message the proxy adds to the client's stream; its answer is dropped.
func (rl *relay) inject(out []byte, typ byte, body []byte) ([]byte, error) {
	if err := rl.trk.Inject(typ); err != nil {
		return nil, err
	}
	return wire.AppendMessage(out, typ, body), nil
}

// checkClientName refuses client statement names in the proxy's own namespace.
func checkClientName(name string) error {
	if len(name) >= len(stmtPrefix) && name[:len(stmtPrefix)] == stmtPrefix {
		return fmt.Errorf("%w: statement name %q is reserved for sepgadm", wire.ErrUnexpected, name)
	}
	return nil
}

// serverLoop forwards s's messages to the client until s is released (transaction
// mode), fails, or is taken away by the client's goroutine (rl.s no longer s).
func (rl *relay) serverLoop(s *serverConn, done chan struct{}) {
	defer close(done)
	var out tally
	defer rl.c.p.metrics.addOut(&out)
	for {
		typ, n, err := s.r.Header()
		if err != nil {
			rl.serverFailed(s, err, false)
			return
		}
		rl.mid.Store(true)
		out.bytes += int64(n + 5)
		var body []byte
		stream := typ == 'D' || typ == 'd' // rows and COPY data go through unbuffered
		if !stream {
			if body, err = s.r.Body(n); err != nil {
				rl.serverFailed(s, err, false)
				return
			}
		}
		forward, mine, err := rl.track(s, typ, body, &out)
		switch {
		case !mine:
			return // the client's goroutine took s away
		case err != nil:
			rl.serverFailed(s, err, true)
			return
		}
		if err := rl.toClient(s, typ, n, body, forward, stream); err != nil {
			rl.clientFailed(s)
			return
		}
		rl.mid.Store(false)
		if typ == 'Z' && rl.afterReady(s) {
			return
		}
	}
}

// track tells the tracker about a server message and keeps what depends on it: the
// session's reported settings, the prepared statements a failed batch may have left
// undone, query_timeout. mine is false when s is no longer the client's.
func (rl *relay) track(s *serverConn, typ byte, body []byte, out *tally) (forward, mine bool, err error) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.s != s {
		return false, false, nil
	}
	if forward, err = rl.trk.Backend(typ, body); err != nil {
		return false, true, err
	}
	switch typ {
	case 'S':
		var ps pgproto3.ParameterStatus
		if ps.Decode(body) == nil {
			s.setParam(ps.Name, ps.Value)
			rl.c.setDesired(ps.Name, ps.Value)
		}
	case 'E', 'Z':
		// A failed batch may have left any of its Parses undone, those sent after the
		// error too (the server skipped them): forget them all at its ReadyForQuery.
		if typ == 'E' {
			rl.batchFailed = true
		}
		if rl.batchFailed {
			for _, name := range rl.batchParses {
				delete(s.prepared, name)
			}
			rl.batchParses = rl.batchParses[:0]
		}
		if typ == 'Z' {
			rl.batchParses, rl.batchFailed = rl.batchParses[:0], false
			out.queries++
		}
	}
	if rl.queryDeadline && rl.trk.Outstanding() == 0 {
		_ = s.conn.SetReadDeadline(time.Time{})
		rl.queryDeadline = false
	}
	return forward, true, nil
}

// toClient forwards (or drops) one server message whose header has been read; body is
// nil for a streamed message.
func (rl *relay) toClient(s *serverConn, typ byte, n int, body []byte, forward, stream bool) error {
	c := rl.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	switch {
	case !forward && stream:
		err = s.r.CopyBody(discard{}, typ, n)
	case !forward:
	case stream:
		err = s.r.CopyBody(c.w, typ, n)
	default:
		if err = frameHeader(c.w, typ, len(body)); err == nil {
			_, err = c.w.Write(body)
		}
	}
	if err == nil && (typ == 'Z' || s.r.Buffered() == 0) {
		err = c.w.Flush()
	}
	return err
}

// afterReady runs after a ReadyForQuery reached the client: the idle deadlines follow
// the new state and, in transaction mode, an idle connection goes back to the pool (or
// to whoever drops the last hold on it). It reports whether the reader is done.
func (rl *relay) afterReady(s *serverConn) bool {
	rl.mu.Lock()
	rl.setIdleDeadline()
	if !rl.txn || rl.s != s || !rl.trk.Idle() {
		rl.mu.Unlock()
		return false
	}
	if rl.holds > 0 {
		rl.parked = true // the last hold releases s
		rl.mu.Unlock()
		return true
	}
	rl.detach()
	rl.mu.Unlock()
	rl.c.p.releaseTxn(s)
	return true
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// serverFailed handles a read from s that failed or a message the tracker refused:
// s is destroyed and the client ended, unless the client's goroutine has already
// taken s away (then the failure is its deadline, and it decides).
func (rl *relay) serverFailed(s *serverConn, err error, violation bool) {
	c := rl.c
	rl.mu.Lock()
	if rl.s != s {
		rl.mu.Unlock()
		return
	}
	rl.detach()
	rl.failed = true
	rl.mu.Unlock()
	c.p.discardServer(s)
	switch {
	case violation:
		c.p.log.Warn("server answer out of protocol; connection destroyed", "session", c.id, "backend_pid", s.pid, "error", err)
		c.fatal("08P01", "sepgadm: the server's answer broke the protocol; the connection was closed")
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.p.log.Warn("query_timeout: the server did not answer in time; connection closed", "session", c.id, "backend_pid", s.pid)
		c.fatal("57014", "sepgadm: canceling statement due to query_timeout")
	default:
		c.p.log.Info("server connection ended", "session", c.id, "backend_pid", s.pid, "error", err)
		c.fatal("08006", "sepgadm: server connection lost")
	}
	_ = c.conn.Close()
}

// clientFailed handles a failed write to the client: s cannot go on either.
func (rl *relay) clientFailed(s *serverConn) {
	rl.mu.Lock()
	mine := rl.s == s
	if mine {
		rl.detach()
		rl.failed = true
	}
	rl.mu.Unlock()
	if mine {
		rl.c.p.discardServer(s)
	}
	_ = rl.c.conn.Close()
}

// finish ends the relay after the client's goroutine stopped with err: it stops the
// reader and says whether the server connection (session mode) can be reset and
// reused; in transaction mode an attached connection is destroyed.
func (rl *relay) finish(err error) (s *serverConn, reusable bool) {
	rl.mu.Lock()
	s = rl.s
	done := rl.done
	cancelling := rl.holds > 0 // a cancel request still in flight for s
	if s != nil {
		rl.detach()
	}
	rl.mu.Unlock()
	if s == nil {
		return nil, false
	}
	// Stop the reader: it finds s taken away at its next message, or its read ends now;
	// a write to a client that stopped reading ends now too.
	_ = s.conn.SetReadDeadline(time.Now())
	_ = rl.c.conn.SetWriteDeadline(time.Now())
	if done != nil {
		<-done
	}
	_ = s.conn.SetReadDeadline(time.Time{})
	rl.mu.Lock()
	idle := rl.trk.Idle()
	rl.mu.Unlock()
	reusable = !rl.txn && errors.Is(err, errTerminate) && idle && !rl.mid.Load() &&
		s.br.Buffered() == 0 && rl.unflushed == 0 && !rl.c.killed.Load() && !cancelling
	return s, reusable
}

// frameHeader writes the 5-byte header of a frame of type typ with an n-byte body.
func frameHeader(w *bufio.Writer, typ byte, n int) error {
	if w.Available() < 5 {
		l := uint32(n + 4)
		_, err := w.Write([]byte{typ, byte(l >> 24), byte(l >> 16), byte(l >> 8), byte(l)})
		return err
	}
	// In place in the buffer: one bounds check instead of five WriteByte calls.
	b := w.AvailableBuffer()[:5]
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(n+4))
	_, err := w.Write(b)
	return err
}

// Why a client read ended on a deadline.
var (
	errIdleTransaction = errors.New("idle_transaction_timeout")
	errClientIdle      = errors.New("client_idle_timeout")
)

// setIdleDeadline sets the client's read deadline for the state the conversation is
// in: idle_transaction_timeout while a transaction is open and nothing is outstanding,
// client_idle_timeout while the client is idle outside one, none while the server
// works. rl.mu is held. Both the client's goroutine (before each read) and the reader
// (after each ReadyForQuery) call it.
func (rl *relay) setIdleDeadline() {
	cfg := rl.c.p.state().cfg
	var d time.Duration
	rl.idleKind = nil
	switch {
	case rl.s != nil && rl.trk.Outstanding() > 0:
	case rl.s != nil && !rl.trk.Idle():
		d, rl.idleKind = cfg.IdleTransactionTimeout.Duration, errIdleTransaction
	default:
		d, rl.idleKind = cfg.ClientIdleTimeout.Duration, errClientIdle
	}
	if d == 0 {
		if rl.deadlineSet {
			_ = rl.c.conn.SetReadDeadline(time.Time{})
			rl.deadlineSet = false
		}
		return
	}
	_ = rl.c.conn.SetReadDeadline(time.Now().Add(d))
	rl.deadlineSet = true
}

// timedOut turns a client read that hit its idle deadline into the error the client
// is told (PostgreSQL's own SQLSTATEs for the same timeouts).
func (rl *relay) timedOut(err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	rl.mu.Lock()
	kind := rl.idleKind
	rl.mu.Unlock()
	switch kind {
	case errIdleTransaction:
		rl.c.fatal("25P03", "sepgadm: terminating connection due to idle_transaction_timeout")
	case errClientIdle:
		rl.c.fatal("57P05", "sepgadm: terminating connection due to client_idle_timeout")
	default:
		return err
	}
	return kind
}

// cancel forwards a client's CancelRequest to the backend running its request, and
// holds the connection until the server has taken the request in (it closes the cancel
// connection once the backend is signalled), so that the cancel cannot reach the
// next client of that connection.
func (rl *relay) cancel() {
	rl.mu.Lock()
	s := rl.s
	if s == nil || rl.trk.Outstanding() == 0 {
		rl.mu.Unlock()
		return
	}
	rl.holds++
	rl.mu.Unlock()
	defer rl.dropHolds(1)
	if err := s.cancel(rl.c.p.state().cfg); err != nil {
		// The signal may still be on its way: the connection must not serve anyone else.
		s.doubtful.Store(true)
		rl.c.p.log.Warn("cancel", "error", err)
	}
}
