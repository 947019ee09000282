package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sepgadm/sepgadm/secontext"
	"github.com/sepgadm/sepgadm/trusted"
)

// PoolMode is how long a server connection serves one client.
type PoolMode string

// The pool modes.
const (
	PoolSession     PoolMode = "session"     // the client's whole session
	PoolTransaction PoolMode = "transaction" // one transaction; released at ReadyForQuery 'I'
)

// Tagging says whether the proxy switches server sessions to its clients' contexts.
type Tagging string

// The tagging settings.
const (
	TaggingOn  Tagging = "on"
	TaggingOff Tagging = "off" // a plain pooler, for servers without sepgsql
)

// VerifyLabel says when the proxy confirms a reused connection's label.
type VerifyLabel string

// The verify_label settings.
const (
	VerifyOnSwitch VerifyLabel = "on_switch" // trust the label the last switch returned
	VerifyAlways   VerifyLabel = "always"    // confirm with sepgsql_getcon() before reuse
)

// Config is sepgadm.toml. Zero values take the defaults setDefaults gives, PgBouncer's
// where PgBouncer has the setting.
type Config struct {
	// PoolMode is "session" (a server connection per client for its whole session) or
	// "transaction" (a server connection per transaction, released at ReadyForQuery 'I').
	PoolMode PoolMode `toml:"pool_mode"`
	// VerifyLabel "on_switch" trusts the label the last switch returned; "always" also
	// confirms it with sepgsql_getcon() before reusing a connection already labelled for
	// the client (catches clients that changed their own label).
	VerifyLabel VerifyLabel `toml:"verify_label"`
	// EventLoop is kept only to refuse "on" with a clear message: the experimental
	// event loop was removed (one relay to secure and to read).
	EventLoop string `toml:"event_loop"`
	// ServerResetQuery runs before a server connection passes to a client of another
	// label (transaction mode) or back to the pool (session mode). It must drop every
	// piece of session state: the default, DISCARD ALL, does.
	ServerResetQuery string `toml:"server_reset_query"`
	// Tagging "on" switches each server session to the client's context; "off" makes a
	// plain pooler for servers without sepgsql.
	Tagging Tagging `toml:"tagging"`
	// TagFunction is the switch function, called as SELECT <fn>($1, $2).
	TagFunction string `toml:"tag_function"`
	// CredentialFile holds the tagging token (mode 0600).
	CredentialFile string `toml:"credential_file"`
	// DefaultContext is the context of clients no rule matches ("" refuses them).
	DefaultContext string `toml:"default_context"`

	Listen  []Listener          `toml:"listen"`
	Server  Server              `toml:"server"`
	Auth    Auth                `toml:"auth"`
	Users   map[string]User     `toml:"users"`
	PeerMap map[string][]string `toml:"peer_map"`
	Context []Rule              `toml:"context"`

	AdminUsers    []string `toml:"admin_users"`
	MetricsListen string   `toml:"metrics_listen"`
	// DebugPprof serves net/http/pprof under /debug/pprof/ on metrics_listen.
	DebugPprof bool   `toml:"debug_pprof"`
	SessionLog string `toml:"session_log"`
	LogLevel   string `toml:"log_level"`

	MaxClientConn        int      `toml:"max_client_conn"`
	DefaultPoolSize      int      `toml:"default_pool_size"`
	MaxMessageSize       int      `toml:"max_message_size"`
	ServerConnectTimeout Duration `toml:"server_connect_timeout"`
	QueryWaitTimeout     Duration `toml:"query_wait_timeout"`
	ServerIdleTimeout    Duration `toml:"server_idle_timeout"`
	ServerLifetime       Duration `toml:"server_lifetime"`
	ClientLoginTimeout   Duration `toml:"client_login_timeout"`
	// IdleTransactionTimeout closes a client that stays idle inside a transaction
	// longer, freeing its server connection (0: never). ClientIdleTimeout closes a
	// client idle outside a transaction longer (0: never). PgBouncer's names.
	IdleTransactionTimeout Duration `toml:"idle_transaction_timeout"`
	ClientIdleTimeout      Duration `toml:"client_idle_timeout"`
	// QueryTimeout ends a client whose request the server has not answered for this
	// long, and closes the server connection (0: never). Keep it a little above the
	// server's statement_timeout, for network trouble. PgBouncer's name.
	QueryTimeout Duration `toml:"query_timeout"`
	// MaxPreparedStatements caps the named prepared statements one client may hold in
	// transaction mode.
	MaxPreparedStatements int      `toml:"max_prepared_statements"`
	ShutdownTimeout       Duration `toml:"shutdown_timeout"`

	// file is where the configuration was read from, for messages.
	file string
}

