// Package secontext parses, prints and compares SELinux security contexts
// (user:role:type[:range]) and their MLS/MCS ranges: the one parser the proxy's
// configuration, the label manager's spec files and the command line share.
package secontext

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Context is an SELinux security context user:role:type[:range]. Range is nil for a
// context without an MLS/MCS part.
type Context struct {
	User, Role, Type string
	Range            *Range
}

// Range is an MLS/MCS range low[-high]; High dominates Low.
type Range struct {
	Low, High Level
}

// Level is a sensitivity sN with a set of categories, kept normalised: sorted, disjoint,
// non-adjacent intervals of category numbers.
type Level struct {
	Sens int
	Cats []CatSpan
}

// CatSpan is the categories cLo through cHi (Lo <= Hi).
type CatSpan struct{ Lo, Hi int }

// maxIndex bounds sensitivity and category numbers: far above any policy's (refpolicy
// has s0–s15 and c0–c1023), small enough that no input can make a parser loop for long.
const maxIndex = 1 << 16

// ContextError says what is wrong with a context and where: Offset is the byte offset
// of the bad part (Part) in Input.
type ContextError struct {
	Input  string
	Offset int
	Part   string
	Msg    string
}

func (e *ContextError) Error() string {
	if e.Part == "" {
		return fmt.Sprintf("invalid context %q: %s (at byte %d)", e.Input, e.Msg, e.Offset)
	}
	return fmt.Sprintf("invalid context %q: %s: %q at byte %d", e.Input, e.Msg, e.Part, e.Offset)
}

// Parse parses a raw context such as system_u:object_r:sepgsql_table_t:s0:c1,c3.c5.
func Parse(s string) (Context, error) {
	fail := func(off int, part, msg string) (Context, error) {
		return Context{}, &ContextError{Input: s, Offset: off, Part: part, Msg: msg}
	}
	var c Context
	rest, off := s, 0
	names := [3]string{"user", "role", "type"}
	for i, what := range names {
		var field string
		if j := strings.IndexByte(rest, ':'); j >= 0 {
			field = rest[:j]
			rest = rest[j+1:]
		} else {
			field, rest = rest, ""
			if i < 2 {
				if field == "" {
					return fail(off, "", "missing "+what)
				}
				return fail(off+len(field), "", fmt.Sprintf("missing %s after %q", names[i+1], field))
			}
		}
		if err := checkIdent(field); err != "" {
			return fail(off, field, what+" "+err)
		}
		switch i {
		case 0:
			c.User = field
		case 1:
			c.Role = field
		case 2:
			c.Type = field
		}
		off += len(field) + 1
	}
	if off > len(s) { // no level part
		return c, nil
	}
	r, err := parseRange(rest, off, s)
	if err != nil {
		return Context{}, err
	}
	c.Range = &r
	return c, nil
}

// MustParse is Parse for constants in tests and examples; it panics.
func MustParse(s string) Context {
	c, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return c
}

func checkIdent(s string) string {
	if s == "" {
		return "is empty"
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch == '_':
		case i > 0 && (ch >= '0' && ch <= '9' || ch == '.' || ch == '-'):
		default:
			return fmt.Sprintf("has a bad character %q at position %d", ch, i)
		}
	}
	return ""
}

// ParseRange parses an MLS/MCS range such as s0-s0:c0.c1023 or a single level.
func ParseRange(s string) (Range, error) { return parseRange(s, 0, s) }

// ParseLevel parses one level such as s1:c1,c3.c5.
func ParseLevel(s string) (Level, error) { return parseLevel(s, 0, s) }

func parseRange(s string, base int, input string) (Range, error) {
	lowStr, highStr, hasHigh := strings.Cut(s, "-")
	low, err := parseLevel(lowStr, base, input)
	if err != nil {
		return Range{}, err
	}
	if !hasHigh {
		return Range{Low: low, High: low}, nil
	}
	hbase := base + len(lowStr) + 1
	high, err := parseLevel(highStr, hbase, input)
	if err != nil {
		return Range{}, err
	}
	if !high.Dominates(low) {
		return Range{}, &ContextError{Input: input, Offset: hbase, Part: highStr,
			Msg: fmt.Sprintf("high level does not dominate low level %s", low)}
	}
	return Range{Low: low, High: high}, nil
}

