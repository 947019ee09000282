package audit

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAppendTime(t *testing.T) {
	loc := time.FixedZone("x", -5*3600-30*60)
	for _, tm := range []time.Time{
		time.Unix(0, 0),
		time.Unix(1795000000, 95000000),
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, loc),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 60, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		want := tm.UTC().AppendFormat([]byte("x"), TimeLayout)
		if diff := cmp.Diff(string(want), string(appendTime([]byte("x"), tm))); diff != "" {
			t.Errorf("appendTime(%v) (-want +got):\n%s", tm, diff)
		}
	}
}