// Listener is one endpoint clients connect to: TCP (Address) or a Unix-socket
// directory (UnixSocketDir + Port, socket .s.PGSQL.<port> so that psql -h DIR works).
type Listener struct {
	Address       string `toml:"address"`
	UnixSocketDir string `toml:"unix_socket_dir"`
	Port          int    `toml:"port"`
	// Auth is trust, scram-sha-256, peer (Unix only) or cert (TLS client certificate).
	Auth    string `toml:"auth"`
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// TLSCA verifies client certificates (needed by auth = "cert").
	TLSCA string `toml:"tls_ca"`
	// Admin serves the admin console (the virtual database "sepgadm") on this
	// listener. Default: on Unix sockets, off on TCP; never on a TCP trust listener.
	Admin *bool `toml:"admin"`
}

// AdminAllowed reports whether the listener serves the admin console.
func (l Listener) AdminAllowed() bool {
	if l.Address != "" && l.Auth == "trust" {
		return false
	}
	if l.Admin != nil {
		return *l.Admin
	}
	return l.UnixSocketDir != ""
}

// Server is the PostgreSQL server behind the proxy.
type Server struct {
	// Host is a Unix-socket directory (recommended: the backend's peer label is then the
	// proxy's domain) or a host name.
	Host string `toml:"host"`
	Port int    `toml:"port"`
}

// Auth says where SCRAM verifiers come from.
type Auth struct {
	// Userlist is a PgBouncer-style file of "user" "password-or-SCRAM-verifier" lines.
	Userlist string `toml:"userlist"`
	// AuthUser runs AuthQuery on the server to look a verifier up.
	AuthUser     string `toml:"auth_user"`
	AuthPassword string `toml:"auth_password"`
	AuthQuery    string `toml:"auth_query"`
}

// User is how the proxy logs in to PostgreSQL as a database user.
type User struct {
	Password string `toml:"password"`
	PoolSize int    `toml:"pool_size"`
}

// Rule maps clients to an SELinux context. Empty fields match anything; user, database,
// tls_subject and application_name take shell patterns (*, ?, [..]); cidr a network.
type Rule struct {
	User            string `toml:"user"`
	Database        string `toml:"database"`
	CIDR            string `toml:"cidr"`
	TLSSubject      string `toml:"tls_subject"`
	ApplicationName string `toml:"application_name"`
	Context         string `toml:"context"`
	// ClientChosen must be set on a rule that matches only what a client chooses freely
	// (database, application_name): any client could then claim the context.
	ClientChosen bool `toml:"client_chosen"`

	network *net.IPNet
	line    int
}

// Duration is a TOML string such as "15s" or "10m".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("negative duration %s", b)
	}
	d.Duration = v
	return nil
}

// MarshalText prints it back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// ConfigError names the file, line and key of a configuration problem.
type ConfigError struct {
	File string
	Line int // 0 when unknown
	Key  string
	Msg  string
}

