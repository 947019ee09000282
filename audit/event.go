package audit

import (
	"bytes"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sepgadm/sepgadm/secontext"
)

// Sources of events.
const (
	SourceDB = "db" // sepgsql, from the PostgreSQL server log
	SourceOS = "os" // the Linux audit log (kernel and userspace object managers)
)

// Results of an access decision.
const (
	ResultDenied  = "denied"
	ResultAllowed = "allowed" // sepgsql's audited grant (auditallow or debug_audit)
	ResultGranted = "granted" // the kernel's auditallow grant
)

// Event is one SELinux-relevant record from either log, in one shape. Fields with no
// value are empty and are left out of JSON.
type Event struct {
	Time       time.Time
	Source     string
	Node       string
	Result     string
	Permissive bool
	// HasPermissive says whether the record carried a permissive= field at all, so
	// that JSON prints "permissive":false only where false was written.
	HasPermissive bool
	Perms         []string
	SContext      string
	TContext      string
	TClass        string
	Name          string
	PID           int
	Comm          string
	Exe           string
	Database      string
	DBUser        string
	SessionID     string
	Statement     string
	RecordType    string
	Serial        uint64
}

// IsAccess reports whether e is an access decision (it has a result).
func (e *Event) IsAccess() bool { return e.Result != "" }

// Columns are the keys of the JSON form, in order; CSV uses them as its header.
var Columns = []string{"time", "source", "node", "result", "permissive", "perms", "scontext",
	"tcontext", "tclass", "name", "pid", "comm", "exe", "database", "db_user", "session_id",
	"statement", "record_type", "serial"}

// TimeLayout is RFC 3339 in UTC with nanoseconds, fixed width.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// AppendJSON appends e as one JSON object (no newline), keys in Columns order, empty
// ones omitted.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	first := true
	key := func(k string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
	}
	str := func(k, v string) {
		if v == "" {
			return
		}
		key(k)
		b = appendJSONString(b, v)
	}
	if !e.Time.IsZero() {
		key("time")
		b = append(b, '"')
		b = appendTime(b, e.Time)
		b = append(b, '"')
	}
	str("source", e.Source)
	str("node", e.Node)
	str("result", e.Result)
	if e.HasPermissive {
		key("permissive")
		b = strconv.AppendBool(b, e.Permissive)
	}
	if len(e.Perms) > 0 {
		key("perms")
		b = append(b, '[')
		for i, p := range e.Perms {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, p)
		}
		b = append(b, ']')
	}
	str("scontext", e.SContext)
	str("tcontext", e.TContext)
	str("tclass", e.TClass)
	str("name", e.Name)
	if e.PID != 0 {
		key("pid")
		b = strconv.AppendInt(b, int64(e.PID), 10)
	}
	str("comm", e.Comm)
	str("exe", e.Exe)
	str("database", e.Database)
	str("db_user", e.DBUser)
	str("session_id", e.SessionID)
	str("statement", e.Statement)
	str("record_type", e.RecordType)
	if e.Serial != 0 {
		key("serial")
		b = strconv.AppendUint(b, e.Serial, 10)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\t':
				b = append(b, '\\', 't')
			case '\r':
				b = append(b, '\\', 'r')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendCSV appends e as one CSV row (RFC 4180, no newline) in Columns order.
func (e *Event) AppendCSV(b []byte) []byte {
	field := func(v string) {
		if v == "" {
			return
		}
		if !needsQuote(v) {
			b = append(b, v...)
			return
		}
		b = append(b, '"')
		for {
			i := strings.IndexByte(v, '"')
			if i < 0 {
				b = append(b, v...)
				break
			}
			b = append(b, v[:i+1]...)
			b = append(b, '"')
			v = v[i+1:]
		}
		b = append(b, '"')
	}
	if !e.Time.IsZero() {
		b = appendTime(b, e.Time)
	}
	b = append(b, ',')
	field(e.Source)
	b = append(b, ',')
	field(e.Node)
	b = append(b, ',')
	field(e.Result)
	b = append(b, ',')
	if e.HasPermissive {
		b = strconv.AppendBool(b, e.Permissive)
	}
	b = append(b, ',')
	if len(e.Perms) > 0 {
		field(joinPerms(e.Perms))
	}
	for _, v := range []string{e.SContext, e.TContext, e.TClass, e.Name} {
		b = append(b, ',')
		field(v)
	}
	b = append(b, ',')
	if e.PID != 0 {
		b = strconv.AppendInt(b, int64(e.PID), 10)
	}
	for _, v := range []string{e.Comm, e.Exe, e.Database, e.DBUser, e.SessionID, e.Statement, e.RecordType} {
		b = append(b, ',')
		field(v)
	}
	b = append(b, ',')
	if e.Serial != 0 {
		b = strconv.AppendUint(b, e.Serial, 10)
	}
	return b
}

// appendTime appends t in TimeLayout (the same bytes as t.UTC().AppendFormat(b,
// TimeLayout) for years 0 to 9999, without the layout interpreter: the CSV writer
// spent a third of its time there).
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, TimeLayout)
	}
	hour, minute, sec := t.Clock()
	n := len(b)
	b = append(b, "0000-00-00T00:00:00.000000000Z"...)
	put := func(at, width, v int) {
		for i := at + width - 1; i >= at; i-- {
			b[n+i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, 4, year)
	put(5, 2, int(month))
	put(8, 2, day)
	put(11, 2, hour)
	put(14, 2, minute)
	put(17, 2, sec)
	put(20, 9, t.Nanosecond())
	return b
}

// csvSpecial marks the bytes that make a CSV field need quotes.
var csvSpecial = [256]bool{',': true, '"': true, '\n': true, '\r': true}

func needsQuote(v string) bool {
	if v[0] == ' ' || v[len(v)-1] == ' ' {
		return true
	}
	for i := 0; i < len(v); i++ {
		if csvSpecial[v[i]] {
			return true
		}
	}
	return false
}

func joinPerms(p []string) string {
	if len(p) == 1 {
		return p[0]
	}
	var buf bytes.Buffer
	for i, s := range p {
		if i > 0 {
			buf.WriteByte(' ')
		}
		buf.WriteString(s)
	}
	return buf.String()
}

// ContextType returns the type field of an SELinux context (user:role:type[:level]),
// or the whole string when it has no colon (already a type).
func ContextType(ctx string) string { return secontext.TypeOf(ctx) }

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
