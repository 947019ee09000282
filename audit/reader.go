package audit

import (
	"bufio"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
)

// OpenReader opens path ("-" for stdin, gzip understood) as a log of the given format
// (FormatAuto: detected from its first line) and returns a Reader of its events.
func OpenReader(ctx context.Context, path string, format Format, stdin io.Reader, opts Options) (Reader, Format, error) {
	rc, err := Open(ctx, path, stdin)
	if err != nil {
		return nil, format, err
	}
	name := path
	if path == "-" {
		name = "stdin"
	}
	// Small: the readers read in blocks larger than this, which then bypass it.
	br := bufio.NewReaderSize(rc, 64<<10)
	if format == FormatAuto {
		head, err := br.Peek(4096)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
			rc.Close()
			return nil, format, fmt.Errorf("read %s: %w", name, err)
		}
		format = DetectFormat(head)
	}
	switch format {
	case FormatAudit:
		return NewAuditReader(br, rc, name, opts), format, nil
	case FormatPGCSV:
		return NewCSVReader(br, rc, name, opts), format, nil
	case FormatPGJSON:
		return NewJSONReader(br, rc, name, opts), format, nil
	default:
		r, err := NewStderrReader(br, rc, name, opts)
		if err != nil {
			rc.Close()
			return nil, format, err
		}
		return r, FormatPGStderr, nil
	}
}

// Merge returns a Reader that yields the events of several time-ordered readers in
// time order (ties in the order of rs). It holds one event per input.
func Merge(rs ...Reader) Reader {
	if len(rs) == 1 {
		return rs[0]
	}
	return &merger{rs: rs}
}

type mergeItem struct {
	ev  *Event
	idx int
}

type mergeHeap []mergeItem

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	if h[i].ev.Time.Equal(h[j].ev.Time) {
		return h[i].idx < h[j].idx
	}
	return h[i].ev.Time.Before(h[j].ev.Time)
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(mergeItem)) }
func (h *mergeHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

type merger struct {
	rs      []Reader
	h       mergeHeap
	started bool
}

func (m *merger) Next() (*Event, error) {
	if !m.started {
		m.started = true
		for i, r := range m.rs {
			ev, err := r.Next()
			if errors.Is(err, io.EOF) {
				continue
			}
			if err != nil {
				return nil, err
			}
			m.h = append(m.h, mergeItem{ev, i})
		}
		heap.Init(&m.h)
	}
	if len(m.h) == 0 {
		return nil, io.EOF
	}
	top := m.h[0]
	ev, err := m.rs[top.idx].Next()
	switch {
	case errors.Is(err, io.EOF):
		heap.Pop(&m.h)
	case err != nil:
		return nil, err
	default:
		m.h[0].ev = ev
		heap.Fix(&m.h, 0)
	}
	return top.ev, nil
}

func (m *merger) Stats() Stats {
	var s Stats
	for _, r := range m.rs {
		s.Add(r.Stats())
	}
	return s
}

func (m *merger) Close() error {
	var err error
	for _, r := range m.rs {
		if e := r.Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}
