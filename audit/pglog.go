package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Options tune the readers.
type Options struct {
	// Prefix is the stderr log's log_line_prefix; nil detects it from the first lines
	// (CommonPrefixes).
	Prefix *Prefix
	// PGLocation reads PostgreSQL timestamps whose zone is an abbreviation other than
	// UTC/GMT (nil: UTC).
	PGLocation *time.Location
	// Node names the database host in db events (the audit log names its own).
	Node string
	// KeepOther passes audit records of types that are not SELinux decisions through
	// as events (record_type set, no result); otherwise they are skipped.
	KeepOther bool
	// Strict makes the first malformed line an error (wrapping ErrMalformed).
	Strict bool
}

var sepgsqlMarkerBytes = []byte(sepgsqlMarker)

// pending is a db event waiting for its statement.
type pending struct {
	ev       *Event
	pid      int
	resolved bool
	age      int
}

// maxPendingAge is how many records a sepgsql line waits for its STATEMENT line.
const maxPendingAge = 256

// maxPending bounds the events waiting for statements; beyond it the oldest are
// released without one.
const maxPending = 4096

// StderrReader reads sepgsql events from a PostgreSQL stderr log. Lines are parsed on
// worker goroutines (blocks.go); Next joins records and statements in input order.
type StderrReader struct {
	source
	blocks *blockReader[pgItem]
	prefix *Prefix
	queue  []*pending
	unres  int // unresolved entries in queue
	cur    stderrRecord
	eof    bool
	err    error
}

// pgItem is one stderr line, parsed.
type pgItem struct {
	cont    bool   // a continuation line (starts with a tab)
	matched bool   // the line starts with the log_line_prefix and a level
	sepgsql bool   // a LOG line whose message starts with "SELinux: "
	cut     bool   // the line was longer than maxLine
	bad     string // why the line is malformed
	level   string // one of levels
	pid     int
	text    []byte // the message (or, for a continuation line, the line); valid with its block
	ev      *Event // a sepgsql LOG line's event, its strings owned
	evErr   error  // why a sepgsql LOG line's message did not parse
}

// stderrRecord is the record being read: its first line and continuation lines.
type stderrRecord struct {
	open  bool
	item  pgItem // text not valid beyond its block
	line  int64
	keep  bool   // the text is needed (a statement, or a sepgsql message)
	msg   []byte // the text, when kept (the buffer is reused)
	lines int    // continuation lines
}

// NewStderrReader reads r (named name in messages). It closes rc, if not nil, on Close.
func NewStderrReader(r io.Reader, rc io.Closer, name string, opts Options) (*StderrReader, error) {
	s := &StderrReader{source: source{rc: rc, name: name, opts: opts}, prefix: opts.Prefix}
	if s.prefix == nil {
		br := bufio.NewReaderSize(r, 256<<10)
		head, _ := br.Peek(256 << 10)
		s.prefix = DetectPrefix(head, opts.PGLocation)
		r = br
	}
	newParser := func() lineParser[pgItem] {
		p := &pgParser{prefix: s.prefix, clock: pgClock{loc: opts.PGLocation}, node: opts.Node,
			intern: make(map[string]string), permLists: make(map[string][]string)}
		return p.parse
	}
	s.blocks = newBlockReader(r, name, newParser)
	return s, nil
}

// Prefix returns the log_line_prefix in use (given or detected).
func (s *StderrReader) Prefix() *Prefix { return s.prefix }

// DetectPrefix picks the common prefix that parses most record lines of head.
func DetectPrefix(head []byte, loc *time.Location) *Prefix {
	var lines []string
	for len(head) > 0 && len(lines) < 200 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			break // a cut line proves nothing
		}
		l := head[:i]
		head = head[i+1:]
		if len(l) > 0 && l[0] != '\t' {
			lines = append(lines, string(trimEOL(append(l, '\n'))))
		}
	}
	best, bestN := (*Prefix)(nil), 0
	for _, src := range CommonPrefixes {
		p, err := CompilePrefix(src)
		if err != nil {
			continue
		}
		n := 0
		for _, l := range lines {
			if _, _, _, ok := p.Match(l, loc); ok {
				n++
			}
		}
		if n > bestN {
			best, bestN = p, n
		}
	}
	if best == nil {
		best, _ = CompilePrefix(CommonPrefixes[0])
	}
	return best
}

// Close stops reading and closes the underlying file.
func (s *StderrReader) Close() error {
	s.blocks.close()
	return s.source.Close()
}

