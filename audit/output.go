package audit

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// OutputFormats are the -o values NewOutput accepts.
var OutputFormats = []string{"text", "json", "csv", "summary", "timeline"}

// Output writes events one at a time; Close writes what remains (summaries, buffers).
type Output interface {
	Write(e *Event) error
	Close() error
}

// NewOutput returns the writer for format (one of OutputFormats).
func NewOutput(format string, w io.Writer) (Output, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	switch format {
	case "json":
		return &jsonOut{w: bw}, nil
	case "csv":
		o := &csvOut{w: bw}
		o.buf = append(o.buf, strings.Join(Columns, ",")...)
		o.buf = append(o.buf, '\n')
		return o, nil
	case "text":
		return newTextOut(bw, false), nil
	case "timeline":
		return newTextOut(bw, true), nil
	case "summary":
		return newSummary(bw), nil
	}
	return nil, fmt.Errorf("output format %q is not one of %s", format, strings.Join(OutputFormats, ", "))
}

type jsonOut struct {
	w   *bufio.Writer
	buf []byte
}

func (o *jsonOut) Write(e *Event) error {
	o.buf = e.AppendJSON(o.buf[:0])
	o.buf = append(o.buf, '\n')
	_, err := o.w.Write(o.buf)
	return err
}

func (o *jsonOut) Close() error { return o.w.Flush() }

type csvOut struct {
	w   *bufio.Writer
	buf []byte
}

func (o *csvOut) Write(e *Event) error {
	o.buf = e.AppendCSV(o.buf)
	o.buf = append(o.buf, '\n')
	if len(o.buf) > 64<<10 {
		_, err := o.w.Write(o.buf)
		o.buf = o.buf[:0]
		return err
	}
	return nil
}

func (o *csvOut) Close() error {
	if _, err := o.w.Write(o.buf); err != nil {
		return err
	}
	return o.w.Flush()
}

// textOut aligns columns within blocks of textBlock events (streaming).
type textOut struct {
	w        *bufio.Writer
	tw       *tabwriter.Writer
	n        int
	timeline bool
	last     time.Time
}

const textBlock = 200

func newTextOut(w *bufio.Writer, timeline bool) *textOut {
	return &textOut{w: w, tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0), timeline: timeline}
}

