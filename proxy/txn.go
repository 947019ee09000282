package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sepgadm/sepgadm/proxy/wire"
)

// Transaction pooling: a server connection is attached when a client starts a
// transaction (its first message after being idle) and released at ReadyForQuery 'I'
// with nothing in flight. Idle connections keep their label, and checkout prefers one
// already labelled for the client (label affinity), so a switch is paid only when the
// label must change.

// trackedParams are replayed with SET when a client lands on a server connection whose
// value differs. search_path is not reported by PostgreSQL 15, so the proxy learns it
// from the client's own SET statements.
var trackedParams = []string{"client_encoding", "DateStyle", "TimeZone", "IntervalStyle",
	"standard_conforming_strings", "application_name", "search_path"}

var (
	setSearchPathRE = regexp.MustCompile(`(?is)^\s*SET\s+(?:SESSION\s+)?search_path\s*(?:TO|=)\s*(.+?)\s*;?\s*$`)
	sessionOnlyRE   = []struct {
		re   *regexp.Regexp
		what string
	}{
		{regexp.MustCompile(`(?i)(^|;)\s*(LISTEN|UNLISTEN)\s`), "LISTEN"},
		{regexp.MustCompile(`(?i)\bpg_(try_)?advisory_lock(_shared)?\s*\(`), "session advisory locks (use pg_advisory_xact_lock)"},
		{regexp.MustCompile(`(?is)\bDECLARE\b.*\bWITH\s+HOLD\b`), "WITH HOLD cursors"},
		{regexp.MustCompile(`(?i)(^|;)\s*PREPARE\s+(?:[A-Za-z_"][^\s(]*)\s*(\(|AS\b)`), "SQL-level PREPARE (use protocol-level prepared statements)"},
	}
)

// sessionOnly names the session-level feature a statement uses, or "". A cheap
// keyword scan keeps the regular expressions off the hot path (pprof showed them at 15%
// of the proxy's CPU when run on every Parse).
func sessionOnly(sql string) string {
	if !containsFold(sql, "listen") && !containsFold(sql, "advisory") && !containsFold(sql, "hold") && !containsFold(sql, "prepare") {
		return ""
	}
	for _, s := range sessionOnlyRE {
		if s.re.MatchString(sql) {
			return s.what
		}
	}
	return ""
}

// txState is what the client's two directions share while a server is attached.
type txState struct {
	mu      sync.Mutex
	server  *serverConn
	pending int  // Query/Sync sent and not yet answered by ReadyForQuery
	dirty   bool // extended-protocol messages sent since the last Sync
	async   bool // a reader goroutine (serverToClient) reads server's side
	// parses lists, in order, the Parse messages sent that await ParseComplete: drop is
	// set for those the proxy injected to re-prepare a statement; sync marks a boundary.
	parses []parseEntry
}

type parseEntry struct{ drop, sync bool }

// clientStmt is a client's named prepared statement.
type clientStmt struct {
	server string // the name used on every server connection
	body   []byte // the Parse body with the server name
}

// stmtName is the server-side name of a statement: the same query and parameter types
// share a name (and a server-side statement) across clients.
func stmtName(query string, rest []byte) string {
	h := sha256.New()
	h.Write([]byte(query))
	h.Write([]byte{0})
	h.Write(rest)
	return "sepgadm_" + hex.EncodeToString(h.Sum(nil)[:10])
}

