package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sepgadm/sepgadm/trusted"
)

// state is everything a reload replaces at once.
type state struct {
	cfg      *Config
	userlist map[string]string
	secrets  map[string]secret // the userlist's entries, salted once per load
	token    string            // the tagging credential; never logged
	tls      []*tls.Config
}

// Proxy is a running sepgadm proxy.
type Proxy struct {
	log      *slog.Logger
	metrics  *metrics
	sessions *sessionLog

	st atomic.Pointer[state]

	mu        sync.Mutex
	pools     map[poolKey]*pool
	clients   map[*client]struct{}
	cancel    map[uint64]*client
	listeners []net.Listener
	draining  bool
	nextID    atomic.Uint64
	conns     atomic.Int64 // client connections, logged in or not
	clientWG  sync.WaitGroup
	shutdown  chan struct{}
	shutOnce  sync.Once
	ready     chan struct{}

	// clock is the coarse clock the per-transaction path reads (clock.go).
	clock clock
	// stmtKey keys the server-side names of clients' prepared statements; mockKey
	// the salts unknown users are challenged with.
	stmtKey, mockKey []byte
	authQuery        *authQuerier
}

// New prepares a proxy from a validated configuration: it reads the credential and
// userlist files and opens the session log. Run starts it.
func New(cfg *Config, logger *slog.Logger) (*Proxy, error) {
	st, err := loadState(cfg)
	if err != nil {
		return nil, err
	}
	sl, err := openSessionLog(cfg.SessionLog)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		log: logger, sessions: sl,
		pools: map[poolKey]*pool{}, clients: map[*client]struct{}{}, cancel: map[uint64]*client{},
		shutdown: make(chan struct{}), ready: make(chan struct{}),
		stmtKey: make([]byte, 32), mockKey: make([]byte, 32), authQuery: newAuthQuerier(),
	}
	if _, err := rand.Read(p.stmtKey); err != nil {
		return nil, err
	}
	if _, err := rand.Read(p.mockKey); err != nil {
		return nil, err
	}
	p.clock.set(time.Now())
	p.metrics = newMetrics(func() float64 {
		n := 0
		for _, pl := range p.poolList() {
			pl.mu.Lock()
			n += len(pl.all)
			pl.mu.Unlock()
		}
		return float64(n)
	})
	p.st.Store(st)
	return p, nil
}

func (p *Proxy) state() *state { return p.st.Load() }

func loadState(cfg *Config) (*state, error) {
	st := &state{cfg: cfg}
	if cfg.Tagging == TaggingOn {
		tok, err := trusted.ReadTokenFile(cfg.CredentialFile)
		if err != nil {
			return nil, fmt.Errorf("credential_file: %w", err)
		}
		st.token = tok
	}
	if cfg.Auth.Userlist != "" {
		ul, err := loadUserlist(cfg.Auth.Userlist)
		if err != nil {
			return nil, err
		}
		st.userlist = ul
		st.secrets = map[string]secret{}
		for user, v := range ul {
			sec, err := parseSecret(v)
			if err != nil {
				return nil, fmt.Errorf("userlist %s: user %q: %w", cfg.Auth.Userlist, user, err)
			}
			st.secrets[user] = sec
		}
	}
	for i, l := range cfg.Listen {
		var tc *tls.Config
		if l.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(l.TLSCert, l.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("listen[%d]: load TLS certificate: %w", i, err)
			}
			tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			if l.TLSCA != "" {
				pem, err := os.ReadFile(l.TLSCA)
				if err != nil {
					return nil, fmt.Errorf("listen[%d]: read tls_ca: %w", i, err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("listen[%d]: tls_ca %s holds no certificate", i, l.TLSCA)
				}
				tc.ClientCAs = pool
				tc.ClientAuth = tls.VerifyClientCertIfGiven
			}
		}
		st.tls = append(st.tls, tc)
	}
	return st, nil
}

// Ready is closed once every listener accepts connections.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// Addrs lists the listeners' addresses (after Ready).
func (p *Proxy) Addrs() []net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []net.Addr
	for _, l := range p.listeners {
		out = append(out, l.Addr())
	}
	return out
}

// Run listens and serves until ctx ends (stop now), Drain finishes, or an admin
// SHUTDOWN. It returns after every client and server connection is closed.
func (p *Proxy) Run(ctx context.Context) error {
	st := p.state()
	cfg := st.cfg
	if cfg.Tagging == TaggingOff {
		p.log.Warn("tagging is off: sepgadm runs as a plain pooler and every query runs under the proxy's own SELinux label")
	}
	for i, l := range cfg.Listen {
		ln, err := listen(l)
		if err != nil {
			p.closeListeners()
			return err
		}
		p.mu.Lock()
		p.listeners = append(p.listeners, ln)
		p.mu.Unlock()
		p.log.Info("listening", "address", ln.Addr().String(), "auth", l.Auth, "tls", st.tls[i] != nil)
		go p.accept(ln, i)
	}
	metricsSrv, err := p.serveMetrics(cfg)
	if err != nil {
		p.closeListeners()
		return err
	}
	close(p.ready)

	reaper := time.NewTicker(time.Second)
	defer reaper.Stop()
	ticker := time.NewTicker(clockTick)
	defer ticker.Stop()
	stopNow := false
loop:
	for {
		select {
		case <-ctx.Done():
			stopNow = true
			break loop
		case <-p.shutdown:
			break loop
		case now := <-ticker.C:
			p.clock.set(now)
		case <-reaper.C:
			cfg := p.state().cfg
			for _, pl := range p.poolList() {
				pl.reap(cfg.ServerIdleTimeout.Duration, cfg.ServerLifetime.Duration)
			}
		}
	}
	p.closeListeners()
	if stopNow {
		p.mu.Lock()
		for c := range p.clients {
			c.kill()
		}
		p.mu.Unlock()
	}
	p.clientWG.Wait()
	for _, pl := range p.poolList() {
		pl.closeIdle()
	}
	p.authQuery.close()
	if metricsSrv != nil {
		_ = metricsSrv.Close()
	}
	p.log.Info("stopped")
	return p.sessions.close()
}

