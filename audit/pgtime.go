package audit

import (
	"errors"
	"strconv"
	"time"
)

// parsePGTime reads PostgreSQL's log timestamp "2006-01-02 15:04:05[.000] ZONE" (the
// %t/%m/%s forms and csvlog/jsonlog). ZONE is UTC, GMT, Z, a numeric offset (+01,
// -0530, +05:30) or an abbreviation, which is read in loc (nil: UTC).
func parsePGTime(s string, loc *time.Location) (time.Time, error) {
	t, ok := parsePGTimeOK(s, loc)
	if !ok {
		// Made only on failure: quoting every timestamp read cost an eighth of the
		// reader's time.
		return time.Time{}, errors.New("bad timestamp " + strconv.Quote(s))
	}
	return t, nil
}

func parsePGTimeOK(s string, loc *time.Location) (time.Time, bool) {
	const bad = false
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, bad
	}
	num := func(a, b int) int {
		n := 0
		for i := a; i < b; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, mon, day := num(0, 4), num(5, 7), num(8, 10)
	hh, mm, ss := num(11, 13), num(14, 16), num(17, 19)
	if year < 0 || mon < 1 || mon > 12 || day < 1 || day > 31 || hh < 0 || hh > 24 || mm < 0 || mm > 59 || ss < 0 || ss > 60 {
		return time.Time{}, bad
	}
	nsec, zone, ok := pgFraction(s[19:])
	if !ok {
		return time.Time{}, bad
	}
	var l *time.Location
	switch zone {
	case "", "UTC", "GMT", "Z", "UCT":
		l = time.UTC
	default:
		if zone[0] == '+' || zone[0] == '-' {
			off, ok := parseOffset(zone)
			if !ok {
				return time.Time{}, bad
			}
			l = time.FixedZone(zone, off)
		} else {
			l = loc
			if l == nil {
				l = time.UTC
			}
		}
	}
	return time.Date(year, time.Month(mon), day, hh, mm, ss, nsec, l), true
}

// pgFraction reads what follows a timestamp's seconds: an optional ".digits"
// fraction (nanoseconds returned) and an optional " ZONE".
func pgFraction(s string) (nsec int, zone string, ok bool) {
	i := 0
	if i < len(s) && s[i] == '.' {
		i++
		digits := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if digits < 9 {
				nsec = nsec*10 + int(s[i]-'0')
				digits++
			}
			i++
		}
		if digits == 0 {
			return 0, "", false
		}
		for ; digits < 9; digits++ {
			nsec *= 10
		}
	}
	if i < len(s) {
		if s[i] != ' ' {
			return 0, "", false
		}
		zone = s[i+1:]
	}
	return nsec, zone, true
}

// pgClock reads PostgreSQL timestamps in loc, remembering the last whole second: a
// log has many lines a second, and making a time.Time from its fields each time was a
// tenth of the stderr reader's work. The zero pgClock reads in UTC.
type pgClock struct {
	loc  *time.Location
	last []byte // the last timestamp read (s may be a view of a reused buffer: copied)
	t    time.Time
	sec  []byte // the last whole second's "2006-01-02 15:04:05 ZONE", without the fraction
	base time.Time
}

// parse is parsePGTimeOK(s, c.loc).
func (c *pgClock) parse(s string) (time.Time, bool) {
	if len(c.last) > 0 && s == string(c.last) {
		return c.t, true
	}
	if len(s) >= 19 && len(c.sec) >= 19 && s[:19] == string(c.sec[:19]) {
		if nsec, zone, ok := pgFraction(s[19:]); ok && zone == string(c.sec[19:]) {
			c.t = c.base.Add(time.Duration(nsec))
			c.last = append(c.last[:0], s...)
			return c.t, true
		}
	}
	t, ok := parsePGTimeOK(s, c.loc)
	if ok {
		_, zone, _ := pgFraction(s[19:])
		c.last, c.t = append(c.last[:0], s...), t
		c.sec = append(append(c.sec[:0], s[:19]...), zone...)
		c.base = t.Truncate(time.Second)
	}
	return t, ok
}

// parseOffset reads +HH, +HHMM or +HH:MM into seconds east of UTC.
func parseOffset(z string) (int, bool) {
	sign := 1
	if z[0] == '-' {
		sign = -1
	}
	d := z[1:]
	if len(d) == 5 && d[2] == ':' {
		d = d[:2] + d[3:]
	}
	if len(d) != 2 && len(d) != 4 {
		return 0, false
	}
	n, err := strconv.Atoi(d)
	if err != nil || n < 0 {
		return 0, false
	}
	h, m := n, 0
	if len(d) == 4 {
		h, m = n/100, n%100
	}
	if h > 15 || m > 59 {
		return 0, false
	}
	return sign * (h*3600 + m*60), true
}

// parseEpoch reads %n's "1700000000.123" (seconds with optional fraction).
func parseEpoch(s string) (time.Time, error) {
	sec, frac, _ := cutByte(s, '.')
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, errors.New("bad epoch timestamp " + strconv.Quote(s))
	}
	nsec := 0
	for i := 0; i < len(frac) && i < 9; i++ {
		c := frac[i]
		if c < '0' || c > '9' {
			return time.Time{}, errors.New("bad epoch timestamp " + strconv.Quote(s))
		}
		nsec = nsec*10 + int(c-'0')
	}
	for i := len(frac); i < 9; i++ {
		nsec *= 10
	}
	return time.Unix(n, int64(nsec)).UTC(), nil
}

func cutByte(s string, c byte) (before, after string, found bool) {
	if i := indexByte(s, c); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}
