package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Format of an input file.
type Format int

// Input formats.
const (
	FormatAuto Format = iota
	FormatAudit
	FormatPGStderr
	FormatPGCSV
	FormatPGJSON
)

func (f Format) String() string {
	switch f {
	case FormatAudit:
		return "audit"
	case FormatPGStderr:
		return "stderr"
	case FormatPGCSV:
		return "csvlog"
	case FormatPGJSON:
		return "jsonlog"
	}
	return "auto"
}

// maxLine bounds one line (or one stderr/csv record); longer ones are cut and counted
// as malformed, so a file without newlines cannot take all memory.
const maxLine = 4 << 20

// Stats counts what a reader saw. Malformed lines are counted, with the first few
// kept as examples (file:line: reason).
type Stats struct {
	Lines     int64
	Events    int64
	Malformed int64
	Examples  []string
}

const maxExamples = 5

func (s *Stats) bad(name string, line int64, reason string) {
	s.Malformed++
	if len(s.Examples) < maxExamples {
		s.Examples = append(s.Examples, fmt.Sprintf("%s:%d: %s", name, line, reason))
	}
}

// Add adds o's counts to s.
func (s *Stats) Add(o Stats) {
	s.Lines += o.Lines
	s.Events += o.Events
	s.Malformed += o.Malformed
	for _, e := range o.Examples {
		if len(s.Examples) < maxExamples {
			s.Examples = append(s.Examples, e)
		}
	}
}

// ErrMalformed is returned (wrapped) by readers in strict mode at the first bad line.
var ErrMalformed = errors.New("malformed input")

// Reader yields events in the order of its input; Next returns io.EOF at the end.
type Reader interface {
	Next() (*Event, error)
	Stats() Stats
	Close() error
}

// lineReader reads lines of bounded length; the returned slice is valid until the
// next call.
type lineReader struct {
	br   *bufio.Reader
	long []byte
	name string
	n    int64
	cut  bool // the last line was longer than maxLine and was cut
}

func newLineReader(r io.Reader, name string) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 1<<20), name: name}
}

// next returns the next line without its newline, or io.EOF.
func (l *lineReader) next() ([]byte, error) {
	l.cut = false
	line, err := l.br.ReadSlice('\n')
	if err == nil {
		l.n++
		return trimEOL(line), nil
	}
	if errors.Is(err, bufio.ErrBufferFull) {
		l.long = append(l.long[:0], line...)
		for {
			line, err = l.br.ReadSlice('\n')
			if len(l.long) < maxLine {
				room := maxLine - len(l.long)
				if len(line) > room {
					l.long = append(l.long, line[:room]...)
					l.cut = true
				} else {
					l.long = append(l.long, line...)
				}
			} else {
				l.cut = true
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read %s: %w", l.name, err)
		}
		l.n++
		return trimEOL(l.long), nil
	}
	if errors.Is(err, io.EOF) {
		if len(line) == 0 {
			return nil, io.EOF
		}
		l.n++
		return trimEOL(line), nil
	}
	return nil, fmt.Errorf("read %s: %w", l.name, err)
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// Open opens a log file for reading: "-" is stdin; gzip files (by magic number) are
// decompressed. The returned name is for messages.
func Open(ctx context.Context, path string, stdin io.Reader) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var rc io.ReadCloser
	if path == "-" {
		rc = io.NopCloser(stdin)
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open log: %w", err)
		}
		rc = f
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("open gzip log %s: %w", path, err)
		}
		return &readCloser{Reader: zr, closers: []io.Closer{zr, rc}}, nil
	}
	return &readCloser{Reader: br, closers: []io.Closer{rc}}, nil
}

type readCloser struct {
	io.Reader
	closers []io.Closer
}

func (r *readCloser) Close() error {
	var err error
	for _, c := range r.closers {
		if e := c.Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// DetectFormat guesses a log's format from its first bytes.
func DetectFormat(head []byte) Format {
	line := head
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	switch {
	case bytes.HasPrefix(line, []byte("type=")) || bytes.HasPrefix(line, []byte("node=")):
		return FormatAudit
	case bytes.HasPrefix(line, []byte("{")):
		return FormatPGJSON
	case len(line) > 20 && timestampLen(string(line[:min(len(line), 40)])) > 0 &&
		bytes.IndexByte(line, ',') == timestampLen(string(line[:min(len(line), 40)])):
		return FormatPGCSV
	}
	return FormatPGStderr
}
