package proxy

import "strings"

// sqlStatement is what the proxy needs to know of one statement in a client's SQL: its
// words (keywords and identifiers, lower-cased, quoted identifiers as written), in
// order, with comments, string literals and dollar-quoted bodies left out.
type sqlStatement struct{ words []string }

// maxScanWords bounds the words kept per statement: the checks look at the first few
// and at function names, and a hostile statement must not make the proxy allocate.
const maxScanWords = 4096

// scanSQL splits sql into statements the way PostgreSQL's lexer does for what matters
// here: -- and nested /* */ comments, '...' and E'...' strings, "..." identifiers and
// $tag$...$tag$ bodies, separated by semicolons outside all of those. It never fails:
// an unterminated literal runs to the end.
func scanSQL(sql string) []sqlStatement {
	var out []sqlStatement
	var cur sqlStatement
	flush := func() {
		if len(cur.words) > 0 {
			out = append(out, cur)
		}
		cur = sqlStatement{}
	}
	word := func(w string) {
		if len(cur.words) < maxScanWords {
			cur.words = append(cur.words, w)
		}
	}
	for i := 0; i < len(sql); {
		ch := sql[i]
		switch {
		case ch == ';':
			flush()
			i++
		case ch == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case ch == '/' && i+1 < len(sql) && sql[i+1] == '*':
			i = skipComment(sql, i)
		case ch == '\'':
			i = skipString(sql, i+1, false)
		case (ch == 'E' || ch == 'e') && i+1 < len(sql) && sql[i+1] == '\'' && !identByte(prev(sql, i)):
			i = skipString(sql, i+2, true)
		case ch == '"':
			var w string
			w, i = quotedIdent(sql, i+1)
			word(w)
		case ch == '$' && !identByte(prev(sql, i)):
			if tag, ok := dollarTag(sql[i:]); ok {
				end := strings.Index(sql[i+len(tag):], tag)
				if end < 0 {
					i = len(sql)
				} else {
					i += len(tag) + end + len(tag)
				}
			} else {
				i++
			}
		case identStart(ch):
			j := i
			for j < len(sql) && identByte(sql[j]) {
				j++
			}
			word(strings.ToLower(sql[i:j]))
			i = j
		default:
			i++
		}
	}
	flush()
	return out
}

// skipComment returns the index after the /* comment */ (nested, as PostgreSQL's)
// that starts at i.
func skipComment(sql string, i int) int {
	depth := 0
	for i < len(sql) {
		switch {
		case strings.HasPrefix(sql[i:], "/*"):
			depth++
			i += 2
		case strings.HasPrefix(sql[i:], "*/"):
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return i
}

// quotedIdent reads the "identifier" whose body starts at i ("" inside is one quote)
// and returns it with the index after its closing quote.
func quotedIdent(sql string, i int) (string, int) {
	var b strings.Builder
	for i < len(sql) {
		if sql[i] == '"' {
			if i+1 < len(sql) && sql[i+1] == '"' {
				b.WriteByte('"')
				i += 2
				continue
			}
			return b.String(), i + 1
		}
		b.WriteByte(sql[i])
		i++
	}
	return b.String(), i
}

func prev(s string, i int) byte {
	if i == 0 {
		return 0
	}
	return s[i-1]
}

func identStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c >= 0x80
}

func identByte(c byte) bool { return identStart(c) || ('0' <= c && c <= '9') || c == '$' }

// skipString returns the index after the string literal whose body starts at i.
func skipString(s string, i int, backslash bool) int {
	for i < len(s) {
		switch {
		case backslash && s[i] == '\\':
			i += 2
		case s[i] == '\'':
			if i+1 < len(s) && s[i+1] == '\'' {
				i += 2
				continue
			}
			return i + 1
		default:
			i++
		}
	}
	return len(s)
}

// dollarTag returns the $tag$ at the start of s.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		c := s[j]
		if c == '$' {
			return s[:j+1], true
		}
		if !(identStart(c) || (j > 1 && '0' <= c && c <= '9')) {
			return "", false
		}
	}
	return "", false
}

// sessionOnly names the session-level feature that one of the statements in sql uses
// and that cannot work when every transaction may run on another server connection,
// or "". Features hidden in dynamic SQL or functions are not seen; they are harmless
// to other tenants all the same, because a connection is reset before it changes label.
func sessionOnly(sql string) string { return sessionOnlyIn(scanSQL(sql)) }

// sessionOnlyIn is sessionOnly for statements already scanned.
func sessionOnlyIn(sts []sqlStatement) string {
	for _, st := range sts {
		w := st.words
		switch w[0] {
		case "listen":
			return "LISTEN"
		case "prepare":
			return "SQL-level PREPARE (use protocol-level prepared statements)"
		case "deallocate":
			return "SQL-level DEALLOCATE"
		case "declare":
			for i := 1; i+1 < len(w); i++ {
				if w[i] == "with" && w[i+1] == "hold" {
					return "WITH HOLD cursors"
				}
			}
		}
		for _, x := range w {
			switch x {
			case "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared":
				return "session advisory locks (use pg_advisory_xact_lock)"
			}
		}
	}
	return ""
}

// discards reports whether sql may drop the session's prepared statements or reset its
// settings (DISCARD, RESET, SET SESSION AUTHORIZATION and the like).
func discards(sql string) bool { return discardsIn(scanSQL(sql)) }

// discardsIn is discards for statements already scanned.
func discardsIn(sts []sqlStatement) bool {
	for _, st := range sts {
		switch st.words[0] {
		case "discard", "reset":
			return true
		}
	}
	return false
}
