package audit

import (
	"fmt"
	"io"
)

// source is what every reader keeps of the file it reads: its name (for messages), the
// options, the counts so far, and what closes it.
type source struct {
	rc    io.Closer
	name  string
	opts  Options
	stats Stats
}

// Stats returns the counts so far.
func (s *source) Stats() Stats { return s.stats }

// Close closes the underlying file.
func (s *source) Close() error {
	if s.rc != nil {
		return s.rc.Close()
	}
	return nil
}

// bad counts a malformed record at line; with Options.Strict it is also the error that
// stops the reader.
func (s *source) bad(line int64, reason string) error {
	s.stats.bad(s.name, line, reason)
	if s.opts.Strict {
		return fmt.Errorf("%s:%d: %s: %w", s.name, line, reason, ErrMalformed)
	}
	return nil
}
