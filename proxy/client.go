package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/opencontainers/selinux/go-selinux"
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

	// startupParams is the client's startup packet (without user and database), as the
	// proxy logs in with it in session mode; startupSettings the same as settings
	// (options parsed), startupKeys their names in order; startupKey names the packet:
	// a server connection with the same key needs nothing applied.
	startupParams   map[string]string
	startupSettings map[string]string
	startupKeys     []string
	startupKey      string

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
	c := &client{p: p, conn: conn, connectedAt: time.Now(), id: strconv.FormatUint(p.nextID.Add(1), 10)}
	c.rl = &relay{c: c, txn: cfg.PoolMode == PoolTransaction, stmts: map[string]clientStmt{}, clean: map[string]struct{}{}}
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
	if !c.startup(st.tls[idx]) {
		return
	}
	if full {
		p.metrics.logins.WithLabelValues("refused").Inc()
		c.fatal("53300", "sepgadm: no more connections allowed (max_client_conn)")
		return
	}
	p.register(c)
	defer p.unregister(c)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.ClientLoginTimeout.Duration)
	defer cancel()
	if !p.admit(ctx, c, cfg.Listen[idx]) {
		return
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

// startup learns who the client is (address, peer credentials) and reads its startup
// packet; false when it went away or only cancelled something.
func (c *client) startup(tlsCfg *tls.Config) bool {
	switch a := c.conn.RemoteAddr().(type) {
	case *net.TCPAddr:
		c.addr, c.ip = a.String(), a.IP
	default:
		c.addr, c.unix = "unix", true
		c.readPeer()
	}
	startup, err := c.negotiate(tlsCfg)
	if err != nil || startup == nil {
		if err != nil && !errors.Is(err, io.EOF) {
			c.p.log.Debug("client startup", "client", c.addr, "error", err)
		}
		return false
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
	return true
}

// register makes c visible to the admin console and gives it its cancel key.
func (p *Proxy) register(c *client) {
	p.mu.Lock()
	p.clients[c] = struct{}{}
	p.mu.Unlock()
	p.metrics.clients.Inc()
	c.cancelPID, c.cancelSecret = p.newCancelKey(c)
}

func (p *Proxy) unregister(c *client) {
	p.mu.Lock()
	delete(p.clients, c)
	delete(p.cancel, cancelMapKey(c.cancelPID, c.cancelSecret))
	p.mu.Unlock()
	p.metrics.clients.Dec()
}

// admit authenticates c and finds its context; false when c was refused, or served by
// the admin console.
func (p *Proxy) admit(ctx context.Context, c *client, l Listener) bool {
	cfg := p.state().cfg
	refuse := func(result, code, msg string) bool {
		p.metrics.logins.WithLabelValues(result).Inc()
		c.fatal(code, msg)
		return false
	}
	if err := p.authenticate(ctx, c, l); err != nil {
		p.log.Info("authentication failed", "client", c.addr, "user", c.user, "database", c.db, "error", err)
		return refuse("auth_failed", "28P01", fmt.Sprintf("sepgadm: authentication failed for user %q", c.user))
	}
	c.r.SetMax(cfg.MaxMessageSize)
	if c.db == adminDatabase {
		switch {
		case !l.AdminAllowed():
			return refuse("refused", "28000", "sepgadm: the admin console is not served on this listener")
		case !slices.Contains(cfg.AdminUsers, c.user):
			return refuse("refused", "28000", fmt.Sprintf("sepgadm: user %q is not an admin user", c.user))
		}
		_ = c.conn.SetDeadline(time.Time{})
		p.serveAdmin(c)
		return false
	}
	if cfg.Tagging == TaggingOn {
		var ok bool
		if c.context, c.source, ok = resolveContext(c, cfg); !ok {
			p.log.Warn("client refused: no SELinux context", "client", c.addr, "user", c.user, "database", c.db)
			return refuse("no_context", "28000", "sepgadm: no SELinux context for this client")
		}
	}
	return true
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
	if err := c.prepareStartup(c.rl.txn); err != nil {
		return nil, &loginError{code: "0A000", msg: "sepgadm: " + err.Error(), result: "refused", err: err}
	}
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
		return nil, &loginError{code: sqlStateOr(err, "0A000"), msg: "sepgadm: " + err.Error(), result: "server_error", err: err}
	}
	msgs := []pgproto3.BackendMessage{&pgproto3.AuthenticationOk{}}
	names := make([]string, 0, len(s.params))
	for k := range s.params {
		if k != "search_path" { // the proxy's own note: PostgreSQL 15 does not report it
			names = append(names, k)
		}
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
	// In session mode a connection must have logged in with the client's own startup
	// packet; in transaction mode any will do (the settings are applied).
	match := ""
	if !c.rl.txn {
		match = c.startupKey
	}
	s, err := c.pool.acquire(ctx, st.cfg.QueryWaitTimeout.Duration, c.context, match, &c.waiter, func(ctx context.Context) (*serverConn, error) {
		if c.rl.txn {
			return dialServer(ctx, st.cfg, c.db, c.user, st.serverPassword(c.user), nil, "")
		}
		return dialServer(ctx, st.cfg, c.db, c.user, st.serverPassword(c.user), c.startupParams, c.startupKey)
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

// prepareStartup reads the client's startup packet for the server: the parameters to
// log in with (session mode passes them in the server's own startup packet, so that
// RESET returns to them as on a direct connection), and the same as settings to apply
// with set_config (transaction mode, on a connection logged in for someone else).
// What the proxy cannot honour is refused.
func (c *client) prepareStartup(txn bool) error {
	params := map[string]string{}
	for k, v := range c.params {
		switch k {
		case "user", "database":
			continue
		case "replication":
			if b, ok := parseBool(v); !ok || b {
				return fmt.Errorf("replication connections (replication=%s) are not served through sepgadm", v)
			}
			continue
		}
		if !settingNameRE.MatchString(k) {
			return fmt.Errorf("unsupported startup parameter %q", k)
		}
		params[k] = v
	}
	// options ("-c name=value --name=value") first: the server, too, lets the startup
	// packet's own parameters override it.
	settings, err := parseStartupOptions(params["options"])
	if err != nil && txn {
		return err // session mode hands options to the server, which judges them
	}
	if settings == nil {
		settings = map[string]string{}
	}
	if _, ok := settings["application_name"]; !ok {
		settings["application_name"] = c.appName // a reused connection's is not the client's
	}
	for k, v := range params {
		if k != "options" {
			settings[k] = v
		}
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		if !settingNameRE.MatchString(k) {
			return fmt.Errorf("unsupported setting %q in options", k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	c.startupParams, c.startupSettings, c.startupKeys = params, settings, keys
	// application_name is left out of the key: clients that differ only by it share
	// connections, and theirs is set after login.
	names := slices.Sorted(maps.Keys(params))
	var key strings.Builder
	key.WriteString("packet:") // never "", the key of a connection the proxy logged in for itself
	for _, k := range names {
		if k == "application_name" {
			continue
		}
		key.WriteString(k + "=" + params[k] + "\x00")
	}
	c.startupKey = key.String()
	return nil
}

// applySettings gives the server session the client's startup settings, unless it
// logged in with them (or had them applied) already.
func (p *Proxy) applySettings(ctx context.Context, s *serverConn, c *client) error {
	defer func() {
		// What the client asked for, in the server's spelling (ParameterStatus);
		// search_path, which PostgreSQL 15 does not report, as the client gave it.
		for _, k := range trackedParams {
			if v, ok := s.params[k]; ok {
				c.setDesired(k, v)
			}
		}
		if v, ok := c.startupSettings["search_path"]; ok {
			c.setDesired("search_path", v)
			s.setParam("search_path", v)
		}
	}()
	if s.startupKey == c.startupKey {
		if s.params["application_name"] == c.startupSettings["application_name"] {
			return nil
		}
		return s.setConfig(ctx, []string{"application_name"}, c.startupSettings)
	}
	if err := s.setConfig(ctx, c.startupKeys, c.startupSettings); err != nil {
		return fmt.Errorf("apply startup parameters: %w", err)
	}
	s.startupKey = c.startupKey
	return nil
}

// parseStartupOptions reads the startup parameter options the way PostgreSQL does:
// arguments separated by unescaped white space (a backslash escapes the next byte),
// each "-c name=value", "-cname=value" or "--name=value" (dashes in the name become
// underscores). Any other server option is refused: the proxy cannot honour it.
func parseStartupOptions(opts string) (map[string]string, error) {
	var args []string
	var cur strings.Builder
	inArg := false
	for i := 0; i < len(opts); i++ {
		ch := opts[i]
		switch {
		case ch == '\\' && i+1 < len(opts):
			i++
			cur.WriteByte(opts[i])
			inArg = true
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(ch)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		var kv string
		switch {
		case a == "-c" && i+1 < len(args):
			i++
			kv = args[i]
		case strings.HasPrefix(a, "-c") && len(a) > 2:
			kv = a[2:]
		case strings.HasPrefix(a, "--") && len(a) > 2:
			kv = a[2:]
		default:
			return nil, fmt.Errorf("startup option %q is not supported through sepgadm (only -c name=value and --name=value)", a)
		}
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("startup option %q: want name=value", kv)
		}
		out[strings.ReplaceAll(name, "-", "_")] = value
	}
	return out, nil
}

// parseBool reads a boolean as PostgreSQL spells it.
func parseBool(v string) (value, ok bool) {
	switch strings.ToLower(v) {
	case "on", "true", "yes", "1", "t", "y":
		return true, true
	case "off", "false", "no", "0", "f", "n":
		return false, true
	}
	return false, false
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (c *client) record(event sessionlog.Event, backendPID uint32) sessionlog.Record {
	return sessionlog.Record{
		Event: event, SessionID: c.id, ClientAddr: c.addr, PeerPID: int(c.peerPID), PeerUID: c.peerUID,
		PeerLabel: c.peerLabel, OSUser: c.osUser, DBUser: c.user, Database: c.db,
		Context: c.context, ContextSource: c.source, BackendPID: int(backendPID), ApplicationName: c.appName,
	}
}