// Next returns the next sepgsql event, or io.EOF.
func (s *StderrReader) Next() (*Event, error) {
	for {
		if len(s.queue) > 0 && s.queue[0].resolved {
			p := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			if len(s.queue) == 0 {
				s.queue = s.queue[:0:0]
			}
			s.stats.Events++
			return p.ev, nil
		}
		if s.err != nil {
			return nil, s.err
		}
		if s.eof {
			if len(s.queue) == 0 {
				return nil, io.EOF
			}
			s.resolveAll()
			continue
		}
		it, line, err := s.blocks.item()
		if errors.Is(err, io.EOF) {
			s.eof = true
			s.finish()
			continue
		}
		if err != nil {
			s.err = err
			continue
		}
		if err := s.step(it, line); err != nil {
			s.err = err
		}
	}
}

func (s *StderrReader) resolveAll() {
	for _, p := range s.queue {
		p.resolved = true
	}
	s.unres = 0
}

// step takes one line in input order.
func (s *StderrReader) step(it *pgItem, line int64) error {
	s.stats.Lines++
	if it.cut {
		if err := s.bad(line, "line longer than 4 MiB, cut"); err != nil {
			return err
		}
	}
	if it.cont {
		if r := &s.cur; r.open {
			r.lines++
			if r.keep && len(r.msg) < maxLine {
				r.msg = append(r.msg, '\n')
				r.msg = append(r.msg, it.text...)
			}
		}
		return nil
	}
	s.finish()
	if it.bad != "" {
		return s.bad(line, it.bad)
	}
	if !it.matched || !it.sepgsql && s.unres == 0 {
		return nil // not a record, or nothing waits for it
	}
	r := &s.cur
	r.open, r.item, r.line, r.lines = true, *it, line, 0
	r.keep = it.level == "STATEMENT" || it.ev != nil
	r.msg = r.msg[:0]
	if r.keep {
		r.msg = append(r.msg, it.text...)
	}
	r.item.text = nil
	return nil
}

// finish interprets the record just completed.
func (s *StderrReader) finish() {
	r := &s.cur
	if !r.open {
		return
	}
	r.open = false
	it := &r.item
	// Age the waiting events; release the stale and the excess.
	if s.unres > 0 {
		for _, p := range s.queue {
			if p.resolved {
				continue
			}
			p.age++
			if p.age > maxPendingAge {
				p.resolved = true
				s.unres--
			}
		}
	}
	switch it.level {
	case "LOG":
		if it.ev == nil {
			s.release(it.pid)
			return
		}
		ev, err := it.ev, it.evErr
		if r.lines > 0 {
			// The message went on over continuation lines: read it whole.
			ev = &Event{Time: it.ev.Time, Node: it.ev.Node, PID: it.ev.PID, DBUser: it.ev.DBUser,
				Database: it.ev.Database, SessionID: it.ev.SessionID}
			err = parseSepgsql(string(r.msg), ev, nil)
		}
		if err != nil {
			if !errors.Is(err, errNotSepgsql) {
				if e := s.bad(r.line, err.Error()); e != nil {
					s.err = e
				}
			}
			return
		}
		s.queue = append(s.queue, &pending{ev: ev, pid: it.pid})
		s.unres++
		if s.unres > maxPending {
			for _, p := range s.queue {
				if !p.resolved {
					p.resolved = true
					s.unres--
					break
				}
			}
		}
	case "STATEMENT":
		if s.unres == 0 {
			return
		}
		msg := ""
		for _, p := range s.queue {
			if !p.resolved && p.pid == it.pid {
				if msg == "" {
					msg = string(r.msg)
				}
				p.ev.Statement = msg
				p.resolved = true
				s.unres--
			}
		}
	case "ERROR", "DETAIL", "HINT", "CONTEXT", "QUERY", "LOCATION":
		// The statement may still follow.
	default:
		s.release(it.pid)
	}
}

// release resolves pid's waiting events without a statement.
func (s *StderrReader) release(pid int) {
	if s.unres == 0 {
		return
	}
	for _, p := range s.queue {
		if !p.resolved && p.pid == pid {
			p.resolved = true
			s.unres--
		}
	}
}

// pgParser parses stderr lines on one worker.
type pgParser struct {
	prefix *Prefix
	clock  pgClock
	node   string
	intern map[string]string
	// permLists shares the Perms slices of repeated permission lists.
	permLists map[string][]string
}