func cstring(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

func appendCString(dst []byte, s string) []byte { return append(append(dst, s...), 0) }

// inlineWait is how long a client's goroutine waits itself for the first byte of the
// server's answer before handing the wait to a reader goroutine, which leaves it free to
// watch the client: one that leaves during a long statement is noticed and its server
// connection closed.
const inlineWait = 200 * time.Millisecond

// txnClient is a transaction-mode client's relay state, which its goroutine and the
// event loop share (whichever holds the client at the time).
type txnClient struct {
	tx    txState
	stmts map[string]clientStmt
	local bool // an extended-protocol batch answered by the proxy awaits its Sync
	in    tally
	// clean holds query texts that needed nothing (not refused, no session-only
	// feature, no search_path) under configuration cleanSt: clients send the same few
	// statements again and again (pgbench -M extended parses each one every time). The
	// event loop checks other texts the same way (plainQuery) and adds them too.
	clean   map[string]struct{}
	cleanSt *state
}

// relayTransactions serves c in transaction mode until it leaves.
//
// With event_loop = "on", a client with a socket descriptor of its own (not TLS) parks
// in its event loop between requests (loop.go); the loop serves the common case for all
// such clients on one goroutine and gives a client back for anything else. Here, and for
// every client with the loop off, one goroutine does the common case
// alone: it reads a request from the client, sends it, and reads the answer itself up to
// ReadyForQuery (no goroutine per transaction, no hand-off between goroutines). A reader
// goroutine takes the server's side only when the client must be read while the server
// talks: pipelined requests, Flush, COPY FROM STDIN, or an answer slower than inlineWait.
func (c *client) relayTransactions(ctx context.Context) {
	p := c.p
	c.txn = &txnClient{stmts: map[string]clientStmt{}, clean: map[string]struct{}{}}
	t := c.txn
	tx := &t.tx
	var err error
	defer func() {
		p.metrics.addIn(&t.in)
		tx.mu.Lock()
		s := tx.server
		tx.server = nil
		c.setServer(nil)
		tx.mu.Unlock()
		if s != nil {
			// The client left with a transaction or a request open: never reuse.
			_ = s.conn.SetReadDeadline(time.Now())
			p.discardServer(s)
		}
		if c.lp != nil && c.lp.pre != nil {
			p.releaseTxn(c.lp.pre) // checked out by the loop, never used
			c.lp.pre = nil
		}
	}()
	for {
		if c.canPark() {
			if err = c.parkInLoop(); err != nil {
				return
			}
		}
		var typ byte
		var n int
		typ, n, err = c.r.Header()
		if err != nil || typ == 'X' {
			return
		}
		t.in.bytes += int64(n + 5)
		var body []byte
		switch typ {
		case 'Q', 'P', 'B', 'D', 'C':
			if body, err = c.r.Body(n); err != nil {
				return
			}
		}
		if q := wire.QueryBytes(typ, body); q != nil && !c.knownClean(t.clean, &t.cleanSt, q) {
			sql := string(q)
			if p.forbidden(sql) {
				p.metrics.refusedCalls.Inc()
				c.fatal("42501", "sepgadm: statements that call the switch function are refused")
				return
			}
			if what := sessionOnly(sql); what != "" {
				if typ == 'Q' {
					// Let the server raise the error, so the transaction state stays right.
					body = appendCString(nil, "DO $sepgadm$ BEGIN RAISE EXCEPTION 'sepgadm: "+what+
						" cannot work in transaction pooling mode' USING ERRCODE = '0A000'; END $sepgadm$")
				} else {
					c.fatal("0A000", "sepgadm: "+what+" cannot work in transaction pooling mode")
					return
				}
			} else if containsFold(sql, "search_path") {
				if m := setSearchPathRE.FindStringSubmatch(sql); m != nil && typ == 'Q' {
					c.setDesired("search_path", m[1])
				}
			} else if len(t.clean) < maxCleanQueries && len(sql) <= maxCleanQueryLen {
				t.clean[sql] = struct{}{}
			}
		}

		tx.mu.Lock()
		s := tx.server
		if s == nil && c.answerLocally(t.stmts, typ, body, &t.local) {
			tx.mu.Unlock()
			continue
		}
		if s == nil {
			t.local = false
			tx.mu.Unlock()
			p.metrics.addIn(&t.in)
			s, err = p.checkout(ctx, c)
			if err != nil {
				c.fatalLogin(err)
				return
			}
			tx.mu.Lock()
			tx.server, tx.pending, tx.dirty, tx.parses, tx.async = s, 0, false, tx.parses[:0], false
			c.setServer(s) // for cancel requests and SHOW CLIENTS
		}
		// A request sent while an earlier one is unanswered (pipelining), or a Flush
		// (answers wanted before Sync): a reader goroutine drains the server while this
		// one goes on reading the client, lest both sides block on full socket buffers.
		if !tx.async && (tx.pending > 0 || typ == 'H') {
			c.handOff(s, tx)
		}
		err = c.forwardTxn(s, tx, t.stmts, typ, n, body)
		inline := false
		if err == nil && c.r.Buffered() == 0 {
			err = s.w.Flush()
			inline = !tx.async && tx.pending > 0 && !tx.dirty
		}
		tx.mu.Unlock()
		if err != nil {
			return
		}
		if inline {
			if err = c.awaitInline(s, tx); err != nil {
				return
			}
		}
	}
}

// A client's set of clean query texts stays small: a few dozen statements of modest size.
const (
	maxCleanQueries  = 64
	maxCleanQueryLen = 4096
)

// knownClean reports whether q is in clean, emptying clean first when the configuration
// changed since it was filled (a reload may rename the switch function).
func (c *client) knownClean(clean map[string]struct{}, st **state, q []byte) bool {
	if cur := c.p.state(); cur != *st {
		clear(clean)
		*st = cur
		return false
	}
	_, ok := clean[string(q)]
	return ok
}

// handOff starts a reader goroutine for s's side of the transaction. tx.mu is held, or
// the caller is the only goroutine that reads s.
func (c *client) handOff(s *serverConn, tx *txState) {
	tx.async = true
	go c.serverToClient(s, tx)
}

// awaitInline reads s's answer to the request just sent, on the client's goroutine,
// until ReadyForQuery answers it (s released, or the transaction goes on), unless the
// answer is slow or COPY FROM STDIN starts: then a reader goroutine takes over.
func (c *client) awaitInline(s *serverConn, tx *txState) error {
	var out tally
	defer c.p.metrics.addOut(&out)
	if s.br.Buffered() == 0 {
		// Peek consumes nothing, so a wait cut short by the deadline loses no bytes. (A
		// watchdog cutting long waits short instead of a deadline per answer was tried: it
		// cost 5-12% of TPS at 10 clients, as without a timer an idle thread sleeps
		// rather than waiting in epoll.)
		_ = s.conn.SetReadDeadline(time.Now().Add(inlineWait))
		_, err := s.br.Peek(1)
		_ = s.conn.SetReadDeadline(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			tx.mu.Lock()
			c.handOff(s, tx)
			tx.mu.Unlock()
			return nil
		}
		// Any other error shows again at the next read, below.
	}
	for {
		st, err := c.serverMessage(s, tx, &out)
		switch {
		case err != nil:
			return err
		case st == msgCopyIn:
			tx.mu.Lock()
			c.handOff(s, tx)
			tx.mu.Unlock()
			return nil
		case st != msgMore:
			return nil
		}
	}
}

// forwardTxn sends one client message to s, renaming prepared statements and
// re-preparing them where the client has landed. tx.mu is held.
func (c *client) forwardTxn(s *serverConn, tx *txState, stmts map[string]clientStmt, typ byte, n int, body []byte) error {
	write := func(t byte, b []byte) error {
		if err := frameHeader(s.w, t, len(b)); err != nil {
			return err
		}
		_, err := s.w.Write(b)
		return err
	}
	ensure := func(name string) (string, error) {
		if name == "" {
			return "", nil
		}
		st, ok := stmts[name]
		if !ok {
			return name, nil // unknown to us: let the server report it
		}
		if !s.prepared[st.server] {
			if err := write('P', st.body); err != nil {
				return "", err
			}
			s.prepared[st.server] = true
			tx.parses = append(tx.parses, parseEntry{drop: true})
		}
		return st.server, nil
	}
	switch typ {
	case 'Q':
		tx.pending++
		tx.parses = append(tx.parses, parseEntry{sync: true})
		return write('Q', body)
	case 'S':
		tx.pending++
		tx.dirty = false
		tx.parses = append(tx.parses, parseEntry{sync: true})
		return c.r.CopyBody(s.w, typ, n)
	case 'P':
		tx.dirty = true
		name, rest, ok := cstring(body)
		if !ok {
			return errors.New("malformed Parse")
		}
		if name != "" {
			st := recordParse(stmts, name, rest)
			srv, pb := st.server, st.body
			if s.prepared[srv] {
				// Already prepared here: parse it into the unnamed statement instead, so
				// the client still gets its ParseComplete in order. (A client that relies
				// on an earlier unnamed statement after this Parse would see it replaced.)
				body = append([]byte{0}, rest...)
			} else {
				body = pb
				s.prepared[srv] = true
			}
		}
		tx.parses = append(tx.parses, parseEntry{})
		return write('P', body)
	case 'B':
		tx.dirty = true
		portal, rest, ok := cstring(body)
		name, tail, ok2 := cstring(rest)
		if !ok || !ok2 {
			return errors.New("malformed Bind")
		}
		srv, err := ensure(name)
		if err != nil {
			return err
		}
		// The same Bind with the statement renamed, written in pieces (no allocation).
		if err := frameHeader(s.w, 'B', len(portal)+1+len(srv)+1+len(tail)); err != nil {
			return err
		}
		_, _ = s.w.WriteString(portal)
		_ = s.w.WriteByte(0)
		_, _ = s.w.WriteString(srv)
		_ = s.w.WriteByte(0)
		_, err = s.w.Write(tail)
		return err
	case 'D', 'C':
		tx.dirty = true
		if len(body) < 2 || body[0] != 'S' {
			return write(typ, body)
		}
		name, _, _ := cstring(body[1:])
		if typ == 'C' {
			if _, ok := stmts[name]; ok {
				delete(stmts, name)
				// Other clients may share the server-side statement: keep it, and close a
				// portal that does not exist instead (CloseComplete all the same).
				return write('C', appendCString([]byte{'P'}, "sepgadm_none"))
			}
			return write(typ, body)
		}
		srv, err := ensure(name)
		if err != nil {
			return err
		}
		return write('D', appendCString([]byte{'S'}, srv))
	default:
		// Execute leaves a batch open until Sync; COPY data ('d', 'c', 'f') and Flush
		// belong to a request already counted.
		if typ == 'E' {
			tx.dirty = true
		}
		return c.r.CopyBody(s.w, typ, n)
	}
}

// containsFold reports whether s contains the lower-case ASCII word w, ignoring case,
// without allocating.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		j := 0
		for ; j < len(w); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != w[j] {
				break
			}
		}
		if j == len(w) {
			return true
		}
	}
	return false
}

