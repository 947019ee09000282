package labels

import (
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
