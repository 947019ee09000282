package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sepgadm/sepgadm/sessionlog"
)

// SessionRecord is one line of the proxy's session log.
type SessionRecord = sessionlog.Record

// SessionReader reads the proxy's session log in order.
type SessionReader struct {
	lr    *lineReader
	name  string
	stats Stats
	next  *SessionRecord
	eof   bool
}

// NewSessionReader reads a session log from r.
func NewSessionReader(r io.Reader, name string) *SessionReader {
	return &SessionReader{lr: newLineReader(r, name), name: name}
}

// Stats returns the counts so far.
func (s *SessionReader) Stats() Stats { return s.stats }

// peek returns the next record without consuming it, or nil at the end.
func (s *SessionReader) peek() (*SessionRecord, error) {
	for s.next == nil && !s.eof {
		line, err := s.lr.next()
		if errors.Is(err, io.EOF) {
			s.eof = true
			break
		}
		if err != nil {
			return nil, err
		}
		s.stats.Lines++
		if len(line) == 0 {
			continue
		}
		var rec SessionRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			s.stats.bad(s.name, s.lr.n, "bad JSON: "+err.Error())
			continue
		}
		if err := rec.Check(); err != nil {
			s.stats.bad(s.name, s.lr.n, err.Error())
			continue
		}
		s.stats.Events++
		s.next = &rec
	}
	return s.next, nil
}

// Attributor maps (backend pid, time) to the proxy session served by that backend.
// Feed it events in time order; it reads the session log as far as each event's time.
type Attributor struct {
	sr        *SessionReader
	byBackend map[int]*SessionRecord
	sessions  map[string]*SessionRecord // live sessions: their latest record
}

// NewAttributor reads the session log sr.
func NewAttributor(sr *SessionReader) *Attributor {
	return &Attributor{sr: sr, byBackend: map[int]*SessionRecord{}, sessions: map[string]*SessionRecord{}}
}

// Session returns the session whose latest tag (or connect) for backend pid precedes t
// and which has not disconnected by t, or nil.
func (a *Attributor) Session(pid int, t time.Time) (*SessionRecord, error) {
	for {
		rec, err := a.sr.peek()
		if err != nil {
			return nil, err
		}
		if rec == nil || rec.Time.After(t) {
			break
		}
		a.sr.next = nil
		a.apply(rec)
	}
	return a.byBackend[pid], nil
}

func (a *Attributor) apply(rec *SessionRecord) {
	prev := a.sessions[rec.SessionID]
	if rec.Event == "disconnect" {
		delete(a.sessions, rec.SessionID)
		for pid, s := range a.byBackend {
			if s.SessionID == rec.SessionID {
				delete(a.byBackend, pid)
			}
		}
		return
	}
	// A tag record may carry only what changed: keep the session's other fields.
	if prev != nil {
		merged := *prev
		merged.Time, merged.Event = rec.Time, rec.Event
		overlay(&merged, rec)
		rec = &merged
	}
	a.sessions[rec.SessionID] = rec
	if rec.BackendPID != 0 {
		a.byBackend[rec.BackendPID] = rec
	}
	// A session that moved to another backend no longer owns the old one.
	for pid, s := range a.byBackend {
		if s.SessionID == rec.SessionID && pid != rec.BackendPID {
			delete(a.byBackend, pid)
		}
	}
}

func overlay(dst, src *SessionRecord) {
	set := func(d *string, s string) {
		if s != "" {
			*d = s
		}
	}
	set(&dst.ClientAddr, src.ClientAddr)
	set(&dst.PeerLabel, src.PeerLabel)
	set(&dst.OSUser, src.OSUser)
	set(&dst.DBUser, src.DBUser)
	set(&dst.Database, src.Database)
	set(&dst.Context, src.Context)
	set(&dst.ContextSource, src.ContextSource)
	set(&dst.ApplicationName, src.ApplicationName)
	if src.PeerPID != 0 {
		dst.PeerPID = src.PeerPID
	}
	if src.BackendPID != 0 {
		dst.BackendPID = src.BackendPID
	}
}

// ReviewItem is one event of a review with what was learnt about it.
type ReviewItem struct {
	Event   *Event
	Session *SessionRecord // db events: the client session behind the pooler
	Related []string       // same subject on the other side, within the window
	After   *Event         // the latest policy load, enforce toggle or boolean change before it
}

// Review correlates events (in time order) for a joint review.
type Review struct {
	Window  time.Duration // how near in time OS and db events of one subject are related
	Items   []*ReviewItem
	Changes []*Event
	attr    *Attributor
	last    *Event
}