// recordParse remembers a client's named statement under its server-side name.
func recordParse(stmts map[string]clientStmt, name string, rest []byte) clientStmt {
	query, tail, _ := cstring(rest)
	srv := stmtName(query, tail)
	st := clientStmt{server: srv, body: append(appendCString(nil, srv), rest...)}
	stmts[name] = st
	return st
}

// answerLocally handles, without a server, what an idle client may send outside a
// transaction and the proxy can answer itself: a named Parse (prepared lazily on
// whatever server the client's Bind lands on), a Close of such a statement, and the Sync
// or Flush that ends such a batch. Clients such as pgbench prepare synchronously; were a
// server checked out for that, a pool smaller than the clients could deadlock behind
// their open transactions. A syntax error in such a statement surfaces at Bind.
func (c *client) answerLocally(stmts map[string]clientStmt, typ byte, body []byte, local *bool) bool {
	switch typ {
	case 'P':
		name, rest, ok := cstring(body)
		if !ok || name == "" {
			return false
		}
		recordParse(stmts, name, rest)
		*local = true
		return c.send(&pgproto3.ParseComplete{}) == nil
	case 'C':
		if len(body) < 2 || body[0] != 'S' {
			return false
		}
		name, _, _ := cstring(body[1:])
		if _, ok := stmts[name]; !ok {
			return false
		}
		delete(stmts, name)
		*local = true
		return c.send(&pgproto3.CloseComplete{}) == nil
	case 'S':
		if !*local {
			return false
		}
		*local = false
		return c.send(&pgproto3.ReadyForQuery{TxStatus: 'I'}) == nil
	case 'H':
		return *local
	}
	return false
}