func listen(l Listener) (net.Listener, error) {
	if l.Address != "" {
		ln, err := net.Listen("tcp", l.Address)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", l.Address, err)
		}
		return ln, nil
	}
	if err := os.MkdirAll(l.UnixSocketDir, 0o755); err != nil {
		return nil, fmt.Errorf("unix_socket_dir: %w", err)
	}
	path := filepath.Join(l.UnixSocketDir, ".s.PGSQL."+strconv.Itoa(l.Port))
	// A socket file left by a previous run that is no longer served.
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("listen on %s: another server is already listening there", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return ln, nil
}

func (p *Proxy) closeListeners() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.listeners {
		_ = l.Close()
	}
	p.listeners = nil
}

func (p *Proxy) accept(ln net.Listener, idx int) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("accept", "error", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		if p.draining {
			p.mu.Unlock()
			conn.Close()
			continue
		}
		p.clientWG.Add(1)
		p.mu.Unlock()
		go func() {
			defer p.clientWG.Done()
			p.serveClient(conn, idx)
		}()
	}
}

// serveMetrics serves Prometheus metrics (and pprof, when asked for) on
// metrics_listen; nil when it is not set.
func (p *Proxy) serveMetrics(cfg *Config) (*http.Server, error) {
	if cfg.MetricsListen == "" {
		return nil, nil
	}
	ml, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(p.metrics.reg, promhttp.HandlerOpts{}))
	if cfg.DebugPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ml) }()
	p.log.Info("metrics", "address", ml.Addr().String())
	return srv, nil
}

// Reload re-reads the configuration file, the credential and the userlist; clients
// stay connected. Listener and server addresses keep their old values until restart.
func (p *Proxy) Reload() error {
	old := p.state()
	cfg, err := LoadConfig(old.cfg.file)
	if err != nil {
		return err
	}
	st, err := loadState(cfg)
	if err != nil {
		return err
	}
	cfg.Listen, st.tls = old.cfg.Listen, old.tls
	p.st.Store(st)
	p.log.Info("configuration reloaded", "file", cfg.file, "rules", len(cfg.Context), "tagging", cfg.Tagging)
	return nil
}

// Drain stops accepting clients and lets connected ones finish for up to timeout, then
// closes the rest; Run then returns.
func (p *Proxy) Drain(timeout time.Duration) {
	p.mu.Lock()
	p.draining = true
	p.mu.Unlock()
	p.closeListeners()
	p.log.Info("draining", "timeout", timeout.String())
	done := make(chan struct{})
	go func() { p.clientWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		p.mu.Lock()
		n := len(p.clients)
		for c := range p.clients {
			c.kill()
		}
		p.mu.Unlock()
		p.log.Warn("drain timeout: closed remaining clients", "clients", n)
	}
	p.Shutdown()
}

// Shutdown makes Run return (after clients are gone).
func (p *Proxy) Shutdown() { p.shutOnce.Do(func() { close(p.shutdown) }) }

func (p *Proxy) poolList() []*pool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*pool, 0, len(p.pools))
	for _, pl := range p.pools {
		out = append(out, pl)
	}
	return out
}

func (p *Proxy) pool(db, user string) *pool {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := poolKey{db, user}
	pl, ok := p.pools[k]
	if !ok {
		size := p.state().cfg.DefaultPoolSize
		if u, ok := p.state().cfg.Users[user]; ok && u.PoolSize > 0 {
			size = u.PoolSize
		}
		pl = newPool(k, size, &p.clock)
		p.pools[k] = pl
	}
	return pl
}

// newCancelKey gives a client its own cancel key (pid + secret), never a server's.
func (p *Proxy) newCancelKey(c *client) (pid uint32, secret []byte) {
	for {
		// Protocol 3.0 keys are 4 bytes: libpq rejects a longer BackendKeyData.
		var b [8]byte
		_, _ = rand.Read(b[:])
		pid = binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		secret = append([]byte(nil), b[4:8]...)
		k := cancelMapKey(pid, secret)
		p.mu.Lock()
		if _, taken := p.cancel[k]; !taken {
			p.cancel[k] = c
			p.mu.Unlock()
			return pid, secret
		}
		p.mu.Unlock()
	}
}

// cancelMapKey indexes p.cancel: the pid and the first 4 bytes of the secret (the whole
// secret is compared on use).
func cancelMapKey(pid uint32, secret []byte) uint64 {
	return uint64(pid)<<32 | uint64(binary.BigEndian.Uint32(secret[:4]))
}

func (p *Proxy) handleCancel(pid uint32, key []byte) {
	if len(key) < 4 {
		return
	}
	p.mu.Lock()
	c := p.cancel[cancelMapKey(pid, key)]
	p.mu.Unlock()
	if c == nil || string(c.cancelSecret) != string(key) {
		return
	}
	c.rl.cancel()
}
