package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os/user"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/opencontainers/selinux/go-selinux"
	"github.com/xdg-go/scram"
	"golang.org/x/sys/unix"

	"github.com/sepgadm/sepgadm/proxy/wire"
	"github.com/sepgadm/sepgadm/sessionlog"
)

// client is one client session.
type client struct {
	p    *Proxy
	id   string
	conn net.Conn
	r    *wire.Reader
	w    *bufio.Writer
	wmu  sync.Mutex

	addr      string // ip:port, or "unix"
	ip        net.IP
	unix      bool
	tlsState  *tls.ConnectionState
	peerPID   int32
	peerUID   *int
	peerLabel string
	osUser    string

	user, db, appName string
	params            map[string]string
	context, source   string

	cancelPID    uint32
	cancelSecret []byte
	connectedAt  time.Time
	state        atomic.Value // string: login, active, idle-in-transaction, ...

	smu    sync.Mutex
	server *serverConn
	pool   *pool  // the client's (database, user) pool, once looked up
	waiter waiter // its place in the pool's queue when it waits
	killed atomic.Bool

	// desired are the tracked settings the client expects (transaction mode).
	dmu     sync.Mutex
	desired map[string]string
	dkey    string // settingsKey(desired)

	// rl relays the client's messages once it is logged in.
	rl *relay
}

func (c *client) currentServer() *serverConn {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.server
}

func (c *client) setServer(s *serverConn) {
	c.smu.Lock()
	c.server = s
	c.smu.Unlock()
}

// kill closes the client's connections now (SIGINT, drain timeout).
func (c *client) kill() {
	c.killed.Store(true)
	_ = c.conn.Close()
	if s := c.currentServer(); s != nil {
		_ = s.conn.SetDeadline(time.Now())
	}
}