func parseLevel(s string, base int, input string) (Level, error) {
	fail := func(off int, part, msg string) (Level, error) {
		return Level{}, &ContextError{Input: input, Offset: base + off, Part: part, Msg: msg}
	}
	sensStr, catStr, hasCats := strings.Cut(s, ":")
	sens, ok := parseIndex(sensStr, 's')
	if !ok {
		return fail(0, sensStr, "sensitivity must be s0, s1, …")
	}
	l := Level{Sens: sens}
	if !hasCats {
		return l, nil
	}
	off := len(sensStr) + 1
	if catStr == "" {
		return fail(off, "", "empty category set after ':'")
	}
	for _, item := range strings.Split(catStr, ",") {
		loStr, hiStr, isSpan := strings.Cut(item, ".")
		lo, ok := parseIndex(loStr, 'c')
		if !ok {
			return fail(off, item, "category must be c0, c1, … or a span cN.cM")
		}
		hi := lo
		if isSpan {
			if hi, ok = parseIndex(hiStr, 'c'); !ok {
				return fail(off+len(loStr)+1, hiStr, "category span must end in c0, c1, …")
			}
			if hi <= lo {
				return fail(off, item, "category span must go upwards")
			}
		}
		l.Cats = append(l.Cats, CatSpan{lo, hi})
		off += len(item) + 1
	}
	l.Cats = normaliseCats(l.Cats)
	return l, nil
}

// parseIndex reads prefix followed by a decimal number without leading zeros.
func parseIndex(s string, prefix byte) (int, bool) {
	if len(s) < 2 || s[0] != prefix || (s[1] == '0' && len(s) > 2) {
		return 0, false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s[1:])
	if err != nil || n >= maxIndex {
		return 0, false
	}
	return n, true
}

// normaliseCats sorts spans and merges overlapping and adjacent ones.
func normaliseCats(in []CatSpan) []CatSpan {
	if len(in) == 0 {
		return nil
	}
	s := append([]CatSpan(nil), in...)
	sort.Slice(s, func(i, j int) bool { return s[i].Lo < s[j].Lo })
	out := s[:1]
	for _, c := range s[1:] {
		last := &out[len(out)-1]
		if c.Lo <= last.Hi+1 {
			if c.Hi > last.Hi {
				last.Hi = c.Hi
			}
			continue
		}
		out = append(out, c)
	}
	return out
}

// String prints the context in the kernel's canonical form.
func (c Context) String() string {
	s := c.User + ":" + c.Role + ":" + c.Type
	if c.Range != nil {
		s += ":" + c.Range.String()
	}
	return s
}

// String prints low, or low-high when they differ, as the kernel does.
func (r Range) String() string {
	if r.Low.Equal(r.High) {
		return r.Low.String()
	}
	return r.Low.String() + "-" + r.High.String()
}

// String prints sN[:cats] with runs of three or more categories as cA.cB and pairs as
// cA,cB, as the kernel prints them.
func (l Level) String() string {
	var b strings.Builder
	b.WriteString("s" + strconv.Itoa(l.Sens))
	for i, c := range l.Cats {
		if i == 0 {
			b.WriteByte(':')
		} else {
			b.WriteByte(',')
		}
		b.WriteString("c" + strconv.Itoa(c.Lo))
		switch {
		case c.Hi == c.Lo+1:
			b.WriteString(",c" + strconv.Itoa(c.Hi))
		case c.Hi > c.Lo:
			b.WriteString(".c" + strconv.Itoa(c.Hi))
		}
	}
	return b.String()
}

// Equal reports whether two levels are the same.
func (l Level) Equal(o Level) bool {
	if l.Sens != o.Sens || len(l.Cats) != len(o.Cats) {
		return false
	}
	for i := range l.Cats {
		if l.Cats[i] != o.Cats[i] {
			return false
		}
	}
	return true
}

// Dominates reports whether l dominates o: a sensitivity at least as high and a superset
// of o's categories.
func (l Level) Dominates(o Level) bool {
	if l.Sens < o.Sens {
		return false
	}
	// Every span of o must lie inside one span of l (l's spans are disjoint and
	// non-adjacent, so a span of o cannot straddle two of them).
	j := 0
	for _, c := range o.Cats {
		for j < len(l.Cats) && l.Cats[j].Hi < c.Lo {
			j++
		}
		if j == len(l.Cats) || l.Cats[j].Lo > c.Lo || l.Cats[j].Hi < c.Hi {
			return false
		}
	}
	return true
}

// Contains reports whether range o lies within r.
func (r Range) Contains(o Range) bool {
	return o.Low.Dominates(r.Low) && r.High.Dominates(o.High)
}

// TypeOf returns the type field of a context as written, without checking the rest:
// for log readers that must take whatever a log holds. A string with fewer than three
// fields is returned whole.
func TypeOf(ctx string) string {
	i := strings.IndexByte(ctx, ':')
	if i < 0 {
		return ctx
	}
	rest := ctx[i+1:]
	j := strings.IndexByte(rest, ':')
	if j < 0 {
		return ctx
	}
	rest = rest[j+1:]
	if k := strings.IndexByte(rest, ':'); k >= 0 {
		return rest[:k]
	}
	return rest
}
