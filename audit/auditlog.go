package audit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"
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

// knownTypes are the record types read into events (or joined to them).
var knownTypes = map[string]bool{TypeAVC: true, TypeUserAVC: true, TypeSELinuxErr: true,
	TypeUserSELinuxErr: true, TypeMACPolicyLoad: true, TypeMACStatus: true,
	TypeMACConfigChange: true, TypeSyscall: true}

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

// AuditReader reads SELinux events from a Linux audit log (raw or ENRICHED). Lines are
// parsed on worker goroutines (blocks.go); Next joins them in input order.
type AuditReader struct {
	source
	blocks *blockReader[auditItem]
	groups [joinWindow]group // events waiting for their SYSCALL record: a ring
	head   int               // the oldest group
	ngroup int
	out    []*Event // ready, in order
	eof    bool
}

// itemKind says what a parsed audit line is to the ordered join.
type itemKind uint8

const (
	itemSkip    itemKind = iota // nothing to do
	itemBad                     // malformed: bad says why
	itemEvent                   // an event of its own (AVC, USER_AVC, MAC_*, SELINUX_ERR)
	itemSyscall                 // a SYSCALL record: comm and exe for its event
	itemAux                     // a record describing another (PATH, CWD, ...), kept only with KeepOther
	itemOther                   // a record of another type, kept only with KeepOther
)

// auditItem is one audit line, parsed.
type auditItem struct {
	kind      itemKind
	key       eventKey
	ev        *Event
	comm, exe string
	bad       string
}

// NewAuditReader reads an audit log from r.
func NewAuditReader(r io.Reader, rc io.Closer, name string, opts Options) *AuditReader {
	newParser := func() lineParser[auditItem] {
		p := &auditParser{intern: make(map[string]string), permLists: make(map[string][]string), keepOther: opts.KeepOther}
		return p.parse
	}
	return &AuditReader{source: source{rc: rc, name: name, opts: opts}, blocks: newBlockReader(r, name, newParser)}
}

// Close stops reading and closes the underlying file.
func (a *AuditReader) Close() error {
	a.blocks.close()
	return a.source.Close()
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
			if a.ngroup == 0 {
				return nil, io.EOF
			}
			a.flushOldest()
			continue
		}
		it, line, err := a.blocks.item()
		if errors.Is(err, io.EOF) {
			a.eof = true
			continue
		}
		if err != nil {
			return nil, err
		}
		a.stats.Lines++
		if err := a.join(it, line); err != nil {
			return nil, err
		}
	}
}

// join applies one parsed line in input order: events wait (up to joinWindow) for
// their SYSCALL record, which fills in comm and exe.
func (a *AuditReader) join(it *auditItem, line int64) error {
	switch it.kind {
	case itemBad:
		return a.bad(line, it.bad)
	case itemEvent:
		a.emit(it.key, it.ev)
	case itemSyscall:
		g := a.findGroup(it.key)
		if g == nil {
			if it.ev != nil {
				a.emit(it.key, it.ev)
			}
			return nil
		}
		for _, e := range g.events {
			if e.Comm == "" {
				e.Comm = it.comm
			}
			if e.Exe == "" {
				e.Exe = it.exe
			}
		}
	case itemAux:
		if it.ev != nil && a.findGroup(it.key) == nil {
			a.emit(it.key, it.ev)
		}
	case itemOther:
		if it.ev != nil {
			a.emit(it.key, it.ev)
		}
	}
	return nil
}

func (a *AuditReader) flushOldest() {
	g := &a.groups[a.head]
	a.out = append(a.out, g.events...)
	clear(g.events)
	g.events = g.events[:0]
	a.head = (a.head + 1) % joinWindow
	a.ngroup--
}

func (a *AuditReader) emit(key eventKey, e *Event) {
	if g := a.findGroup(key); g != nil {
		g.events = append(g.events, e)
		return
	}
	if a.ngroup == joinWindow {
		a.flushOldest()
	}
	g := &a.groups[(a.head+a.ngroup)%joinWindow]
	a.ngroup++
	g.key = key
	g.events = append(g.events, e)
}

// findGroup returns the waiting group of key, or nil.
func (a *AuditReader) findGroup(key eventKey) *group {
	for i := a.ngroup - 1; i >= 0; i-- {
		g := &a.groups[(a.head+i)%joinWindow]
		if g.key.serial == key.serial && g.key.sec == key.sec && g.key.msec == key.msec && g.key.node == key.node {
			return g
		}
	}
	return nil
}

