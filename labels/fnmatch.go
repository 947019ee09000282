package labels

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// fnmatch reports whether name matches the shell pattern as fnmatch(3) with flags 0
// does it: '*' matches any run of characters (dots included), '?' any one character,
// "[...]" a bracket expression (ranges, "!" or "^" negation, [:class:]), and a backslash
// quotes the next character. A malformed bracket matches a literal '['.
func fnmatch(pattern, name string) bool {
	// Iterative matching with one backtrack point for the last '*', which is enough
	// for shell patterns and linear in practice.
	px, nx := 0, 0
	starPx, starNx := -1, -1
	for nx < len(name) || px < len(pattern) {
		if px < len(pattern) {
			switch pattern[px] {
			case '*':
				for px < len(pattern) && pattern[px] == '*' {
					px++
				}
				starPx, starNx = px, nx
				continue
			case '?':
				if nx < len(name) {
					_, w := utf8.DecodeRuneInString(name[nx:])
					px++
					nx += w
					continue
				}
			case '[':
				if nx < len(name) {
					r, w := utf8.DecodeRuneInString(name[nx:])
					if ok, matched, end := matchBracket(pattern, px, r); ok {
						if matched {
							px = end
							nx += w
							continue
						}
						break
					}
					// Not a valid bracket: '[' is literal.
					if r == '[' {
						px++
						nx += w
						continue
					}
				}
			case '\\':
				if px+1 < len(pattern) {
					pr, pw := utf8.DecodeRuneInString(pattern[px+1:])
					if nx < len(name) {
						r, w := utf8.DecodeRuneInString(name[nx:])
						if r == pr {
							px += 1 + pw
							nx += w
							continue
						}
					}
					break
				}
				// A trailing backslash makes the pattern invalid: glibc matches nothing.
				return false
			default:
				pr, pw := utf8.DecodeRuneInString(pattern[px:])
				if nx < len(name) {
					r, w := utf8.DecodeRuneInString(name[nx:])
					if r == pr {
						px += pw
						nx += w
						continue
					}
				}
			}
		}
		if starPx >= 0 && starNx < len(name) {
			_, w := utf8.DecodeRuneInString(name[starNx:])
			starNx += w
			px, nx = starPx, starNx
			continue
		}
		return false
	}
	return true
}

// matchBracket evaluates the bracket expression at pattern[start] == '[' against r.
// ok is false when the expression is not closed (then '[' is an ordinary character).
func matchBracket(pattern string, start int, r rune) (ok, matched bool, end int) {
	i := start + 1
	negate := false
	if i < len(pattern) && (pattern[i] == '!' || pattern[i] == '^') {
		negate = true
		i++
	}
	first := true
	for i < len(pattern) {
		c := pattern[i]
		if c == ']' && !first {
			return true, matched != negate, i + 1
		}
		first = false
		if c == '[' && i+1 < len(pattern) && pattern[i+1] == ':' {
			if j := indexFrom(pattern, i+2, ":]"); j >= 0 {
				if classMatch(pattern[i+2:j], r) {
					matched = true
				}
				i = j + 2
				continue
			}
		}
		lo, w := bracketChar(pattern, i)
		if w == 0 {
			return false, false, 0
		}
		i += w
		hi := lo
		if i+1 < len(pattern) && pattern[i] == '-' && pattern[i+1] != ']' {
			h, w2 := bracketChar(pattern, i+1)
			if w2 == 0 {
				return false, false, 0
			}
			hi = h
			i += 1 + w2
		}
		if lo <= r && r <= hi {
			matched = true
		}
	}
	return false, false, 0
}

// bracketChar reads one (possibly backslash-quoted) character inside a bracket.
func bracketChar(pattern string, i int) (rune, int) {
	if pattern[i] == '\\' {
		if i+1 >= len(pattern) {
			return 0, 0
		}
		r, w := utf8.DecodeRuneInString(pattern[i+1:])
		return r, 1 + w
	}
	r, w := utf8.DecodeRuneInString(pattern[i:])
	return r, w
}

func indexFrom(s string, from int, sub string) int {
	for i := from; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func classMatch(class string, r rune) bool {
	switch class {
	case "alnum":
		return unicode.IsLetter(r) || unicode.IsDigit(r)
	case "alpha":
		return unicode.IsLetter(r)
	case "blank":
		return r == ' ' || r == '\t'
	case "cntrl":
		return unicode.IsControl(r)
	case "digit":
		return r >= '0' && r <= '9'
	case "graph":
		return unicode.IsGraphic(r) && !unicode.IsSpace(r)
	case "lower":
		return unicode.IsLower(r)
	case "print":
		return unicode.IsPrint(r)
	case "punct":
		return unicode.IsPunct(r) || unicode.IsSymbol(r)
	case "space":
		return unicode.IsSpace(r)
	case "upper":
		return unicode.IsUpper(r)
	case "xdigit":
		return r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F'
	}
	return false
}

// pattern is a spec pattern made ready for matching many keys. One of only literal
// characters and '*' (the common "*.public.*") is matched segment by segment with
// strings.Index; anything else, and any key that is not valid UTF-8, goes to fnmatch.
type pattern struct {
	text string
	segs []string // text split at '*'; nil when fnmatch must decide
}

func compilePattern(p string) pattern {
	if strings.ContainsAny(p, `?[\`) || !utf8.ValidString(p) {
		return pattern{text: p}
	}
	return pattern{text: p, segs: strings.Split(p, "*")}
}

// match reports what fnmatch(p.text, name) would.
func (p pattern) match(name string) bool {
	if p.segs == nil || !utf8.ValidString(name) {
		return fnmatch(p.text, name)
	}
	if len(p.segs) == 1 {
		return name == p.text
	}
	first, last := p.segs[0], p.segs[len(p.segs)-1]
	if len(name) < len(first)+len(last) || !strings.HasPrefix(name, first) || !strings.HasSuffix(name, last) {
		return false
	}
	// Between the fixed ends, each middle segment at its leftmost place after the one
	// before: if any placement works, that one does.
	rest := name[len(first) : len(name)-len(last)]
	for _, s := range p.segs[1 : len(p.segs)-1] {
		i := strings.Index(rest, s)
		if i < 0 {
			return false
		}
		rest = rest[i+len(s):]
	}
	return true
}