func (e *ConfigError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// LoadConfig reads and validates a configuration file.
func LoadConfig(file string) (*Config, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	defer f.Close()
	return ParseConfig(f, file)
}

// ParseConfig reads a configuration from r (named name in messages), rejects unknown
// keys, fills defaults and validates it.
func ParseConfig(r io.Reader, name string) (*Config, error) {
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read configuration %s: %w", name, err)
	}
	var cfg Config
	md, err := toml.Decode(string(src), &cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &ConfigError{File: name, Line: pe.Position.Line, Msg: pe.Message}
		}
		return nil, &ConfigError{File: name, Msg: err.Error()}
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return nil, &ConfigError{File: name, Line: lineOfKey(src, k), Key: k.String(), Msg: "unknown key"}
	}
	cfg.file = name
	cfg.setDefaults()
	ruleLines := linesOfTable(src, "context")
	for i := range cfg.Context {
		if i < len(ruleLines) {
			cfg.Context[i].line = ruleLines[i]
		}
	}
	if err := cfg.validate(src); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func (c *Config) setDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	defInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defDur := func(p *Duration, v time.Duration) {
		if p.Duration == 0 {
			p.Duration = v
		}
	}
	if c.PoolMode == "" {
		c.PoolMode = PoolSession
	}
	if c.VerifyLabel == "" {
		c.VerifyLabel = VerifyOnSwitch
	}
	if c.Tagging == "" {
		c.Tagging = TaggingOn
	}
	def(&c.EventLoop, "off")
	def(&c.ServerResetQuery, "DISCARD ALL")
	defInt(&c.MaxPreparedStatements, 1000)
	def(&c.TagFunction, trusted.TagFunctionName)
	def(&c.LogLevel, "info")
	def(&c.Server.Host, "/var/run/postgresql")
	defInt(&c.Server.Port, 5432)
	defInt(&c.MaxClientConn, 100)
	defInt(&c.DefaultPoolSize, 20)
	defInt(&c.MaxMessageSize, 64<<20)
	defDur(&c.ServerConnectTimeout, 15*time.Second)
	defDur(&c.QueryWaitTimeout, 120*time.Second)
	defDur(&c.ServerIdleTimeout, 600*time.Second)
	defDur(&c.ServerLifetime, 3600*time.Second)
	defDur(&c.ClientLoginTimeout, 15*time.Second)
	defDur(&c.ShutdownTimeout, 30*time.Second)
	if c.Auth.AuthUser != "" {
		def(&c.Auth.AuthQuery, "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1")
	}
	for i := range c.Listen {
		def(&c.Listen[i].Auth, "scram-sha-256")
		if c.Listen[i].UnixSocketDir != "" {
			defInt(&c.Listen[i].Port, 6432)
		}
	}
}

var tagFunctionRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

