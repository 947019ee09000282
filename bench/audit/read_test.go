// Package audit benchmarks the auditor's readers on generated logs (go test -bench . ./bench/audit).
package audit_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/sepgadm/sepgadm/audit"
	"github.com/sepgadm/sepgadm/bench/loggen"
)

func benchRead(b *testing.B, gen func(io.Writer, int64, uint64) (loggen.Counts, error), open func(io.Reader) audit.Reader) {
	var buf bytes.Buffer
	c, err := gen(&buf, 16<<20, 1)
	if err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	f := &audit.Filter{Results: []string{audit.ResultDenied}}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r := open(bytes.NewReader(data))
		out, _ := audit.NewOutput("csv", io.Discard)
		n := int64(0)
		for {
			e, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if f.Match(e) {
				n++
				_ = out.Write(e)
			}
		}
		out.Close()
		r.Close()
		if n != c.Denials {
			b.Fatalf("read %d denials, generator wrote %d", n, c.Denials)
		}
	}
}

func BenchmarkAuditReader(b *testing.B) {
	benchRead(b, loggen.AuditLog, func(r io.Reader) audit.Reader { return audit.NewAuditReader(r, nil, "bench", audit.Options{}) })
}

func BenchmarkStderrReader(b *testing.B) {
	benchRead(b, loggen.PGStderrLog, func(r io.Reader) audit.Reader {
		s, _ := audit.NewStderrReader(r, nil, "bench", audit.Options{})
		return s
	})
}
