package audit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Audit record types with a meaning here.
const (
	TypeAVC             = "AVC"
	TypeUserAVC         = "USER_AVC"
	TypeSELinuxErr      = "SELINUX_ERR"
	TypeUserSELinuxErr  = "USER_SELINUX_ERR"
	TypeMACPolicyLoad   = "MAC_POLICY_LOAD"
	TypeMACStatus       = "MAC_STATUS"
	TypeMACConfigChange = "MAC_CONFIG_CHANGE"
	TypeSyscall         = "SYSCALL"
)

// auxTypes are records that only describe another record of the same event.
var auxTypes = map[string]bool{"PATH": true, "CWD": true, "PROCTITLE": true, "EOE": true,
	"SOCKADDR": true, "EXECVE": true, "BPRM_FCAPS": true, "MMAP": true, "FD_PAIR": true,
	"OBJ_PID": true, "IPC": true, "SOCKETCALL": true}

// joinWindow is how many events may wait for their SYSCALL record at once. The
// kernel writes an event's AVC records during the syscall and the SYSCALL record at its
// exit, so other events can come between them.
const joinWindow = 16

type eventKey struct {
	node   string
	sec    int64
	msec   int
	serial uint64
}

type group struct {
	key    eventKey
	events []*Event
}

// AuditReader reads SELinux events from a Linux audit log (raw or ENRICHED).
type AuditReader struct {
	lr     *lineReader
	rc     io.Closer
	name   string
	opts   Options
	stats  Stats
	groups []*group // waiting for SYSCALL records, oldest first
	out    []*Event // ready, in order
	intern map[string]string
	eof    bool
}

// NewAuditReader reads an audit log from r.
func NewAuditReader(r io.Reader, rc io.Closer, name string, opts Options) *AuditReader {
	return &AuditReader{lr: newLineReader(r, name), rc: rc, name: name, opts: opts, intern: make(map[string]string)}
}

// Stats returns the counts so far.
func (a *AuditReader) Stats() Stats { return a.stats }

// Close closes the underlying file.
func (a *AuditReader) Close() error {
	if a.rc != nil {
		return a.rc.Close()
	}
	return nil
}

func (a *AuditReader) bad(reason string) error {
	a.stats.bad(a.name, a.lr.n, reason)
	if a.opts.Strict {
		return fmt.Errorf("%s:%d: %s: %w", a.name, a.lr.n, reason, ErrMalformed)
	}
	return nil
}

// str returns b as a string, shared for repeated values (contexts, classes, comms).
func (a *AuditReader) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := a.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(a.intern) < 8192 && len(b) < 256 {
		a.intern[s] = s
	}
	return s
}

// Next returns the next event, or io.EOF.
func (a *AuditReader) Next() (*Event, error) {
	for {
		if len(a.out) > 0 {
			e := a.out[0]
			a.out[0] = nil
			a.out = a.out[1:]
			a.stats.Events++
			return e, nil
		}
		if a.eof {
			if len(a.groups) == 0 {
				return nil, io.EOF
			}
			a.flushOldest()
			continue
		}
		line, err := a.lr.next()
		if errors.Is(err, io.EOF) {
			a.eof = true
			continue
		}
		if err != nil {
			return nil, err
		}
		a.stats.Lines++
		if err := a.record(line); err != nil {
			return nil, err
		}
	}
}

func (a *AuditReader) flushOldest() {
	g := a.groups[0]
	a.groups[0] = nil
	a.groups = a.groups[1:]
	a.out = append(a.out, g.events...)
}

func (a *AuditReader) emit(key eventKey, e *Event) {
	if g := a.findGroup(key); g != nil {
		g.events = append(g.events, e)
		return
	}
	a.groups = append(a.groups, &group{key: key, events: []*Event{e}})
	for len(a.groups) > joinWindow {
		a.flushOldest()
	}
}

func (a *AuditReader) findGroup(key eventKey) *group {
	for i := len(a.groups) - 1; i >= 0; i-- {
		if a.groups[i].key == key {
			return a.groups[i]
		}
	}
	return nil
}

var (
	bNode      = []byte("node=")
	bType      = []byte("type=")
	bMsgAudit  = []byte(" msg=audit(")
	bAvc       = []byte("avc:")
	bMsgQuote  = []byte("msg='")
	enrichSep  = byte(0x1d)
	bComm      = []byte(" comm=")
	bExe       = []byte(" exe=")
	bPermissiv = []byte("permissive=")
)