func (c *Config) validate(src []byte) error {
	bad := func(key, format string, args ...any) error {
		return &ConfigError{File: c.file, Line: lineOfKey(src, toml.Key(strings.Split(key, "."))), Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if c.PoolMode != PoolSession && c.PoolMode != PoolTransaction {
		return bad("pool_mode", "%q: want session or transaction", c.PoolMode)
	}
	if c.VerifyLabel != VerifyOnSwitch && c.VerifyLabel != VerifyAlways {
		return bad("verify_label", "%q: want on_switch or always", c.VerifyLabel)
	}
	if c.EventLoop != "off" {
		return bad("event_loop", "%q: the experimental event loop was removed; delete this line", c.EventLoop)
	}
	if len(scanSQL(c.ServerResetQuery)) == 0 {
		return bad("server_reset_query", "empty: a connection must be reset before it changes label")
	}
	if c.Tagging != TaggingOn && c.Tagging != TaggingOff {
		return bad("tagging", "%q: want on or off", c.Tagging)
	}
	if !tagFunctionRE.MatchString(c.TagFunction) {
		return bad("tag_function", "%q is not a (schema-qualified) function name", c.TagFunction)
	}
	if c.Tagging == TaggingOn && c.CredentialFile == "" {
		return bad("credential_file", "required when tagging is on")
	}
	if c.DefaultContext != "" {
		if err := CheckContext(c.DefaultContext); err != nil {
			return bad("default_context", "%v", err)
		}
	}
	if len(c.Listen) == 0 {
		return &ConfigError{File: c.file, Key: "listen", Msg: "no [[listen]] endpoint"}
	}
	lines := linesOfTable(src, "listen")
	for i := range c.Listen {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		if err := c.validateListener(i, line); err != nil {
			return err
		}
	}
	for i := range c.Context {
		if err := c.validateRule(i); err != nil {
			return err
		}
	}
	if c.MaxClientConn < 1 || c.DefaultPoolSize < 1 {
		return bad("max_client_conn", "max_client_conn and default_pool_size must be ≥ 1")
	}
	return nil
}

// validateListener checks [[listen]] number i, defined at line.
func (c *Config) validateListener(i, line int) error {
	l, key := c.Listen[i], fmt.Sprintf("listen[%d]", i)
	lbad := func(k, format string, args ...any) error {
		return &ConfigError{File: c.file, Line: line, Key: key + "." + k, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case l.Address == "" && l.UnixSocketDir == "":
		return lbad("address", "set address (TCP host:port) or unix_socket_dir")
	case l.Address != "" && l.UnixSocketDir != "":
		return lbad("address", "set address or unix_socket_dir, not both")
	}
	if l.Address != "" {
		if _, _, err := net.SplitHostPort(l.Address); err != nil {
			return lbad("address", "%v", err)
		}
	}
	if !slices.Contains([]string{"trust", "scram-sha-256", "peer", "cert"}, l.Auth) {
		return lbad("auth", "%q: want trust, scram-sha-256, peer or cert", l.Auth)
	}
	if l.Auth == "peer" && l.UnixSocketDir == "" {
		return lbad("auth", "peer works only on a unix_socket_dir listener")
	}
	if (l.TLSCert == "") != (l.TLSKey == "") {
		return lbad("tls_cert", "tls_cert and tls_key go together")
	}
	if l.Auth == "cert" && (l.TLSCert == "" || l.TLSCA == "") {
		return lbad("auth", "cert needs tls_cert, tls_key and tls_ca")
	}
	if l.Admin != nil && *l.Admin && l.Address != "" && l.Auth == "trust" {
		return lbad("admin", "the admin console is never served on a TCP listener with auth = \"trust\": anyone who can reach it could stop the proxy")
	}
	if l.Auth == "scram-sha-256" && c.Auth.Userlist == "" && c.Auth.AuthUser == "" {
		return lbad("auth", "scram-sha-256 needs [auth] userlist or auth_user")
	}
	return nil
}

// validateRule checks [[context]] rule number i and parses its network.
func (c *Config) validateRule(i int) error {
	r := &c.Context[i]
	rbad := func(k, format string, args ...any) error {
		return &ConfigError{File: c.file, Line: r.line, Key: fmt.Sprintf("context[%d].%s", i, k), Msg: fmt.Sprintf(format, args...)}
	}
	if r.Context == "" {
		return rbad("context", "missing")
	}
	if err := CheckContext(r.Context); err != nil {
		return rbad("context", "%v", err)
	}
	for k, p := range map[string]string{"user": r.User, "database": r.Database, "tls_subject": r.TLSSubject, "application_name": r.ApplicationName} {
		if _, err := path.Match(p, ""); err != nil {
			return rbad(k, "bad pattern %q: %v", p, err)
		}
	}
	if (r.Database != "" || r.ApplicationName != "") && r.User == "" && r.CIDR == "" && r.TLSSubject == "" && !r.ClientChosen {
		return rbad("context", "the rule matches only fields the client chooses itself (database, application_name): any client could claim %s; add user, cidr or tls_subject, or set client_chosen = true if that is intended", r.Context)
	}
	if r.CIDR != "" {
		_, n, err := net.ParseCIDR(r.CIDR)
		if err != nil {
			return rbad("cidr", "%v", err)
		}
		r.network = n
	}
	return nil
}

// lineOfKey finds the line that defines key (best effort: its table header, then the
// key's first assignment after it); 0 when not found.
func lineOfKey(src []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	start := 0
	if len(key) > 1 {
		table := strings.Join(key[:len(key)-1], ".")
		if lines := linesOfTable(src, table); len(lines) > 0 {
			start = lines[0]
		}
	}
	leaf := regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(key[len(key)-1]) + `"?\s*=`)
	sc := bufio.NewScanner(strings.NewReader(string(src)))
	for n := 1; sc.Scan(); n++ {
		if n >= start && leaf.MatchString(sc.Text()) {
			return n
		}
	}
	return start
}

// linesOfTable lists the lines of every [table] or [[table]] header named table.
func linesOfTable(src []byte, table string) []int {
	re := regexp.MustCompile(`^\s*\[\[?\s*` + regexp.QuoteMeta(table) + `\s*\]\]?`)
	var lines []int
	sc := bufio.NewScanner(strings.NewReader(string(src)))
	for n := 1; sc.Scan(); n++ {
		if re.MatchString(sc.Text()) {
			lines = append(lines, n)
		}
	}
	return lines
}

// CheckContext checks an SELinux context user:role:type[:range] with the parser the
// label manager uses (package secontext): s0, s0:c5,c7, s0-s0:c0.c1023; a range whose
// high level does not dominate its low is refused.
func CheckContext(ctx string) error {
	_, err := secontext.Parse(ctx)
	return err
}