// serverToClient forwards s's answers until s is released at ReadyForQuery 'I' (or
// lost), as the reader goroutine of handOff.
func (c *client) serverToClient(s *serverConn, tx *txState) {
	var out tally
	defer c.p.metrics.addOut(&out)
	for {
		st, err := c.serverMessage(s, tx, &out)
		if err != nil || st == msgReleased {
			return
		}
	}
}

// msgState is what a server message did to the attached transaction.
type msgState int

const (
	msgMore     msgState = iota
	msgAnswered          // ReadyForQuery answered the last request; the transaction goes on
	msgReleased          // ReadyForQuery 'I' with nothing in flight: s went back to the pool
	msgCopyIn            // CopyInResponse or CopyBothResponse: the client's data comes next
)

// serverMessage reads one message from s, updates tx and forwards the message to the
// client (or drops it, for a Parse the proxy injected), counting it in out. The caller
// is the one goroutine reading s.
func (c *client) serverMessage(s *serverConn, tx *txState, out *tally) (msgState, error) {
	p := c.p
	typ, n, err := s.r.Header()
	if err != nil {
		c.serverLost(s, tx)
		return msgMore, err
	}
	out.bytes += int64(n + 5)
	switch typ {
	case 'Z', '1', 'E', 'S':
	default:
		c.wmu.Lock()
		err = s.r.CopyBody(c.w, typ, n)
		if err == nil && s.r.Buffered() == 0 {
			err = c.w.Flush()
		}
		c.wmu.Unlock()
		if typ == 'G' || typ == 'W' {
			return msgCopyIn, err
		}
		return msgMore, err
	}
	body, err := s.r.Body(n)
	if err != nil {
		c.serverLost(s, tx)
		return msgMore, err
	}
	tx.mu.Lock()
	forward := true
	switch typ {
	case '1':
		for len(tx.parses) > 0 && tx.parses[0].sync {
			tx.parses = tx.parses[1:]
		}
		if len(tx.parses) > 0 {
			forward = !tx.parses[0].drop
			tx.parses = tx.parses[1:]
		}
	case 'E':
		// The server skips the rest of this extended-protocol batch up to Sync.
		for len(tx.parses) > 0 && !tx.parses[0].sync {
			tx.parses = tx.parses[1:]
		}
	case 'S':
		var ps pgproto3.ParameterStatus
		if ps.Decode(body) == nil {
			s.setParam(ps.Name, ps.Value)
			c.setDesired(ps.Name, ps.Value)
		}
	}
	st := msgMore
	if typ == 'Z' {
		if len(tx.parses) > 0 && tx.parses[0].sync {
			tx.parses = tx.parses[1:]
		}
		tx.pending--
		out.queries++
		switch {
		case tx.pending <= 0 && !tx.dirty && len(body) == 1 && body[0] == 'I':
			st = msgReleased
		case tx.pending <= 0:
			st = msgAnswered
		}
	}
	if forward {
		c.wmu.Lock()
		err = frameHeader(c.w, typ, len(body))
		if err == nil {
			_, err = c.w.Write(body)
		}
		if err == nil && (s.r.Buffered() == 0 || st != msgMore) {
			err = c.w.Flush()
		}
		c.wmu.Unlock()
	}
	if st == msgReleased {
		tx.server = nil
		c.setServer(nil)
		tx.mu.Unlock()
		if err != nil {
			p.discardServer(s)
		} else {
			p.releaseTxn(s)
		}
		return st, err
	}
	tx.mu.Unlock()
	return st, err
}

