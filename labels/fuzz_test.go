package labels

import (
	"strings"
	"testing"
)

// Spec files are untrusted input: no panic, and every accepted rule has a known class,
// a pattern and a context that parses.
func FuzzParseSpec(f *testing.F) {
	f.Add("db_table *.public.* system_u:object_r:sepgsql_table_t:s0\n# c\n", "db.public.t1")
	f.Add("db_column\t*.*.*.[a-c]?\tu:r:t:s0:c1\r\n", `db.s."A".b1`)
	f.Add("db_procedure *\\ u:r:t\n", "x")
	f.Fuzz(func(t *testing.T, text, key string) {
		spec, err := ParseSpec(strings.NewReader(text), "fuzz")
		if err != nil {
			return
		}
		for _, r := range spec.Rules {
			if r.Pattern == "" || strings.ContainsAny(r.Pattern, " \t\n#") {
				t.Fatalf("rule with a bad pattern %q", r.Pattern)
			}
			if _, err := ParseContext(r.Context); err != nil {
				t.Fatalf("rule with a bad context %q: %v", r.Context, err)
			}
		}
		m := spec.matcher()
		for _, class := range Classes {
			r1, ok1 := spec.Lookup(class, key)
			r2, ok2 := m.lookup(class, key)
			if ok1 != ok2 || r1 != r2 {
				t.Fatalf("compiled lookup of %s %q = %v %v, Lookup = %v %v", class, key, r2, ok2, r1, ok1)
			}
		}
	})
}

// fnmatch must not panic on any pattern, and an escaped key matches itself.
func FuzzFnmatch(f *testing.F) {
	f.Add("*.s1.t[!0-9]", "db.s1.tx")
	f.Add("[[:alpha:]\\]]*?", "a]b")
	f.Add("\\", "\\")
	f.Add("*.pg_catalog.*.*", "db.pg_catalog.pg_class.relname")
	f.Add("a*a*a", "aaaa")
	f.Add("*é*", "xé")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		want := fnmatch(pattern, name)
		if got := compilePattern(pattern).match(name); got != want {
			t.Fatalf("compiled %q matches %q = %v, fnmatch says %v", pattern, name, got, want)
		}
		if p, ok := EscapePattern(name); ok && !fnmatch(p, name) {
			t.Fatalf("escaped pattern %q does not match %q", p, name)
		}
	})
}