func (c *client) send(msgs ...pgproto3.BackendMessage) error {
	var buf []byte
	for _, m := range msgs {
		var err error
		if buf, err = m.Encode(buf); err != nil {
			return err
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.w.Write(buf); err != nil {
		return err
	}
	return c.w.Flush()
}

// fatal sends a FATAL ErrorResponse; the caller then closes the connection.
func (c *client) fatal(code, msg string) {
	_ = c.send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
}

func (p *Proxy) serveClient(conn net.Conn, idx int) {
	st := p.state()
	cfg := st.cfg
	lcfg := cfg.Listen[idx]
	c := &client{p: p, conn: conn, connectedAt: time.Now(), id: strconv.FormatUint(p.nextID.Add(1), 10)}
	c.rl = &relay{c: c, txn: cfg.PoolMode == PoolTransaction, stmts: map[string]clientStmt{}}
	c.state.Store("login")
	defer func() { _ = c.conn.Close() }()
	// Every connection counts against max_client_conn from its first byte, logged in or
	// not. One over the limit is told so once its startup packet has come.
	full := p.conns.Add(1) > int64(cfg.MaxClientConn)
	defer p.conns.Add(-1)
	loginTimeout := cfg.ClientLoginTimeout.Duration
	if full {
		loginTimeout = min(loginTimeout, time.Second)
	}
	_ = conn.SetDeadline(time.Now().Add(loginTimeout))

	switch a := conn.RemoteAddr().(type) {
	case *net.TCPAddr:
		c.addr, c.ip = a.String(), a.IP
	default:
		c.addr, c.unix = "unix", true
		c.readPeer()
	}

	startup, err := c.negotiate(st.tls[idx])
	if err != nil || startup == nil {
		if err != nil && !errors.Is(err, io.EOF) {
			p.log.Debug("client startup", "client", c.addr, "error", err)
		}
		return
	}
	c.user = startup.Params["user"]
	c.db = startup.Params["database"]
	if c.db == "" {
		c.db = c.user
	}
	c.appName = startup.Params["application_name"]
	c.params = startup.Params
	rw := newRawIO(c.conn)
	// Until the client has authenticated, no message may be larger than a login needs.
	c.r = wire.NewReader(bufio.NewReaderSize(rw, 16<<10), maxLoginMessage)
	c.w = bufio.NewWriterSize(rw, 16<<10)

	if full {
		p.metrics.logins.WithLabelValues("refused").Inc()
		c.fatal("53300", "sepgadm: no more connections allowed (max_client_conn)")
		return
	}
	p.mu.Lock()
	p.clients[c] = struct{}{}
	p.mu.Unlock()
	p.metrics.clients.Inc()
	c.cancelPID, c.cancelSecret = p.newCancelKey(c)
	defer func() {
		p.mu.Lock()
		delete(p.clients, c)
		delete(p.cancel, cancelMapKey(c.cancelPID, c.cancelSecret))
		p.mu.Unlock()
		p.metrics.clients.Dec()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), cfg.ClientLoginTimeout.Duration)
	defer cancel()
	if err := p.authenticate(ctx, c, lcfg); err != nil {
		p.metrics.logins.WithLabelValues("auth_failed").Inc()
		p.log.Info("authentication failed", "client", c.addr, "user", c.user, "database", c.db, "error", err)
		c.fatal("28P01", fmt.Sprintf("sepgadm: authentication failed for user %q", c.user))
		return
	}
	c.r.SetMax(cfg.MaxMessageSize)
	if c.db == adminDatabase {
		if !lcfg.AdminAllowed() {
			p.metrics.logins.WithLabelValues("refused").Inc()
			c.fatal("28000", "sepgadm: the admin console is not served on this listener")
			return
		}
		if !slices.Contains(cfg.AdminUsers, c.user) {
			p.metrics.logins.WithLabelValues("refused").Inc()
			c.fatal("28000", fmt.Sprintf("sepgadm: user %q is not an admin user", c.user))
			return
		}
		_ = conn.SetDeadline(time.Time{})
		p.serveAdmin(c)
		return
	}
	if cfg.Tagging == TaggingOn {
		var ok bool
		c.context, c.source, ok = resolveContext(c, cfg)
		if !ok {
			p.metrics.logins.WithLabelValues("no_context").Inc()
			p.log.Warn("client refused: no SELinux context", "client", c.addr, "user", c.user, "database", c.db)
			c.fatal("28000", "sepgadm: no SELinux context for this client")
			return
		}
	}
	p.sessions.write(c.record(sessionlog.Connect, 0))
	defer func() { p.sessions.write(c.record(sessionlog.Disconnect, 0)) }()

	s, err := p.login(ctx, c)
	if err != nil {
		var le *loginError
		if errors.As(err, &le) {
			p.metrics.logins.WithLabelValues(le.result).Inc()
			p.log.Warn("client login failed", "client", c.addr, "user", c.user, "database", c.db, "context", c.context, "error", err)
			c.fatal(le.code, le.msg)
		}
		return
	}
	_ = conn.SetDeadline(time.Time{})
	c.state.Store("active")
	p.metrics.logins.WithLabelValues("ok").Inc()
	p.log.Info("client connected", "session", c.id, "client", c.addr, "user", c.user, "database", c.db,
		"context", c.context, "context_source", c.source, "backend_pid", s.pid)

	if c.rl.txn {
		// The login connection stays labelled for this client: label affinity makes its
		// first transaction free of a switch.
		c.setServer(nil)
		p.releaseTxn(s)
		s = nil
	}
	s, reusable := c.rl.run(context.Background(), s)
	if s != nil {
		p.releaseServer(s, reusable)
	}
}

// maxLoginMessage bounds every message before authentication (a SASL response is a few
// hundred bytes).
const maxLoginMessage = 8 << 10

// negotiate answers SSLRequest/GSSENCRequest until a StartupMessage arrives; it
// returns nil for a CancelRequest (handled) or a connection that went away.
func (c *client) negotiate(tlsCfg *tls.Config) (*wire.Startup, error) {
	for range 3 {
		s, err := wire.ReadStartup(c.conn)
		if err != nil {
			return nil, err
		}
		switch s.Code {
		case wire.SSLRequestCode:
			if tlsCfg == nil || c.unix || c.tlsState != nil {
				if _, err := c.conn.Write([]byte{'N'}); err != nil {
					return nil, err
				}
				continue
			}
			if _, err := c.conn.Write([]byte{'S'}); err != nil {
				return nil, err
			}
			tc := tls.Server(c.conn, tlsCfg)
			if err := tc.Handshake(); err != nil {
				return nil, fmt.Errorf("TLS handshake: %w", err)
			}
			cs := tc.ConnectionState()
			c.conn, c.tlsState = tc, &cs
		case wire.GSSENCRequest:
			// GSSAPI encryption is not offered; libpq then falls back as documented.
			if _, err := c.conn.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		case wire.CancelRequestCode:
			c.p.handleCancel(s.CancelPID, s.CancelKey)
			return nil, nil
		default:
			return &s, nil
		}
	}
	return nil, errors.New("too many negotiation requests")
}

// readPeer records the Unix-socket peer's pid, uid, OS user and SELinux label.
func (c *client) readPeer() {
	uc, ok := c.conn.(*net.UnixConn)
	if !ok {
		return
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			c.peerPID = cred.Pid
			uid := int(cred.Uid)
			c.peerUID = &uid
			if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
				c.osUser = u.Username
			}
		}
		// Ask the socket itself: without SELinux this fails (ENOPROTOOPT) and the client
		// has no peer label. selinux.GetEnabled() is not consulted: under the shipped
		// policy the proxy may not stat selinuxfs (dontaudited), and it would then
		// silently fall back to rules for every client (seen in the lab).
		if l, err := selinux.PeerLabel(fd); err == nil {
			c.peerLabel = strings.TrimRight(l, "\x00")
		}
	})
}

