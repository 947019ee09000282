package audit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// prefixFields are what a stderr line's log_line_prefix told about its record.
type prefixFields struct {
	time      time.Time
	hasTime   bool
	pid       int
	user      string
	database  string
	app       string
	sessionID string
	host      string
}

type prefixToken struct {
	lit string // literal text, when esc == 0
	esc byte   // escape letter
	pad int    // %-10u → 10 (width; the value is trimmed of padding)
}

// Prefix is a compiled log_line_prefix that parses the start of stderr log lines.
type Prefix struct {
	src    string
	tokens []prefixToken
}

// String returns the log_line_prefix it was compiled from.
func (p *Prefix) String() string { return p.src }

// CommonPrefixes are tried, in order, when no log_line_prefix is given: Debian's
// default, PostgreSQL's default, pgBadger's recommendations and older defaults.
var CommonPrefixes = []string{
	"%m [%p] %q%u@%d ",
	"%m [%p] ",
	"%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
	"%t [%p]: user=%u,db=%d,app=%a,client=%h ",
	"%t [%p]: [%l-1] ",
	"%m [%p]: [%l-1] ",
	"%t [%p]: ",
	"%m [%p]: ",
	"%m %u@%d[%p] ",
	"%t [%p-%l] %q%u@%d ",
	"< %m >",
	"%m ",
	"%t ",
	"",
}

