package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
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

var setSearchPathRE = regexp.MustCompile(`(?is)^\s*SET\s+(?:SESSION\s+)?search_path\s*(?:TO|=)\s*(.+?)\s*;?\s*$`)

// clientStmt is a client's named prepared statement.
type clientStmt struct {
	server string // the name used on every server connection
	body   []byte // the Parse body with the server name
}

// stmtPrefix starts every server-side statement name the proxy makes; clients may not
// use it.
const stmtPrefix = "sepgadm_"

// stmtName is the server-side name of a statement: a keyed hash of the label it runs
// under, the query and its parameter types. Clients of one label share a server-side
// statement; no other label can name, replace or run it (and a connection is reset
// before it changes label, which drops them all).
func stmtName(key []byte, label, query string, rest []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write([]byte(query))
	h.Write([]byte{0})
	h.Write(rest)
	return stmtPrefix + hex.EncodeToString(h.Sum(nil)[:12])
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
// rl.mu is held.
func (rl *relay) recordParse(name string, rest []byte) clientStmt {
	query, tail, _ := cstring(rest)
	srv := stmtName(rl.c.p.stmtKey, rl.c.context, query, tail)
	st := clientStmt{server: srv, body: append(appendCString(nil, srv), rest...)}
	rl.stmts[name] = st
	return st
}

// answerLocally answers, without a server, what an idle client may send outside a
// transaction and the proxy can answer itself: a named Parse (prepared lazily on
// whatever server the client's Bind lands on), a Close of such a statement, and the
// Sync or Flush that ends such a batch. Clients such as pgbench prepare synchronously;
// were a server checked out for that, a pool smaller than the clients could deadlock
// behind their open transactions. A syntax error in such a statement surfaces at Bind.
func (rl *relay) answerLocally(typ byte, body []byte) ([]pgproto3.BackendMessage, bool) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	switch typ {
	case 'P':
		name, rest, ok := cstring(body)
		if !ok || name == "" || checkClientName(name) != nil {
			return nil, false
		}
		if len(rl.stmts) >= rl.c.p.state().cfg.MaxPreparedStatements {
			if _, known := rl.stmts[name]; !known {
				return nil, false // the server path refuses it
			}
		}
		rl.recordParse(name, rest)
		rl.local = true
		return []pgproto3.BackendMessage{&pgproto3.ParseComplete{}}, true
	case 'C':
		if len(body) < 2 || body[0] != 'S' {
			return nil, false
		}
		name, _, _ := cstring(body[1:])
		if _, ok := rl.stmts[name]; !ok {
			return nil, false
		}
		delete(rl.stmts, name)
		rl.local = true
		return []pgproto3.BackendMessage{&pgproto3.CloseComplete{}}, true
	case 'S':
		if !rl.local {
			return nil, false
		}
		rl.local = false
		return []pgproto3.BackendMessage{&pgproto3.ReadyForQuery{TxStatus: 'I'}}, true
	case 'H':
		return nil, rl.local
	}
	return nil, false
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
	if cfg.Tagging == TaggingOn {
		label, _, _ := s.snapshot()
		if label == c.context && cfg.VerifyLabel == VerifyAlways {
			got, err := s.queryValue(ctx, "SELECT pg_catalog.sepgsql_getcon()")
			if err != nil {
				// The answer was not the one expected: the connection is not understood.
				p.discardServer(s)
				return nil, &loginError{code: sqlStateOr(err, "08006"), msg: "sepgadm: could not confirm the session's label" + serverReason(err, "the server's answer was not the one expected"), result: "server_error", err: err}
			}
			if got == nil || *got != c.context {
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
	if s.startupKey != c.startupKey {
		// The client's startup settings, all of them, as at its login.
		if err := s.setConfig(ctx, c.startupKeys, c.startupSettings); err != nil {
			p.discardServer(s)
			return nil, &loginError{code: sqlStateOr(err, "08006"), msg: "sepgadm: could not restore the session's startup settings" + serverReason(err, "the server's answer was not the one expected"), result: "server_error", err: err}
		}
		s.startupKey = c.startupKey
		if v, ok := c.startupSettings["search_path"]; ok {
			s.setParam("search_path", v)
		}
	}
	if !c.needsReplay(s) {
		// nothing to replay
	} else if sql := c.replaySQL(s); sql != "" {
		if err := s.command(ctx, sql); err != nil {
			p.discardServer(s)
			return nil, &loginError{code: sqlStateOr(err, "08006"), msg: "sepgadm: could not restore the session's settings" + serverReason(err, "the server's answer was not the one expected"), result: "server_error", err: err}
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