func (p *Proxy) authenticate(ctx context.Context, c *client, l Listener) error {
	switch l.Auth {
	case "trust":
		return nil
	case "peer":
		if c.osUser == "" {
			return errors.New("peer: no peer credentials")
		}
		if c.osUser == c.user || slices.Contains(p.state().cfg.PeerMap[c.osUser], c.user) {
			return nil
		}
		return fmt.Errorf("peer: OS user %q may not log in as %q", c.osUser, c.user)
	case "cert":
		if cn := certUser(c.tlsState); cn == "" || cn != c.user {
			return fmt.Errorf("cert: certificate common name %q is not the user", cn)
		}
		return nil
	case "scram-sha-256":
		return p.scramAuth(ctx, c)
	}
	return fmt.Errorf("unknown auth method %q", l.Auth)
}

func (p *Proxy) scramAuth(ctx context.Context, c *client) error {
	sec, err := p.lookupSecret(ctx, c.user)
	if err != nil {
		return err
	}
	if !sec.exists {
		// Run the exchange against a credential nobody knows, so an unknown user looks
		// like a wrong password.
		sec = p.mockSecret(c.user)
	}
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return sec.scram, nil })
	if err != nil {
		return err
	}
	conv := srv.NewConversation()
	if err := c.send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}); err != nil {
		return err
	}
	typ, body, err := c.r.Message()
	if err != nil {
		return err
	}
	var init pgproto3.SASLInitialResponse
	if typ != 'p' || init.Decode(body) != nil || init.AuthMechanism != "SCRAM-SHA-256" {
		return errors.New("scram: expected SASLInitialResponse for SCRAM-SHA-256")
	}
	out, err := conv.Step(string(init.Data))
	if err != nil {
		return fmt.Errorf("scram: %w", err)
	}
	if err := c.send(&pgproto3.AuthenticationSASLContinue{Data: []byte(out)}); err != nil {
		return err
	}
	typ, body, err = c.r.Message()
	if err != nil {
		return err
	}
	var resp pgproto3.SASLResponse
	if typ != 'p' || resp.Decode(body) != nil {
		return errors.New("scram: expected SASLResponse")
	}
	out, err = conv.Step(string(resp.Data))
	if err != nil || !conv.Valid() {
		return fmt.Errorf("scram: wrong password: %v", err)
	}
	return c.send(&pgproto3.AuthenticationSASLFinal{Data: []byte(out)})
}

// resolveContext picks the client's SELinux context: its Unix peer label, else the
// first matching rule, else default_context.
func resolveContext(c *client, cfg *Config) (ctx, source string, ok bool) {
	if c.peerLabel != "" {
		return c.peerLabel, "peer", true
	}
	for i := range cfg.Context {
		if cfg.Context[i].matches(c) {
			return cfg.Context[i].Context, "rule", true
		}
	}
	if cfg.DefaultContext != "" {
		return cfg.DefaultContext, "default", true
	}
	return "", "", false
}

func (r *Rule) matches(c *client) bool {
	glob := func(pattern, v string) bool {
		if pattern == "" {
			return true
		}
		ok, _ := path.Match(pattern, v)
		return ok
	}
	if !glob(r.User, c.user) || !glob(r.Database, c.db) || !glob(r.ApplicationName, c.appName) {
		return false
	}
	if r.network != nil && (c.ip == nil || !r.network.Contains(c.ip)) {
		return false
	}
	if r.TLSSubject != "" {
		if c.tlsState == nil || len(c.tlsState.VerifiedChains) == 0 || !glob(r.TLSSubject, c.tlsState.PeerCertificates[0].Subject.String()) {
			return false
		}
	}
	return true
}

type loginError struct {
	code, msg, result string
	err               error
}

func (e *loginError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *loginError) Unwrap() error { return e.err }

var settingNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// login checks a server connection out for c, switches it to c's context, applies the
// client's startup settings and sends the welcome. Nothing of the client's is sent to
// the server before the switch has succeeded and been verified.
func (p *Proxy) login(ctx context.Context, c *client) (*serverConn, error) {
	st := p.state()
	cfg := st.cfg
	s, err := p.acquireServer(ctx, c)
	if err != nil {
		return nil, err
	}
	c.setServer(s)
	if l, _, _ := s.snapshot(); cfg.Tagging == TaggingOn && l != c.context {
		if err := p.switchTo(ctx, s, c); err != nil {
			c.setServer(nil)
			return nil, err
		}
	}
	if err := p.applySettings(ctx, s, c); err != nil {
		c.setServer(nil)
		p.discardServer(s)
		return nil, &loginError{code: sqlStateOr(err, "08006"), msg: "sepgadm: " + err.Error(), result: "server_error", err: err}
	}
	msgs := []pgproto3.BackendMessage{&pgproto3.AuthenticationOk{}}
	names := make([]string, 0, len(s.params))
	for k := range s.params {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		msgs = append(msgs, &pgproto3.ParameterStatus{Name: k, Value: s.params[k]})
	}
	msgs = append(msgs, &pgproto3.BackendKeyData{ProcessID: c.cancelPID, SecretKey: c.cancelSecret}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := c.send(msgs...); err != nil {
		c.setServer(nil)
		p.releaseServer(s, true)
		return nil, err
	}
	return s, nil
}

// acquireServer checks a server connection out of the client's (database, user) pool,
// preferring one already labelled for the client, within query_wait_timeout.
func (p *Proxy) acquireServer(ctx context.Context, c *client) (*serverConn, error) {
	st := p.state()
	if c.pool == nil {
		c.pool = p.pool(c.db, c.user) // pools live as long as the proxy
	}
	s, err := c.pool.acquire(ctx, st.cfg.QueryWaitTimeout.Duration, c.context, &c.waiter, func(ctx context.Context) (*serverConn, error) {
		return dialServer(ctx, st.cfg, c.db, c.user, st.serverPassword(c.user))
	})
	if err != nil {
		code := sqlStateOr(err, "08006")
		if errors.Is(err, ErrCredentialWouldBeLogged) {
			code = "55000"
		}
		return nil, &loginError{code: code, msg: "sepgadm: could not get a server connection: " + err.Error(), result: "server_error", err: err}
	}
	return s, nil
}

// switchTo switches s to the client's context, after resetting it if another client
// used it (the reset and the switch go in one write), and logs the switch in the
// session log. On failure s is closed and the error, a *loginError, carries the
// server's SQLSTATE; its message names the context asked for, never what the server
// returned.
func (p *Proxy) switchTo(ctx context.Context, s *serverConn, c *client) error {
	if err := p.tag(ctx, s, c.context, "client", !s.fresh); err != nil {
		p.discardServer(s)
		p.log.Warn("switch failed", "session", c.id, "backend_pid", s.pid, "context", c.context, "error", err)
		return &loginError{code: sqlStateOr(err, "42501"), msg: "sepgadm: could not switch the session to " + c.context + serverReason(err, "the switch was not confirmed"), result: "tag_failed", err: err}
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

// applySettings sets the client's startup parameters on the server session.
func (p *Proxy) applySettings(ctx context.Context, s *serverConn, c *client) error {
	var b strings.Builder
	settings := map[string]string{"application_name": c.appName}
	for k, v := range c.params {
		switch k {
		case "user", "database", "options", "replication":
			continue
		}
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !settingNameRE.MatchString(k) {
			return fmt.Errorf("unsupported startup parameter %q", k)
		}
		fmt.Fprintf(&b, "SET %s TO %s;", k, quoteLiteral(settings[k]))
	}
	defer func() {
		// What the client asked for, in the server's spelling (ParameterStatus).
		for _, k := range trackedParams {
			if v, ok := s.params[k]; ok {
				c.setDesired(k, v)
			}
		}
	}()
	if err := s.command(ctx, b.String()); err != nil {
		return fmt.Errorf("apply startup parameters: %w", err)
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

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
	if !containsFold(sql, base) && !containsFold(sql, "tag_switch") {
		return false // the common case, without allocating
	}
	norm := strings.Map(func(r rune) rune {
		if r == '"' || r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, strings.ToLower(sql))
	return strings.Contains(norm, fn) || strings.Contains(norm, base+"(") || strings.Contains(norm, "tag_switch")
}

func (c *client) record(event sessionlog.Event, backendPID uint32) sessionlog.Record {
	return sessionlog.Record{
		Event: event, SessionID: c.id, ClientAddr: c.addr, PeerPID: int(c.peerPID), PeerUID: c.peerUID,
		PeerLabel: c.peerLabel, OSUser: c.osUser, DBUser: c.user, Database: c.db,
		Context: c.context, ContextSource: c.source, BackendPID: int(backendPID), ApplicationName: c.appName,
	}
}