// serverLost closes s after a read failed, and the client with it when s was still its
// server (the client's transaction cannot go on elsewhere).
func (c *client) serverLost(s *serverConn, tx *txState) {
	tx.mu.Lock()
	mine := tx.server == s
	if mine {
		tx.server = nil
		c.setServer(nil)
	}
	tx.mu.Unlock()
	if mine {
		c.p.discardServer(s)
		c.fatal("08006", "sepgadm: server connection lost")
		_ = c.conn.Close()
	}
}

func (c *client) setDesired(name, value string) {
	c.dmu.Lock()
	if c.desired == nil {
		c.desired = map[string]string{}
	}
	if old, ok := c.desired[name]; !ok || old != value {
		c.desired[name] = value
		c.dkey = settingsKey(c.desired)
	}
	c.dmu.Unlock()
}

// settingsKey spells the tracked settings of m in one string: two sessions with the same
// key agree on every tracked setting (each set to the same value, or unset in both), so
// a server connection whose key is the client's needs nothing replayed.
func settingsKey(m map[string]string) string {
	var b strings.Builder
	for _, k := range trackedParams {
		if v, ok := m[k]; ok {
			b.WriteByte('=')
			b.WriteString(v)
		}
		b.WriteByte(0)
	}
	return b.String()
}