// NewReview starts a review; sessions may be nil (no proxy session log).
func NewReview(sessions *SessionReader, window time.Duration) *Review {
	r := &Review{Window: window}
	if sessions != nil {
		r.attr = NewAttributor(sessions)
	}
	return r
}

// maxReviewItems bounds a review held in memory for its report.
const maxReviewItems = 200000

// ErrReviewTooLarge is returned when more events are selected than a report holds.
var ErrReviewTooLarge = fmt.Errorf("more than %d events selected for the review: narrow it with --since/--until or filters", maxReviewItems)

// Add takes the next event (time order).
func (r *Review) Add(e *Event) error {
	switch e.RecordType {
	case TypeMACPolicyLoad, TypeMACStatus, TypeMACConfigChange:
		r.Changes = append(r.Changes, e)
		r.last = e
		return nil
	}
	if !e.IsAccess() {
		return nil
	}
	if len(r.Items) >= maxReviewItems {
		return ErrReviewTooLarge
	}
	it := &ReviewItem{Event: e, After: r.last}
	if e.Source == SourceDB && r.attr != nil && e.PID != 0 {
		s, err := r.attr.Session(e.PID, e.Time)
		if err != nil {
			return err
		}
		it.Session = s
	}
	// Relate to earlier events of the other side within the window (the list is in
	// time order, so walk back until out of the window).
	for i := len(r.Items) - 1; i >= 0; i-- {
		o := r.Items[i]
		if e.Time.Sub(o.Event.Time) > r.Window {
			break
		}
		if o.Event.Source == e.Source || !sameSubject(o, it) {
			continue
		}
		o.Related = append(o.Related, describe(it))
		it.Related = append(it.Related, describe(o))
	}
	r.Items = append(r.Items, it)
	return nil
}

// sameSubject: the same SELinux domain, or the OS process that is the session's peer.
func sameSubject(a, b *ReviewItem) bool {
	if ContextType(a.Event.SContext) == ContextType(b.Event.SContext) {
		return true
	}
	for _, p := range [][2]*ReviewItem{{a, b}, {b, a}} {
		db, os := p[0], p[1]
		if db.Session != nil && db.Session.PeerPID != 0 && os.Event.Source == SourceOS && os.Event.PID == db.Session.PeerPID {
			return true
		}
	}
	return false
}

func describe(it *ReviewItem) string {
	e := it.Event
	s := fmt.Sprintf("%s %s %s {%s} %s", e.Time.UTC().Format("15:04:05.000"), e.Source, e.Result, joinPerms(e.Perms), e.TClass)
	if it.Session != nil {
		s += " session " + it.Session.SessionID
	}
	return s
}

// WriteText prints the review.
func (r *Review) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "Joint review: %d access decisions, %d policy/enforce/boolean changes\n", len(r.Items), len(r.Changes))
	if len(r.Changes) > 0 {
		fmt.Fprintln(bw, "\nChanges:")
		for _, c := range r.Changes {
			fmt.Fprintf(bw, "  %s  %s %s %s\n", c.Time.UTC().Format(time.RFC3339Nano), c.Node, c.RecordType, c.Name)
		}
	}
	fmt.Fprintln(bw, "\nEvents:")
	for _, it := range r.Items {
		e := it.Event
		res := e.Result
		if e.Permissive {
			res += "(permissive)"
		}
		fmt.Fprintf(bw, "  %s  %s %s {%s} %s -> %s:%s %s\n", e.Time.UTC().Format("2006-01-02T15:04:05.000Z"), e.Source, res,
			joinPerms(e.Perms), ContextType(e.SContext), ContextType(e.TContext), e.TClass, oneLine(e.Name, 60))
		if it.Session != nil {
			s := it.Session
			fmt.Fprintf(bw, "      session %s client %s peer pid %d label %s os_user %s db_user %s context %s (%s)\n",
				s.SessionID, dash(s.ClientAddr), s.PeerPID, dash(s.PeerLabel), dash(s.OSUser), dash(s.DBUser), dash(s.Context), dash(s.ContextSource))
		} else if e.Source == SourceDB {
			fmt.Fprintf(bw, "      backend pid %d %s@%s (no proxy session)\n", e.PID, e.DBUser, e.Database)
		}
		if e.Statement != "" {
			fmt.Fprintf(bw, "      statement: %s\n", oneLine(e.Statement, 100))
		}
		for _, rel := range it.Related {
			fmt.Fprintf(bw, "      related: %s\n", rel)
		}
		if it.After != nil {
			fmt.Fprintf(bw, "      after %s %s at %s (%s before)\n", it.After.RecordType, it.After.Name,
				it.After.Time.UTC().Format("15:04:05.000"), e.Time.Sub(it.After.Time).Round(time.Millisecond))
		}
	}
	return bw.Flush()
}