// record parses one audit log line.
func (a *AuditReader) record(line []byte) error {
	if a.lr.cut {
		return a.bad("line longer than 4 MiB, cut")
	}
	if len(line) == 0 {
		return nil
	}
	rest := line
	var node []byte
	if bytes.HasPrefix(rest, bNode) {
		i := bytes.IndexByte(rest, ' ')
		if i < 0 {
			return a.bad("node= without a record")
		}
		node, rest = rest[len(bNode):i], rest[i+1:]
	}
	if !bytes.HasPrefix(rest, bType) {
		return a.bad("no type=")
	}
	i := bytes.Index(rest, bMsgAudit)
	if i < 0 {
		return a.bad("no msg=audit(")
	}
	typ := rest[len(bType):i]
	rest = rest[i+len(bMsgAudit):]
	sec, msec, serial, n, ok := parseStamp(rest)
	if !ok {
		return a.bad("bad msg=audit(SECONDS.MILLIS:SERIAL) stamp")
	}
	body := rest[n:]
	if j := bytes.IndexByte(body, enrichSep); j >= 0 {
		body = body[:j]
	}
	key := eventKey{node: a.str(node), sec: sec, msec: msec, serial: serial}
	typeStr := a.str(typ)
	switch typeStr {
	case TypeSyscall:
		g := a.findGroup(key)
		if g == nil {
			if a.opts.KeepOther {
				e := a.base(key, typeStr)
				e.PID = intField(body, "pid")
				e.Comm = a.untrusted(field(body, "comm"))
				e.Exe = a.untrusted(field(body, "exe"))
				a.emit(key, e)
			}
			return nil
		}
		comm := a.untrusted(fieldAfter(body, bComm))
		exe := a.untrusted(fieldAfter(body, bExe))
		for _, e := range g.events {
			if e.Comm == "" {
				e.Comm = comm
			}
			if e.Exe == "" {
				e.Exe = exe
			}
		}
		return nil
	case TypeAVC:
		e := a.base(key, typeStr)
		if err := a.parseAVC(body, e, false); err != nil {
			return a.bad(err.Error())
		}
		a.emit(key, e)
		return nil
	case TypeUserAVC:
		e := a.base(key, typeStr)
		e.PID = intField(body, "pid")
		j := bytes.Index(body, bMsgQuote)
		if j < 0 {
			return a.bad("USER_AVC without msg='")
		}
		inner := body[j+len(bMsgQuote):]
		if k := bytes.LastIndexByte(inner, '\''); k >= 0 {
			inner = inner[:k]
		}
		if !bytes.HasPrefix(bytes.TrimLeft(inner, " "), bAvc) {
			if a.opts.KeepOther {
				e.Name = string(inner)
				a.emit(key, e)
			}
			return nil
		}
		if err := a.parseAVC(inner, e, true); err != nil {
			return a.bad(err.Error())
		}
		a.emit(key, e)
		return nil
	case TypeSELinuxErr, TypeUserSELinuxErr:
		e := a.base(key, typeStr)
		e.SContext = a.str(field(body, "scontext"))
		e.TContext = a.str(field(body, "tcontext"))
		e.TClass = a.str(field(body, "tclass"))
		if string(field(body, "seresult")) == "denied" {
			e.Result = ResultDenied
		}
		e.Name = string(bytes.TrimSpace(body))
		a.emit(key, e)
		return nil
	case TypeMACStatus:
		e := a.base(key, typeStr)
		e.Name = "enforcing=" + string(field(body, "enforcing")) + " old_enforcing=" + string(field(body, "old_enforcing"))
		a.emit(key, e)
		return nil
	case TypeMACConfigChange:
		e := a.base(key, typeStr)
		e.Name = "bool=" + string(field(body, "bool")) + " val=" + string(field(body, "val")) + " old_val=" + string(field(body, "old_val"))
		a.emit(key, e)
		return nil
	case TypeMACPolicyLoad:
		e := a.base(key, typeStr)
		a.emit(key, e)
		return nil
	}
	if auxTypes[typeStr] {
		if a.findGroup(key) != nil || !a.opts.KeepOther {
			return nil
		}
	} else if !a.opts.KeepOther {
		return nil
	}
	e := a.base(key, typeStr)
	e.PID = intField(body, "pid")
	e.Name = string(bytes.TrimSpace(body))
	a.emit(key, e)
	return nil
}

func (a *AuditReader) base(key eventKey, typ string) *Event {
	return &Event{
		Time:       time.Unix(key.sec, int64(key.msec)*int64(time.Millisecond)).UTC(),
		Source:     SourceOS,
		Node:       key.node,
		RecordType: typ,
		Serial:     key.serial,
	}
}

// parseStamp reads "SECONDS.MILLIS:SERIAL): " and returns the bytes consumed.
func parseStamp(b []byte) (sec int64, msec int, serial uint64, n int, ok bool) {
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		sec = sec*10 + int64(b[i]-'0')
		i++
		if i > 18 {
			return 0, 0, 0, 0, false
		}
	}
	if i == 0 || i >= len(b) || b[i] != '.' {
		return 0, 0, 0, 0, false
	}
	i++
	d := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if d < 3 {
			msec = msec*10 + int(b[i]-'0')
		}
		d++
		i++
	}
	if d == 0 || i >= len(b) || b[i] != ':' {
		return 0, 0, 0, 0, false
	}
	for ; d < 3; d++ {
		msec *= 10
	}
	i++
	s := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		serial = serial*10 + uint64(b[i]-'0')
		i++
		if i-s > 19 {
			return 0, 0, 0, 0, false
		}
	}
	if i == s || i+1 >= len(b) || b[i] != ')' || b[i+1] != ':' {
		return 0, 0, 0, 0, false
	}
	i += 2
	if i < len(b) && b[i] == ' ' {
		i++
	}
	return sec, msec, serial, i, true
}

