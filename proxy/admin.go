package proxy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sepgadm/sepgadm/proxy/wire"
)

// adminDatabase is the virtual database of the admin console.
const adminDatabase = "sepgadm"

// serveAdmin runs the admin console for c (simple query protocol only).
func (p *Proxy) serveAdmin(c *client) {
	_ = c.send(&pgproto3.AuthenticationOk{},
		&pgproto3.ParameterStatus{Name: "server_version", Value: "15 (sepgadm admin console)"},
		&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"},
		&pgproto3.ParameterStatus{Name: "DateStyle", Value: "ISO, MDY"},
		&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "on"},
		&pgproto3.BackendKeyData{ProcessID: c.cancelPID, SecretKey: c.cancelSecret},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	c.state.Store("admin")
	for {
		typ, body, err := c.r.Message()
		if err != nil || typ == 'X' {
			return
		}
		if typ != 'Q' {
			c.fatal("08P01", "sepgadm: the admin console speaks the simple query protocol only")
			return
		}
		sql := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(wire.QueryText(typ, body)), ";"))
		msgs := p.adminCommand(sql)
		msgs = append(msgs, &pgproto3.ReadyForQuery{TxStatus: 'I'})
		if err := c.send(msgs...); err != nil {
			return
		}
	}
}

func (p *Proxy) adminCommand(sql string) []pgproto3.BackendMessage {
	fields := strings.Fields(strings.ToUpper(sql))
	if len(fields) == 0 {
		return []pgproto3.BackendMessage{&pgproto3.EmptyQueryResponse{}}
	}
	errMsg := func(format string, args ...any) []pgproto3.BackendMessage {
		return []pgproto3.BackendMessage{&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42601", Message: fmt.Sprintf(format, args...)}}
	}
	switch {
	case len(fields) == 2 && fields[0] == "SHOW":
		switch fields[1] {
		case "CLIENTS":
			return p.showClients()
		case "SERVERS":
			return p.showServers()
		case "POOLS":
			return p.showPools()
		case "STATS":
			return p.showStats()
		case "CONFIG":
			return p.showConfig()
		}
		return errMsg("sepgadm: unknown SHOW %s (CLIENTS, SERVERS, POOLS, STATS, CONFIG)", fields[1])
	case fields[0] == "RELOAD" && len(fields) == 1:
		if err := p.Reload(); err != nil {
			return errMsg("sepgadm: reload failed: %v", err)
		}
		return complete("RELOAD")
	case (fields[0] == "PAUSE" || fields[0] == "RESUME") && len(fields) <= 2:
		db := ""
		if len(fields) == 2 {
			db = strings.Fields(sql)[1]
		}
		n := 0
		for _, pl := range p.poolList() {
			if db == "" || pl.key.db == db {
				pl.setPaused(fields[0] == "PAUSE")
				n++
			}
		}
		p.log.Info("admin "+strings.ToLower(fields[0]), "database", db, "pools", n)
		return complete(fields[0])
	case fields[0] == "SHUTDOWN" && len(fields) == 1:
		go p.Drain(p.state().cfg.ShutdownTimeout.Duration)
		return complete("SHUTDOWN")
	}
	return errMsg("sepgadm: unknown admin command %q", sql)
}

func complete(tag string) []pgproto3.BackendMessage {
	return []pgproto3.BackendMessage{&pgproto3.CommandComplete{CommandTag: []byte(tag)}}
}

// table renders rows as a text result set.
func table(cols []string, rows [][]string) []pgproto3.BackendMessage {
	fields := make([]pgproto3.FieldDescription, len(cols))
	for i, c := range cols {
		fields[i] = pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	msgs := []pgproto3.BackendMessage{&pgproto3.RowDescription{Fields: fields}}
	for _, r := range rows {
		vals := make([][]byte, len(r))
		for i, v := range r {
			vals[i] = []byte(v)
		}
		msgs = append(msgs, &pgproto3.DataRow{Values: vals})
	}
	return append(msgs, &pgproto3.CommandComplete{CommandTag: []byte("SHOW " + strconv.Itoa(len(rows)))})
}

func (p *Proxy) showClients() []pgproto3.BackendMessage {
	p.mu.Lock()
	var rows [][]string
	for c := range p.clients {
		pid := ""
		if s := c.currentServer(); s != nil {
			pid = strconv.Itoa(int(s.pid))
		}
		st, _ := c.state.Load().(string)
		rows = append(rows, []string{c.id, c.addr, c.user, c.db, c.context, c.source, st, pid, c.peerLabel,
			c.connectedAt.UTC().Format(time.RFC3339)})
	}
	p.mu.Unlock()
	sort.Slice(rows, func(i, j int) bool { return rows[i][0] < rows[j][0] })
	return table([]string{"session", "address", "user", "database", "context", "context_source", "state", "server_pid", "peer_label", "connect_time"}, rows)
}

func (p *Proxy) showServers() []pgproto3.BackendMessage {
	var rows [][]string
	for _, pl := range p.poolList() {
		pl.mu.Lock()
		for s := range pl.all {
			label, state, _ := s.snapshot()
			rows = append(rows, []string{strconv.Itoa(int(s.pid)), pl.key.db, pl.key.user, label, state,
				time.Since(s.created).Round(time.Second).String()})
		}
		pl.mu.Unlock()
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i][0] < rows[j][0] })
	return table([]string{"pid", "database", "user", "label", "state", "age"}, rows)
}