// CompilePrefix compiles a log_line_prefix (PostgreSQL's escapes %a %u %d %r %h %b %p
// %P %t %m %n %i %e %c %l %s %v %x %q %Q %%, with optional padding like %-10u).
func CompilePrefix(s string) (*Prefix, error) {
	p := &Prefix{src: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p.tokens = append(p.tokens, prefixToken{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit.WriteByte(s[i])
			continue
		}
		i++
		if i >= len(s) {
			return nil, fmt.Errorf("log_line_prefix %q ends with a lone %%", s)
		}
		if s[i] == '%' {
			lit.WriteByte('%')
			continue
		}
		j := i
		if s[j] == '-' {
			j++
		}
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		pad := 0
		if j > i {
			n, err := strconv.Atoi(strings.TrimPrefix(s[i:j], "-"))
			if err == nil {
				pad = n
			}
		}
		if j >= len(s) {
			return nil, fmt.Errorf("log_line_prefix %q ends inside an escape", s)
		}
		c := s[j]
		if !strings.ContainsRune("audrhbpPtmnieclsvxqQ", rune(c)) {
			return nil, fmt.Errorf("log_line_prefix %q: unknown escape %%%c", s, c)
		}
		flush()
		p.tokens = append(p.tokens, prefixToken{esc: c, pad: pad})
		i = j
	}
	flush()
	return p, nil
}

// levels a stderr message may start with, followed by ":  ".
var levels = []string{"LOG", "ERROR", "STATEMENT", "DETAIL", "HINT", "CONTEXT", "WARNING", "FATAL",
	"NOTICE", "INFO", "QUERY", "LOCATION", "PANIC", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3", "DEBUG4", "DEBUG5"}

// levelAt returns the level and the message start when line[i:] is "LEVEL:  ".
func levelAt(line string, i int) (level string, msg int, ok bool) {
	rest := line[i:]
	c := -1
	for i := 0; i < len(rest) && i < 10; i++ {
		if rest[i] == ':' {
			c = i
			break
		}
	}
	if c < 3 || len(rest) < c+3 || rest[c+1] != ' ' || rest[c+2] != ' ' {
		return "", 0, false
	}
	for _, l := range levels {
		if len(l) == c && rest[:c] == l {
			return l, i + c + 3, true
		}
	}
	return "", 0, false
}

// Match parses line's prefix and returns its fields, level and the offset of the
// message text. line is one line: free text may run over anything else.
func (p *Prefix) Match(line string, loc *time.Location) (f prefixFields, level string, msg int, ok bool) {
	return p.matchClock(line, &pgClock{loc: loc})
}

// matchClock is Match reading timestamps with clk.
func (p *Prefix) matchClock(line string, clk *pgClock) (f prefixFields, level string, msg int, ok bool) {
	ok = p.match(line, 0, 0, &f, clk, &level, &msg)
	return f, level, msg, ok
}

// match matches tokens ti… at line[pos:]. It goes through the tokens in a loop and
// recurses only where there is a choice (%q, free text).
func (p *Prefix) match(line string, ti, pos int, f *prefixFields, clk *pgClock, level *string, msg *int) bool {
	for ; ti < len(p.tokens); ti++ {
		t := &p.tokens[ti]
		rest := line[pos:]
		switch t.esc {
		case 0:
			if !hasLiteral(rest, t.lit) {
				return false
			}
			pos += len(t.lit)
			continue
		case 'q':
			// Non-session processes stop the prefix here.
			saved := *f
			if p.match(line, ti+1, pos, f, clk, level, msg) {
				return true
			}
			*f = saved
			l, m, ok := levelAt(line, pos)
			if ok {
				*level, *msg = l, m
			}
			return ok
		case 'm', 't', 's':
			n := timestampLen(rest)
			if n == 0 {
				return false
			}
			if t.esc != 's' {
				tm, ok := clk.parse(rest[:n])
				if !ok {
					return false
				}
				f.time, f.hasTime = tm, true
			}
			pos += n
			continue
		case 'n':
			n := 0
			for n < len(rest) && (rest[n] >= '0' && rest[n] <= '9' || rest[n] == '.') {
				n++
			}
			tm, err := parseEpoch(rest[:n])
			if err != nil {
				return false
			}
			f.time, f.hasTime = tm, true
			pos += n
			continue
		case 'p', 'l', 'x', 'P':
			n := 0
			for n < len(rest) && rest[n] == ' ' && t.pad > 0 {
				n++
			}
			d, v := n, 0
			for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
				if v < 1<<40 {
					v = v*10 + int(rest[n]-'0')
				}
				n++
			}
			if n == d && t.esc != 'P' {
				return false
			}
			for n < len(rest) && rest[n] == ' ' && t.pad > 0 {
				n++
			}
			if t.esc == 'p' {
				f.pid = v
			}
			pos += n
			continue
		}
		return p.freeText(line, ti, pos, f, clk, level, msg)
	}
	l, m, ok := levelAt(line, pos)
	if ok {
		*level, *msg = l, m
	}
	return ok
}

// freeText matches a free-text escape (%u, %d, %a, ...) at line[pos:]: the shortest
// run after which the rest still matches. When a literal follows, only the places
// where it occurs are tried, found with one scan each.
func (p *Prefix) freeText(line string, ti, pos int, f *prefixFields, clk *pgClock, level *string, msg *int) bool {
	t := &p.tokens[ti]
	rest := line[pos:]
	var next string
	if ti+1 < len(p.tokens) && p.tokens[ti+1].esc == 0 {
		next = p.tokens[ti+1].lit
	}
	for n := 0; n <= len(rest); n++ {
		if next != "" {
			j := strings.Index(rest[n:], next)
			if j < 0 {
				return false
			}
			n += j
		} else if !p.canFollow(ti+1, rest[n:]) {
			continue
		}
		saved := *f
		v := rest[:n]
		if t.pad != 0 {
			v = strings.TrimSpace(v)
		}
		switch t.esc {
		case 'u':
			f.user = v
		case 'd':
			f.database = v
		case 'a':
			f.app = v
		case 'c':
			f.sessionID = v
		case 'h', 'r':
			f.host = v
		}
		if p.match(line, ti+1, pos+n, f, clk, level, msg) {
			return true
		}
		*f = saved
	}
	return false
}

// hasLiteral is strings.HasPrefix, with the one- and two-byte literals of prefixes
// compared in place.
func hasLiteral(s, lit string) bool {
	switch {
	case len(s) < len(lit):
		return false
	case len(lit) == 1:
		return s[0] == lit[0]
	case len(lit) == 2:
		return s[0] == lit[0] && s[1] == lit[1]
	}
	return s[:len(lit)] == lit
}

// canFollow is a cheap test that token ti can start at s, to prune the free-text scan.
func (p *Prefix) canFollow(ti int, s string) bool {
	if ti == len(p.tokens) {
		_, _, ok := levelAt(s, 0)
		return ok
	}
	t := p.tokens[ti]
	if t.esc == 0 {
		return strings.HasPrefix(s, t.lit)
	}
	return true
}

// timestampLen returns the length of "2006-01-02 15:04:05[.000] ZONE" at s's start, or 0.
func timestampLen(s string) int {
	if len(s) < 19 || s[4] != '-' || s[10] != ' ' || s[13] != ':' {
		return 0
	}
	i := 19
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && s[i] == ' ' {
		j := i + 1
		for j < len(s) && (s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9' || s[j] == '+' || s[j] == '-' || s[j] == ':' && j+1 < len(s) && s[j+1] >= '0' && s[j+1] <= '9') {
			j++
		}
		if j > i+1 && isZone(s[i+1:j]) {
			return j
		}
	}
	return i
}

func isZone(z string) bool {
	if z[0] == '+' || z[0] == '-' {
		_, ok := parseOffset(z)
		return ok
	}
	for i := 0; i < len(z); i++ {
		c := z[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return len(z) <= 6
}
