package audit

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Filter selects events like ausearch. Zero fields select everything.
type Filter struct {
	Since, Until time.Time
	Results      []string // denied, allowed, granted
	SContext     string   // type or full context; substring unless Exact
	TContext     string
	Exact        bool
	Classes      []string
	Perms        []string // any of
	Source       string   // db or os
	Node         string
}

// AccessOnly reports whether only access decisions can match (so readers may skip
// other records).
func (f *Filter) AccessOnly() bool {
	return len(f.Results) > 0 || f.SContext != "" || f.TContext != "" || len(f.Classes) > 0 || len(f.Perms) > 0
}

// Match reports whether e passes the filter.
func (f *Filter) Match(e *Event) bool {
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && e.Time.After(f.Until) {
		return false
	}
	if f.Source != "" && e.Source != f.Source {
		return false
	}
	if f.Node != "" && e.Node != f.Node {
		return false
	}
	if len(f.Results) > 0 && !slices.Contains(f.Results, e.Result) {
		return false
	}
	if len(f.Classes) > 0 && !slices.Contains(f.Classes, e.TClass) {
		return false
	}
	if len(f.Perms) > 0 {
		ok := false
		for _, p := range e.Perms {
			if slices.Contains(f.Perms, p) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if f.SContext != "" && !f.contextMatch(e.SContext, f.SContext) {
		return false
	}
	if f.TContext != "" && !f.contextMatch(e.TContext, f.TContext) {
		return false
	}
	return true
}

func (f *Filter) contextMatch(ctx, want string) bool {
	if ctx == "" {
		return false
	}
	if f.Exact {
		return ctx == want || ContextType(ctx) == want
	}
	return strings.Contains(ctx, want)
}

// TimeKeywords are the words ParseTime accepts besides RFC 3339 (as ausearch -ts/-te).
var TimeKeywords = []string{"now", "recent", "this-hour", "boot", "today", "yesterday",
	"this-week", "week-ago", "this-month", "this-year"}

// ParseTime reads an RFC 3339 time, a date (2006-01-02, local midnight) or one of
// TimeKeywords relative to now in now's location: recent is ten minutes ago, this-week
// starts on Sunday (C locale, as ausearch), boot is read from /proc/uptime.
func ParseTime(s string, now time.Time) (time.Time, error) {
	loc := now.Location()
	midnight := func(t time.Time) time.Time {
		y, m, d := t.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, loc)
	}
	switch s {
	case "now":
		return now, nil
	case "recent":
		return now.Add(-10 * time.Minute), nil
	case "this-hour":
		return now.Truncate(time.Hour), nil
	case "boot":
		return bootTime(now)
	case "today":
		return midnight(now), nil
	case "yesterday":
		return midnight(now).AddDate(0, 0, -1), nil
	case "this-week":
		return midnight(now).AddDate(0, 0, -int(now.Weekday())), nil
	case "week-ago":
		return midnight(now).AddDate(0, 0, -7), nil
	case "this-month":
		y, m, _ := now.Date()
		return time.Date(y, m, 1, 0, 0, 0, 0, loc), nil
	case "this-year":
		return time.Date(now.Year(), 1, 1, 0, 0, 0, 0, loc), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, loc); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("time %q is neither RFC 3339 (2006-01-02T15:04:05Z) nor one of %s", s, strings.Join(TimeKeywords, ", "))
}

func bootTime(now time.Time) (time.Time, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return time.Time{}, fmt.Errorf("read boot time: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return time.Time{}, fmt.Errorf("read boot time: empty /proc/uptime")
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("read boot time: %w", err)
	}
	return now.Add(-time.Duration(up * float64(time.Second))), nil
}