// auditParser parses audit lines on one worker; its intern table shares the strings
// of repeated values (contexts, classes, comms, nodes).
type auditParser struct {
	intern    map[string]string
	permLists map[string][]string
	keepOther bool
	node      string // the last node= value (one host's log repeats it on every line)
}

// permList splits a permission list, sharing the slice of a list seen before (capped,
// so that an append never writes into it).
func (a *auditParser) permList(list []byte) []string {
	if v, ok := a.permLists[string(list)]; ok {
		return v
	}
	var v []string
	for _, p := range bytes.Fields(list) {
		v = append(v, a.str(p))
	}
	v = v[:len(v):len(v)]
	if len(a.permLists) < 1024 {
		a.permLists[string(list)] = v
	}
	return v
}

// str returns b as a string, shared for repeated values.
func (a *auditParser) str(b []byte) string {
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

var (
	bNode     = []byte("node=")
	bType     = []byte("type=")
	bMsgAudit = []byte(" msg=audit(")
	bAvc      = []byte("avc:")
	bMsgQuote = []byte("msg='")
	enrichSep = byte(0x1d)
)

// parse parses one audit log line into it.
func (a *auditParser) parse(line []byte, cut bool, it *auditItem) {
	if cut {
		it.kind, it.bad = itemBad, "line longer than 4 MiB, cut"
		return
	}
	if len(line) == 0 {
		return
	}
	node, typ, body, stamp, reason := splitAuditLine(line)
	if reason != "" {
		it.kind, it.bad = itemBad, reason
		return
	}
	if !knownTypes[string(typ)] {
		it.kind = itemOther
		if auxTypes[string(typ)] {
			it.kind = itemAux
		}
		if !a.keepOther {
			return // not needed: read no further
		}
	}
	if j := bytes.IndexByte(body, enrichSep); j >= 0 {
		body = body[:j]
	}
	if string(node) != a.node {
		a.node = a.str(node)
	}
	stamp.node = a.node
	it.key = stamp
	if err := a.record(typ, body, it); err != nil {
		it.kind, it.bad = itemBad, err.Error()
	}
}

// splitAuditLine splits "[node=N ]type=T msg=audit(S.M:N): body"; reason says what is
// missing when it does not fit.
func splitAuditLine(line []byte) (node, typ, body []byte, key eventKey, reason string) {
	rest := line
	if bytes.HasPrefix(rest, bNode) {
		i := bytes.IndexByte(rest, ' ')
		if i < 0 {
			return nil, nil, nil, key, "node= without a record"
		}
		node, rest = rest[len(bNode):i], rest[i+1:]
	}
	if !bytes.HasPrefix(rest, bType) {
		return nil, nil, nil, key, "no type="
	}
	i := bytes.Index(rest, bMsgAudit)
	if i < 0 {
		return nil, nil, nil, key, "no msg=audit("
	}
	typ = rest[len(bType):i]
	rest = rest[i+len(bMsgAudit):]
	sec, msec, serial, n, ok := parseStamp(rest)
	if !ok {
		return nil, nil, nil, key, "bad msg=audit(SECONDS.MILLIS:SERIAL) stamp"
	}
	return node, typ, rest[n:], eventKey{sec: sec, msec: msec, serial: serial}, ""
}

// record fills it from the body of a record of type typ.
func (a *auditParser) record(typ, body []byte, it *auditItem) error {
	key := it.key
	switch string(typ) {
	case TypeSyscall:
		it.kind = itemSyscall
		it.comm = a.untrusted(fieldAfter(body, " comm=", 'm'))
		it.exe = a.untrusted(fieldAfter(body, " exe=", 'x'))
		if a.keepOther {
			it.ev = a.base(key, TypeSyscall)
			it.ev.PID = intField(body, "pid")
			it.ev.Comm, it.ev.Exe = it.comm, it.exe
		}
	case TypeAVC:
		e := a.base(key, TypeAVC)
		if err := a.parseAVC(body, e, false); err != nil {
			return err
		}
		it.kind, it.ev = itemEvent, e
	case TypeUserAVC:
		return a.userAVC(body, it)
	case TypeSELinuxErr, TypeUserSELinuxErr:
		e := a.base(key, a.str(typ))
		e.SContext = a.str(field(body, "scontext"))
		e.TContext = a.str(field(body, "tcontext"))
		e.TClass = a.str(field(body, "tclass"))
		if string(field(body, "seresult")) == "denied" {
			e.Result = ResultDenied
		}
		e.Name = string(bytes.TrimSpace(body))
		it.kind, it.ev = itemEvent, e
	case TypeMACStatus:
		e := a.base(key, TypeMACStatus)
		e.Name = "enforcing=" + string(field(body, "enforcing")) + " old_enforcing=" + string(field(body, "old_enforcing"))
		it.kind, it.ev = itemEvent, e
	case TypeMACConfigChange:
		e := a.base(key, TypeMACConfigChange)
		e.Name = "bool=" + string(field(body, "bool")) + " val=" + string(field(body, "val")) + " old_val=" + string(field(body, "old_val"))
		it.kind, it.ev = itemEvent, e
	case TypeMACPolicyLoad:
		it.kind, it.ev = itemEvent, a.base(key, TypeMACPolicyLoad)
	default: // with KeepOther
		e := a.base(key, a.str(typ))
		e.PID = intField(body, "pid")
		e.Name = string(bytes.TrimSpace(body))
		it.ev = e
	}
	return nil
}

// userAVC parses a USER_AVC record: a userspace object manager's AVC inside msg='...'.
func (a *auditParser) userAVC(body []byte, it *auditItem) error {
	e := a.base(it.key, TypeUserAVC)
	e.PID = intField(body, "pid")
	j := bytes.Index(body, bMsgQuote)
	if j < 0 {
		return errors.New("USER_AVC without msg='")
	}
	inner := body[j+len(bMsgQuote):]
	if k := bytes.LastIndexByte(inner, '\''); k >= 0 {
		inner = inner[:k]
	}
	if !bytes.HasPrefix(bytes.TrimLeft(inner, " "), bAvc) {
		if a.keepOther {
			e.Name = string(inner)
			it.kind, it.ev = itemEvent, e
		}
		return nil
	}
	if err := a.parseAVC(inner, e, true); err != nil {
		return err
	}
	it.kind, it.ev = itemEvent, e
	return nil
}

func (a *auditParser) base(key eventKey, typ string) *Event {
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
func (a *auditParser) parseAVC(b []byte, e *Event, user bool) error {
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
	e.Perms = a.permList(b[1:end])
	b = b[end+1:]
	if len(e.Perms) == 0 {
		return errAVC
	}
	// Walk key=value pairs.
	for len(b) > 0 {
		k, v, quoted, rest, err := nextPair(b)
		if err != nil {
			return err
		}
		if k == nil {
			break
		}
		b = rest
		a.setAVCField(e, k, v, quoted, user)
	}
	if e.SContext == "" || e.TContext == "" || e.TClass == "" {
		return errors.New("AVC record without scontext, tcontext or tclass")
	}
	return nil
}

// nextPair reads the next key=value of an AVC record (bare words such as "for" are
// skipped); k is nil at the end.
func nextPair(b []byte) (k, v []byte, quoted bool, rest []byte, err error) {
	for {
		b = bytes.TrimLeft(b, " ")
		eq := bytes.IndexByte(b, '=')
		if eq < 0 {
			return nil, nil, false, nil, nil
		}
		k = b[:eq]
		if sp := bytes.IndexByte(k, ' '); sp >= 0 {
			b = b[sp+1:]
			continue
		}
		b = b[eq+1:]
		if len(b) > 0 && b[0] == '"' {
			q := bytes.IndexByte(b[1:], '"')
			if q < 0 {
				return nil, nil, false, nil, errors.New("AVC record: unterminated quoted value")
			}
			return k, b[1 : 1+q], true, b[q+2:], nil
		}
		sp := bytes.IndexByte(b, ' ')
		if sp < 0 {
			sp = len(b)
		}
		return k, b[:sp], false, b[sp:], nil
	}
}

// setAVCField keeps the AVC fields the auditor uses.
func (a *auditParser) setAVCField(e *Event, k, v []byte, quoted, user bool) {
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

// maybeHex decodes the kernel's hex encoding of untrusted strings (unquoted values).
func (a *auditParser) maybeHex(v []byte, quoted bool) string {
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
func (a *auditParser) untrusted(v []byte) string {
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

// fieldAfter returns the value after sep (" key="), quotes kept. It looks for sep by
// rare, a letter of sep seldom found elsewhere in the record: bytes.Index looks for
// sep's first byte, a space, and so stopped at every field (a SYSCALL record has 30).
func fieldAfter(body []byte, sep string, rare byte) []byte {
	at := strings.IndexByte(sep, rare)
	for off := 0; ; {
		j := bytes.IndexByte(body[off:], rare)
		if j < 0 {
			return nil
		}
		i := off + j - at
		if i >= 0 && i+len(sep) <= len(body) && string(body[i:i+len(sep)]) == sep {
			return valueAt(body[i+len(sep):])
		}
		off += j + 1
	}
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