var errAVC = errors.New("AVC record: expected avc:  RESULT  { PERMS } for ...")

// parseAVC reads "avc:  denied  { p1 p2 } for  key=value ..." into e.
func (a *AuditReader) parseAVC(b []byte, e *Event, user bool) error {
	b = bytes.TrimLeft(b, " ")
	if !bytes.HasPrefix(b, bAvc) {
		return errAVC
	}
	b = bytes.TrimLeft(b[len(bAvc):], " ")
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 {
		return errAVC
	}
	switch string(b[:sp]) {
	case "denied":
		e.Result = ResultDenied
	case "granted":
		e.Result = ResultGranted
	default:
		return errAVC
	}
	b = bytes.TrimLeft(b[sp:], " ")
	if len(b) == 0 || b[0] != '{' {
		return errAVC
	}
	end := bytes.IndexByte(b, '}')
	if end < 0 {
		return errAVC
	}
	perms := b[1:end]
	b = b[end+1:]
	for len(perms) > 0 {
		perms = bytes.TrimLeft(perms, " ")
		k := bytes.IndexByte(perms, ' ')
		if k < 0 {
			k = len(perms)
		}
		if k > 0 {
			e.Perms = append(e.Perms, a.str(perms[:k]))
		}
		perms = perms[k:]
	}
	if len(e.Perms) == 0 {
		return errAVC
	}
	// Walk key=value pairs.
	for len(b) > 0 {
		b = bytes.TrimLeft(b, " ")
		eq := bytes.IndexByte(b, '=')
		if eq < 0 {
			break
		}
		k := b[:eq]
		if sp := bytes.IndexByte(k, ' '); sp >= 0 { // a bare word such as "for"
			b = b[sp+1:]
			continue
		}
		b = b[eq+1:]
		var v []byte
		quoted := false
		if len(b) > 0 && b[0] == '"' {
			q := bytes.IndexByte(b[1:], '"')
			if q < 0 {
				return errors.New("AVC record: unterminated quoted value")
			}
			v, b = b[1:1+q], b[q+2:]
			quoted = true
		} else {
			sp := bytes.IndexByte(b, ' ')
			if sp < 0 {
				sp = len(b)
			}
			v, b = b[:sp], b[sp:]
		}
		switch string(k) {
		case "pid":
			if !user {
				e.PID, _ = strconv.Atoi(string(v))
			}
		case "comm":
			e.Comm = a.maybeHex(v, quoted)
		case "exe":
			e.Exe = a.maybeHex(v, quoted)
		case "name", "path":
			if e.Name == "" || string(k) == "path" {
				e.Name = a.maybeHex(v, quoted)
			}
		case "scontext":
			e.SContext = a.str(v)
		case "tcontext":
			e.TContext = a.str(v)
		case "tclass":
			e.TClass = a.str(v)
		case "permissive":
			e.HasPermissive = true
			e.Permissive = len(v) == 1 && v[0] == '1'
		}
	}
	if e.SContext == "" || e.TContext == "" || e.TClass == "" {
		return errors.New("AVC record without scontext, tcontext or tclass")
	}
	return nil
}

// maybeHex decodes the kernel's hex encoding of untrusted strings (unquoted values).
func (a *AuditReader) maybeHex(v []byte, quoted bool) string {
	if quoted || len(v) == 0 || len(v)%2 != 0 {
		return a.str(v)
	}
	dst := make([]byte, len(v)/2)
	if _, err := hex.Decode(dst, v); err != nil {
		return a.str(v)
	}
	return string(dst)
}

// untrusted is maybeHex for a value as field returned it (quotes kept).
func (a *AuditReader) untrusted(v []byte) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return a.str(v[1 : len(v)-1])
	}
	if len(v) == 0 || bytes.Equal(v, []byte("(null)")) {
		return ""
	}
	return a.maybeHex(v, false)
}

// field returns the raw value of key= in body (quotes kept), found at a word start.
func field(body []byte, key string) []byte {
	for off := 0; off < len(body); {
		i := bytes.Index(body[off:], []byte(key))
		if i < 0 {
			return nil
		}
		i += off
		j := i + len(key)
		if (i == 0 || body[i-1] == ' ') && j < len(body) && body[j] == '=' {
			return valueAt(body[j+1:])
		}
		off = j
	}
	return nil
}

// fieldAfter returns the value after sep (" key="), quotes kept.
func fieldAfter(body, sep []byte) []byte {
	i := bytes.Index(body, sep)
	if i < 0 {
		return nil
	}
	return valueAt(body[i+len(sep):])
}

func valueAt(b []byte) []byte {
	if len(b) > 0 && b[0] == '"' {
		if q := bytes.IndexByte(b[1:], '"'); q >= 0 {
			return b[:q+2]
		}
		return b
	}
	if sp := bytes.IndexByte(b, ' '); sp >= 0 {
		return b[:sp]
	}
	return b
}

func intField(body []byte, key string) int {
	n, _ := strconv.Atoi(string(field(body, key)))
	return n
}