func (p *Proxy) showPools() []pgproto3.BackendMessage {
	var rows [][]string
	for _, pl := range p.poolList() {
		pl.mu.Lock()
		rows = append(rows, []string{pl.key.db, pl.key.user, strconv.Itoa(pl.size), strconv.Itoa(len(pl.all)),
			strconv.Itoa(len(pl.idle)), strconv.Itoa(len(pl.all) - len(pl.idle)), strconv.Itoa(len(pl.waiters)), strconv.FormatBool(pl.paused)})
		pl.mu.Unlock()
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i][0]+rows[i][1] < rows[j][0]+rows[j][1] })
	return table([]string{"database", "user", "pool_size", "servers", "idle", "active", "waiting", "paused"}, rows)
}

func (p *Proxy) showStats() []pgproto3.BackendMessage {
	m := p.metrics
	avg := time.Duration(0)
	if n := m.nTags.Load(); n > 0 {
		avg = time.Duration(m.tagNanos.Load() / n)
	}
	row := []string{strconv.FormatInt(m.nTags.Load(), 10), strconv.FormatInt(m.nTagFailures.Load(), 10),
		strconv.FormatInt(avg.Microseconds(), 10), strconv.FormatInt(m.nQueries.Load(), 10),
		strconv.FormatInt(m.nBytesIn.Load(), 10), strconv.FormatInt(m.nBytesOut.Load(), 10)}
	return table([]string{"tags", "tag_failures", "avg_tag_us", "ready_for_query", "bytes_received", "bytes_sent"}, [][]string{row})
}

func (p *Proxy) showConfig() []pgproto3.BackendMessage {
	cfg := *p.state().cfg
	users := make(map[string]User, len(cfg.Users))
	for name, u := range cfg.Users {
		if u.Password != "" {
			u.Password = "********"
		}
		users[name] = u
	}
	cfg.Users = users
	if cfg.Auth.AuthPassword != "" {
		cfg.Auth.AuthPassword = "********"
	}
	var b strings.Builder
	_ = toml.NewEncoder(&b).Encode(cfg)
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if k, v, ok := strings.Cut(line, " = "); ok && !strings.HasPrefix(k, " ") {
			rows = append(rows, []string{strings.TrimSpace(k), v})
		}
	}
	return table([]string{"key", "value"}, rows)
}