// own returns a copy of s that does not share the block's memory, shared for
// repeated values.
func (p *pgParser) own(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := p.intern[s]; ok {
		return v
	}
	v := strings.Clone(s)
	if len(p.intern) < 8192 && len(s) < 256 {
		p.intern[v] = v
	}
	return v
}

// parse parses one stderr line into it.
func (p *pgParser) parse(line []byte, cut bool, it *pgItem) {
	it.cut = cut
	if len(line) > 0 && line[0] == '\t' {
		it.cont, it.text = true, line[1:]
		return
	}
	// The line is read in place: what is kept beyond the block is copied by own.
	str := unsafe.String(unsafe.SliceData(line), len(line))
	f, level, msg, ok := p.prefix.matchClock(str, &p.clock)
	if !ok {
		if strings.Contains(str, ":  "+sepgsqlMarker) {
			it.bad = "line does not match log_line_prefix " + strconv.Quote(p.prefix.String())
		}
		return
	}
	it.matched, it.level, it.pid, it.text = true, level, f.pid, line[msg:]
	if level != "LOG" || !strings.HasPrefix(str[msg:], sepgsqlMarker) {
		return
	}
	it.sepgsql = true
	base := Event{Time: f.time, Node: p.node, PID: f.pid, DBUser: p.own(f.user),
		Database: p.own(f.database), SessionID: p.own(f.sessionID)}
	ev := new(Event)
	*ev = base
	it.ev = ev
	if it.evErr = parseSepgsql(str[msg:], ev, p.perms); it.evErr != nil {
		*ev = base // nothing that points into the block
		return
	}
	ev.SContext, ev.TContext, ev.TClass = p.own(ev.SContext), p.own(ev.TContext), p.own(ev.TClass)
	ev.Name = p.own(ev.Name)
}

// perms splits a permission list like strings.Fields, sharing the slice of a list
// seen before (capped, so that an append never writes into it).
func (p *pgParser) perms(list string) []string {
	if v, ok := p.permLists[list]; ok {
		return v
	}
	v := strings.Fields(list)
	for i := range v {
		v[i] = p.own(v[i])
	}
	v = v[:len(v):len(v)]
	if len(p.permLists) < 1024 {
		p.permLists[strings.Clone(list)] = v
	}
	return v
}

// csvlog columns (PostgreSQL 13–15; 14 added leader_pid and query_id).
const (
	csvTime     = 0
	csvUser     = 1
	csvDB       = 2
	csvPID      = 3
	csvSession  = 5
	csvSeverity = 11
	csvMessage  = 13
	csvQuery    = 19
	csvMinCols  = 23
)

// CSVReader reads sepgsql events from a PostgreSQL csvlog.
type CSVReader struct {
	source
	lr     *lineReader
	rec    []byte
	fields []string
}

// NewCSVReader reads a csvlog from r.
func NewCSVReader(r io.Reader, rc io.Closer, name string, opts Options) *CSVReader {
	return &CSVReader{source: source{rc: rc, name: name, opts: opts}, lr: newLineReader(r, name)}
}

// Next returns the next sepgsql event, or io.EOF.
func (c *CSVReader) Next() (*Event, error) {
	for {
		line, err := c.lr.next()
		if err != nil {
			return nil, err
		}
		c.stats.Lines++
		start := c.lr.n
		// A record continues while its quotes are unbalanced.
		c.rec = append(c.rec[:0], line...)
		quotes := bytes.Count(line, []byte{'"'})
		truncated := false
		for quotes%2 == 1 {
			more, err := c.lr.next()
			if err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, err
			}
			c.stats.Lines++
			quotes += bytes.Count(more, []byte{'"'})
			if len(c.rec)+len(more) < maxLine {
				c.rec = append(c.rec, '\n')
				c.rec = append(c.rec, more...)
			} else {
				truncated = true
			}
		}
		if quotes%2 == 1 || truncated {
			if err := c.bad(start, "unterminated or oversized csv record"); err != nil {
				return nil, err
			}
			continue
		}
		if !bytes.Contains(c.rec, sepgsqlMarkerBytes) {
			continue
		}
		fields, ok := splitCSV(c.rec, c.fields[:0])
		c.fields = fields
		if !ok || len(fields) < csvMinCols {
			if err := c.bad(start, fmt.Sprintf("csvlog record with %d columns, want at least %d", len(fields), csvMinCols)); err != nil {
				return nil, err
			}
			continue
		}
		if fields[csvSeverity] != "LOG" {
			continue
		}
		ev := &Event{}
		if err := parseSepgsql(fields[csvMessage], ev, nil); err != nil {
			if errors.Is(err, errNotSepgsql) {
				continue
			}
			if err := c.bad(start, err.Error()); err != nil {
				return nil, err
			}
			continue
		}
		tm, err := parsePGTime(fields[csvTime], c.opts.PGLocation)
		if err != nil {
			if err := c.bad(start, err.Error()); err != nil {
				return nil, err
			}
			continue
		}
		ev.Time = tm
		ev.Node = c.opts.Node
		ev.PID, _ = strconv.Atoi(fields[csvPID])
		ev.DBUser = fields[csvUser]
		ev.Database = fields[csvDB]
		ev.SessionID = fields[csvSession]
		ev.Statement = fields[csvQuery]
		c.stats.Events++
		return ev, nil
	}
}