// needsReplay reports whether s's tracked settings differ from the client's.
func (c *client) needsReplay(s *serverConn) bool {
	c.dmu.Lock()
	same := c.dkey == s.paramsKey()
	c.dmu.Unlock()
	return !same && c.replaySQL(s) != ""
}

// checkout attaches a server connection for the client's next transaction: one already
// labelled for it if any is idle, switched (and, with verify_label = "always",
// confirmed) otherwise, with the client's tracked settings replayed.
func (p *Proxy) checkout(ctx context.Context, c *client) (*serverConn, error) {
	cfg := p.state().cfg
	s, err := p.acquireServer(ctx, c)
	if err != nil {
		return nil, err
	}
	if cfg.Tagging == "on" {
		label, _, _ := s.snapshot()
		if label == c.context && cfg.VerifyLabel == "always" {
			got, err := s.simpleQuery(ctx, "SELECT pg_catalog.sepgsql_getcon()")
			if err != nil || got == nil || *got != c.context {
				p.metrics.labelDrift.Inc()
				p.log.Warn("label drift: the server session is not under the label the proxy left it with",
					"backend_pid", s.pid, "expected", c.context, "found", deref(got))
				s.setLabel("")
				label = ""
			}
		}
		if label != c.context {
			if err := p.switchTo(ctx, s, c); err != nil {
				return nil, err
			}
		}
	}
	if !c.needsReplay(s) {
		// nothing to replay
	} else if sql := c.replaySQL(s); sql != "" {
		if _, err := s.simpleQuery(ctx, sql); err != nil {
			p.discardServer(s)
			return nil, &loginError{code: "08006", msg: "sepgadm: replay settings: " + err.Error(), result: "server_error", err: err}
		}
		if v, ok := c.desiredValue("search_path"); ok {
			s.setParam("search_path", v)
		}
	}
	s.setState("active")
	return s, nil
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}

func (c *client) desiredValue(k string) (string, bool) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	v, ok := c.desired[k]
	return v, ok
}

// replaySQL is the SET statements that bring s's tracked settings to the client's.
func (c *client) replaySQL(s *serverConn) string {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	var b strings.Builder
	for _, k := range trackedParams {
		v, ok := c.desired[k]
		if !ok || s.params[k] == v {
			continue
		}
		b.WriteString("SET ")
		b.WriteString(k)
		b.WriteString(" TO ")
		if k == "search_path" {
			b.WriteString(v) // as the client wrote it
		} else {
			b.WriteString(quoteLiteral(v))
		}
		b.WriteString(";")
	}
	return b.String()
}

// releaseTxn returns an idle server connection to the pool with its label kept.
func (p *Proxy) releaseTxn(s *serverConn) {
	s.pool.release(s, true, p.state().cfg.ServerLifetime.Duration)
}

// fatalLogin reports a checkout failure to the client with the right SQLSTATE.
func (c *client) fatalLogin(err error) {
	var le *loginError
	if errors.As(err, &le) {
		c.p.metrics.logins.WithLabelValues(le.result).Inc()
		c.p.log.Warn("checkout failed", "session", c.id, "client", c.addr, "context", c.context, "error", err)
		c.fatal(le.code, le.msg)
		return
	}
	c.fatal("08006", "sepgadm: "+err.Error())
}
