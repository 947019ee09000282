package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/opencontainers/selinux/go-selinux"
	"github.com/sepgadm/sepgadm/sessionlog"
	"github.com/sepgadm/sepgadm/trusted"
)

// switchTo switches s to the client's context, after resetting it if another client
// used it (the reset and the switch go in one write), and logs the switch in the
// session log. On failure s is closed and the error, a *loginError, carries the
// server's SQLSTATE; its message names the context asked for, never what the server
// returned.
func (p *Proxy) switchTo(ctx context.Context, s *serverConn, c *client) error {
	if err := p.tag(ctx, s, c.context, "client", !s.fresh); err != nil {
		p.discardServer(s)
		p.log.Warn("switch failed", "session", c.id, "backend_pid", s.pid, "context", c.context, "error", err)
		return &loginError{code: sqlStateOr(err, trusted.CodeDenied), msg: "sepgadm: could not switch the session to " + c.context + serverReason(err, "the switch was not confirmed"), result: "tag_failed", err: err}
	}
	p.sessions.write(c.record(sessionlog.Tag, s.pid))
	return nil
}

// serverReason is what a client is told of a failed call of the proxy's own: the
// server's error for it, or dflt, never what the server returned to the proxy.
func serverReason(err error, dflt string) string {
	var se serverError
	if errors.As(err, &se) {
		return ": " + se.Message
	}
	return ": " + dflt
}

// sqlStateOr is the SQLSTATE a server error carries, or def.
func sqlStateOr(err error, def string) string {
	var se serverError
	if errors.As(err, &se) {
		return se.Code
	}
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) {
		return pe.SQLState()
	}
	return def
}

// tag switches s to label (nil label: back to the proxy's own) and checks the result;
// with reset, the server_reset_query goes first in the same write. The error never
// quotes what the server returned (the proxy's log does).
func (p *Proxy) tag(ctx context.Context, s *serverConn, label string, kind string, reset bool) error {
	st := p.state()
	start := time.Now()
	s.setState("tagging")
	var arg *string
	if label != "" {
		arg = &label
	}
	ctx, cancel := context.WithTimeout(ctx, st.cfg.ServerConnectTimeout.Duration)
	defer cancel()
	var msg []byte
	want := callAnswer
	if reset {
		msg, _ = (&pgproto3.Query{String: st.cfg.ServerResetQuery}).Encode(nil)
		want = "*Z" + callAnswer
	}
	msg = appendCall(msg, st.cfg.TagFunction, st.token, arg)
	got, err := s.exchange(ctx, msg, want)
	if reset && err == nil {
		s.afterReset()
	}
	switch {
	case err != nil:
	case got == nil:
		err = errors.New("the switch function returned no label")
	case label != "" && *got != label:
		p.log.Warn("the switch function returned another label", "backend_pid", s.pid, "asked", label, "returned", *got)
		err = fmt.Errorf("the switch to %s was not confirmed", label)
	case label == "" && !p.isOwnLabel(*got):
		p.log.Warn("switching back returned another label", "backend_pid", s.pid, "returned", *got)
		err = errors.New("switching back to the proxy's own label was not confirmed")
	}
	p.metrics.tagDone(kind, time.Since(start), err == nil)
	s.setState("active")
	if err != nil {
		s.setLabel("")
		return err
	}
	s.setLabel(*got)
	s.fresh = false
	return nil
}

// isOwnLabel checks a label against the proxy's own SELinux label when this host has
// SELinux and the server is reached over a Unix socket (so the peer label is ours).
func (p *Proxy) isOwnLabel(label string) bool {
	if !strings.HasPrefix(p.state().cfg.Server.Host, "/") {
		return label != ""
	}
	own, err := selinux.CurrentLabel()
	if err != nil || own == "" || own == "kernel" {
		return label != "" // no SELinux on this host: nothing to compare with
	}
	return label == own
}

// releaseServer resets a server connection after its session-mode client: the
// server_reset_query and the switch back to the proxy's own label, in one write.
// Anything doubtful closes the connection instead.
func (p *Proxy) releaseServer(s *serverConn, clean bool) {
	st := p.state()
	if !clean {
		p.discardServer(s)
		return
	}
	s.setState("resetting")
	ctx, cancel := context.WithTimeout(context.Background(), st.cfg.ServerConnectTimeout.Duration)
	defer cancel()
	if st.cfg.Tagging == TaggingOn {
		if err := p.tag(ctx, s, "", "reset", true); err != nil {
			p.log.Warn("server reset failed; closing the connection", "backend_pid", s.pid, "error", err)
			p.discardServer(s)
			return
		}
	} else if err := s.command(ctx, st.cfg.ServerResetQuery); err != nil {
		p.log.Warn("server reset failed; closing the connection", "backend_pid", s.pid, "error", err)
		p.discardServer(s)
		return
	} else {
		s.afterReset()
	}
	s.fresh = true
	s.pool.release(s, true, st.cfg.ServerLifetime.Duration)
}

func (p *Proxy) discardServer(s *serverConn) {
	s.pool.release(s, false, 0)
}

// forbidden reports whether client SQL calls the switch function. Text inspection
// cannot see every call (dynamic SQL, search_path, wrappers); the credential is what
// really stops a client: without the token every call fails with 28000.
func (p *Proxy) forbidden(sql string) bool {
	if sql == "" {
		return false
	}
	fn := strings.ToLower(p.state().cfg.TagFunction)
	base := fn[strings.LastIndexByte(fn, '.')+1:]
	if !containsFold(sql, base) && !containsFold(sql, trusted.SwitchFunctionName) {
		return false // the common case, without allocating
	}
	norm := strings.Map(func(r rune) rune {
		if r == '"' || r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, strings.ToLower(sql))
	return strings.Contains(norm, fn) || strings.Contains(norm, base+"(") || strings.Contains(norm, trusted.SwitchFunctionName)
}