// splitCSV splits one RFC 4180 record; ok is false for a stray quote.
func splitCSV(rec []byte, out []string) ([]string, bool) {
	var field []byte
	i := 0
	for {
		if i < len(rec) && rec[i] == '"' {
			field = field[:0]
			i++
			for {
				j := bytes.IndexByte(rec[i:], '"')
				if j < 0 {
					return out, false
				}
				field = append(field, rec[i:i+j]...)
				i += j + 1
				if i < len(rec) && rec[i] == '"' {
					field = append(field, '"')
					i++
					continue
				}
				break
			}
			out = append(out, string(field))
			if i == len(rec) {
				return out, true
			}
			if rec[i] != ',' {
				return out, false
			}
			i++
			continue
		}
		j := bytes.IndexByte(rec[i:], ',')
		if j < 0 {
			out = append(out, string(rec[i:]))
			return out, true
		}
		out = append(out, string(rec[i:i+j]))
		i += j + 1
	}
}

// jsonRecord holds the jsonlog keys sepgadm uses (PostgreSQL 15).
type jsonRecord struct {
	Timestamp     string `json:"timestamp"`
	User          string `json:"user"`
	DBName        string `json:"dbname"`
	PID           int    `json:"pid"`
	SessionID     string `json:"session_id"`
	ErrorSeverity string `json:"error_severity"`
	Message       string `json:"message"`
	Statement     string `json:"statement"`
}

// JSONReader reads sepgsql events from a PostgreSQL jsonlog.
type JSONReader struct {
	source
	lr *lineReader
}

// NewJSONReader reads a jsonlog from r.
func NewJSONReader(r io.Reader, rc io.Closer, name string, opts Options) *JSONReader {
	return &JSONReader{source: source{rc: rc, name: name, opts: opts}, lr: newLineReader(r, name)}
}

// bad is source.bad at the current line.
func (j *JSONReader) bad(reason string) error { return j.source.bad(j.lr.n, reason) }

// Next returns the next sepgsql event, or io.EOF.
func (j *JSONReader) Next() (*Event, error) {
	for {
		line, err := j.lr.next()
		if err != nil {
			return nil, err
		}
		j.stats.Lines++
		if j.lr.cut {
			if err := j.bad("line longer than 4 MiB, cut"); err != nil {
				return nil, err
			}
			continue
		}
		if !bytes.Contains(line, sepgsqlMarkerBytes) {
			if len(bytes.TrimSpace(line)) > 0 && line[0] != '{' {
				if err := j.bad("not a JSON object"); err != nil {
					return nil, err
				}
			}
			continue
		}
		var rec jsonRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			if err := j.bad("bad JSON: " + err.Error()); err != nil {
				return nil, err
			}
			continue
		}
		if rec.ErrorSeverity != "LOG" {
			continue
		}
		ev := &Event{}
		if err := parseSepgsql(rec.Message, ev, nil); err != nil {
			if errors.Is(err, errNotSepgsql) {
				continue
			}
			if err := j.bad(err.Error()); err != nil {
				return nil, err
			}
			continue
		}
		tm, err := parsePGTime(rec.Timestamp, j.opts.PGLocation)
		if err != nil {
			if err := j.bad(err.Error()); err != nil {
				return nil, err
			}
			continue
		}
		ev.Time = tm
		ev.Node = j.opts.Node
		ev.PID = rec.PID
		ev.DBUser = rec.User
		ev.Database = rec.DBName
		ev.SessionID = rec.SessionID
		ev.Statement = rec.Statement
		j.stats.Events++
		return ev, nil
	}
}
