package audit

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	now := time.Date(2026, 11, 25, 14, 37, 12, 0, loc) // a Wednesday
	tests := map[string]time.Time{
		"now":                         now,
		"recent":                      now.Add(-10 * time.Minute),
		"this-hour":                   time.Date(2026, 11, 25, 14, 0, 0, 0, loc),
		"today":                       time.Date(2026, 11, 25, 0, 0, 0, 0, loc),
		"yesterday":                   time.Date(2026, 11, 24, 0, 0, 0, 0, loc),
		"this-week":                   time.Date(2026, 11, 22, 0, 0, 0, 0, loc),
		"week-ago":                    time.Date(2026, 11, 18, 0, 0, 0, 0, loc),
		"this-month":                  time.Date(2026, 11, 1, 0, 0, 0, 0, loc),
		"this-year":                   time.Date(2026, 1, 1, 0, 0, 0, 0, loc),
		"2026-11-23T19:49:35Z":        time.Date(2026, 11, 23, 19, 49, 35, 0, time.UTC),
		"2026-11-23":                  time.Date(2026, 11, 23, 0, 0, 0, 0, loc),
		"2026-11-23T19:49:35.5+01:00": time.Date(2026, 11, 23, 18, 49, 35, 5e8, time.UTC),
	}
	for in, want := range tests {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if b, err := ParseTime("boot", now); err != nil || !b.Before(now) {
		t.Errorf("boot = %v, %v", b, err)
	}
	if _, err := ParseTime("last tuesday", now); err == nil {
		t.Error("ParseTime accepted nonsense")
	}
}

func TestFilterContexts(t *testing.T) {
	e := &Event{SContext: "system_u:system_r:httpd_t:s0", TContext: "system_u:object_r:shadow_t:s0", Result: ResultDenied, Perms: []string{"read", "open"}, TClass: "file"}
	tests := []struct {
		f    Filter
		want bool
	}{
		{Filter{SContext: "httpd"}, true},
		{Filter{SContext: "httpd", Exact: true}, false},
		{Filter{SContext: "httpd_t", Exact: true}, true},
		{Filter{SContext: "system_u:system_r:httpd_t:s0", Exact: true}, true},
		{Filter{TContext: "shadow_t", Perms: []string{"write", "open"}}, true},
		{Filter{Perms: []string{"write"}}, false},
		{Filter{Classes: []string{"dir"}}, false},
		{Filter{Results: []string{ResultAllowed}}, false},
		{Filter{Source: SourceDB}, false},
		{Filter{Node: "x"}, false},
	}
	for i, tt := range tests {
		if got := tt.f.Match(e); got != tt.want {
			t.Errorf("%d: %+v Match = %v, want %v", i, tt.f, got, tt.want)
		}
	}
}