func (o *textOut) Write(e *Event) error {
	if o.n%textBlock == 0 {
		if err := o.tw.Flush(); err != nil {
			return err
		}
		if o.n == 0 && !o.timeline {
			fmt.Fprintln(o.tw, "TIME\tSRC\tNODE\tRESULT\tCLASS\tPERMS\tSOURCE TYPE\tTARGET TYPE\tNAME\tPID\tDETAIL")
		}
	}
	o.n++
	if o.timeline {
		return o.writeTimeline(e)
	}
	ts := ""
	if !e.Time.IsZero() {
		ts = e.Time.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	res := e.Result
	if res == "" {
		res = "-"
	} else if e.Permissive {
		res += "(p)"
	}
	fmt.Fprintf(o.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ts, e.Source, dash(e.Node), res,
		dash(classOrType(e)), dash(strings.Join(e.Perms, ",")), dash(ContextType(e.SContext)),
		dash(ContextType(e.TContext)), dash(oneLine(e.Name, 60)), pidString(e.PID), detail(e))
	return nil
}

func (o *textOut) writeTimeline(e *Event) error {
	ts := e.Time.UTC().Format("2006-01-02T15:04:05.000Z")
	delta := ""
	if !o.last.IsZero() {
		delta = "+" + e.Time.Sub(o.last).Round(time.Millisecond).String()
	}
	o.last = e.Time
	if !e.IsAccess() {
		fmt.Fprintf(o.tw, "%s\t%s\t%s\t== %s %s ==\n", ts, delta, e.Source, e.RecordType, e.Name)
		return nil
	}
	res := e.Result
	if e.Permissive {
		res += "(permissive)"
	}
	fmt.Fprintf(o.tw, "%s\t%s\t%s\t%s {%s} %s -> %s:%s %s\t%s\n", ts, delta, e.Source, res,
		strings.Join(e.Perms, " "), ContextType(e.SContext), ContextType(e.TContext), e.TClass,
		oneLine(e.Name, 60), detail(e))
	return nil
}

func (o *textOut) Close() error {
	if err := o.tw.Flush(); err != nil {
		return err
	}
	return o.w.Flush()
}

func classOrType(e *Event) string {
	if e.TClass != "" {
		return e.TClass
	}
	return e.RecordType
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func pidString(p int) string {
	if p == 0 {
		return "-"
	}
	return strconv.Itoa(p)
}

// detail is the rest of an event in one readable column.
func detail(e *Event) string {
	var parts []string
	if e.Comm != "" {
		parts = append(parts, "comm="+e.Comm)
	}
	if e.Exe != "" {
		parts = append(parts, "exe="+e.Exe)
	}
	if e.DBUser != "" || e.Database != "" {
		parts = append(parts, e.DBUser+"@"+e.Database)
	}
	if e.SessionID != "" {
		parts = append(parts, "session="+e.SessionID)
	}
	if e.Statement != "" {
		parts = append(parts, strconv.Quote(oneLine(e.Statement, 80)))
	}
	if e.Serial != 0 {
		parts = append(parts, "serial="+strconv.FormatUint(e.Serial, 10))
	}
	return strings.Join(parts, " ")
}

// oneLine squeezes whitespace runs (newlines included) and cuts s to n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// Summary counts access decisions like aureport --avc.
type Summary struct {
	Total     int
	BySource  map[string]int // source type
	ByTarget  map[string]int // target type
	ByClass   map[string]int
	ByPerm    map[string]int
	ByResult  map[string]int
	ByOrigin  map[string]int // db / os
	NonAccess map[string]int // other records by type
}

// NewSummary returns an empty summary.
func NewSummary() *Summary {
	return &Summary{BySource: map[string]int{}, ByTarget: map[string]int{}, ByClass: map[string]int{},
		ByPerm: map[string]int{}, ByResult: map[string]int{}, ByOrigin: map[string]int{}, NonAccess: map[string]int{}}
}

// Add counts e.
func (s *Summary) Add(e *Event) {
	if !e.IsAccess() {
		s.NonAccess[e.RecordType]++
		return
	}
	s.Total++
	s.BySource[ContextType(e.SContext)]++
	s.ByTarget[ContextType(e.TContext)]++
	s.ByClass[e.TClass]++
	for _, p := range e.Perms {
		s.ByPerm[p]++
	}
	s.ByResult[e.Result]++
	s.ByOrigin[e.Source]++
}

type summaryOut struct {
	w *bufio.Writer
	s *Summary
}

func newSummary(w *bufio.Writer) *summaryOut { return &summaryOut{w: w, s: NewSummary()} }

func (o *summaryOut) Write(e *Event) error { o.s.Add(e); return nil }

func (o *summaryOut) Close() error {
	o.s.WriteText(o.w)
	return o.w.Flush()
}

// WriteText prints the summary in aureport's shape: one table per key, largest first.
func (s *Summary) WriteText(w io.Writer) {
	fmt.Fprintf(w, "AVC Summary Report\n===============================\nTotal access decisions: %d\n", s.Total)
	for _, t := range []struct {
		title string
		m     map[string]int
	}{
		{"source", s.ByOrigin}, {"result", s.ByResult}, {"source type", s.BySource},
		{"target type", s.ByTarget}, {"class", s.ByClass}, {"permission", s.ByPerm},
		{"other records", s.NonAccess},
	} {
		if len(t.m) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s\n===============================\n# total %s\n===============================\n", cases(t.title), t.title)
		for i, kv := range SortedCounts(t.m) {
			fmt.Fprintf(w, "%d. %d %s\n", i+1, kv.Count, kv.Key)
		}
	}
}

func cases(s string) string { return strings.ToUpper(s[:1]) + s[1:] + " Summary Report" }

// KeyCount is one row of a count table.
type KeyCount struct {
	Key   string
	Count int
}

// SortedCounts orders m by count, largest first, then by key.
func SortedCounts(m map[string]int) []KeyCount {
	out := make([]KeyCount, 0, len(m))
	for k, v := range m {
		out = append(out, KeyCount{k, v})
	}
	slices.SortFunc(out, func(a, b KeyCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return out
}
