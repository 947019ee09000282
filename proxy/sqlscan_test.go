package proxy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestScanSQL(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want [][]string
	}{
		{"SELECT 1", [][]string{{"select"}}},
		{"select 1; PREPARE p AS select 2;", [][]string{{"select"}, {"prepare", "p", "as", "select"}}},
		{"/**/PREPARE x", [][]string{{"prepare", "x"}}},
		{"/* a /* nested */ comment */ Listen x", [][]string{{"listen", "x"}}},
		{"-- PREPARE x\nSELECT 1", [][]string{{"select"}}},
		{"SELECT 'PREPARE; x' ; select 'it''s'", [][]string{{"select"}, {"select"}}},
		{`SELECT E'\'; PREPARE x AS' FROM t`, [][]string{{"select", "from", "t"}}},
		{`SELECT "My;Table" FROM "a""b"`, [][]string{{"select", "My;Table", "from", `a"b`}}},
		{"DO $$ BEGIN PERFORM 1; END $$; LISTEN c", [][]string{{"do"}, {"listen", "c"}}},
		{"DO $body$ x $$ y $body$", [][]string{{"do"}}},
		{"SELECT $1, a$b FROM t", [][]string{{"select", "a$b", "from", "t"}}},
		{"SELECT 'unterminated", [][]string{{"select"}}},
		{";;  ;", nil},
	} {
		var got [][]string
		for _, st := range scanSQL(tc.sql) {
			got = append(got, st.words)
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("scanSQL(%q) (-want +got):\n%s", tc.sql, d)
		}
	}
}

func TestSessionOnly(t *testing.T) {
	for _, tc := range []struct {
		sql, want string
	}{
		{"SELECT 1", ""},
		{"LISTEN c", "LISTEN"},
		{"  /* x */ listen c", "LISTEN"},
		{"SELECT 1; LISTEN c", "LISTEN"},
		{"SELECT 'LISTEN c'", ""},
		{"UNLISTEN *", ""},
		{"PREPARE p AS SELECT 1", "SQL-level PREPARE (use protocol-level prepared statements)"},
		{"/**/PrEpArE p AS SELECT 1", "SQL-level PREPARE (use protocol-level prepared statements)"},
		{"SELECT 1 AS prepare", ""},
		{"DEALLOCATE ALL", "SQL-level DEALLOCATE"},
		{"deallocate prepare p", "SQL-level DEALLOCATE"},
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", "WITH HOLD cursors"},
		{"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", ""},
		{"SELECT pg_advisory_lock(1)", "session advisory locks (use pg_advisory_xact_lock)"},
		{"SELECT PG_TRY_ADVISORY_LOCK_SHARED(1)", "session advisory locks (use pg_advisory_xact_lock)"},
		{"SELECT pg_advisory_xact_lock(1)", ""},
		{"SELECT 'pg_advisory_lock(1)'", ""},
	} {
		if got := sessionOnly(tc.sql); got != tc.want {
			t.Errorf("sessionOnly(%q) = %q, want %q", tc.sql, got, tc.want)
		}
	}
}

// FuzzScanSQL: any input is scanned without a panic, into statements of at least one
// and at most maxScanWords words.
func FuzzScanSQL(f *testing.F) {
	for _, s := range []string{"SELECT 1; PREPARE p AS SELECT 1", "/* /* */ */ x", "E'\\''", "$a$ $a$", `"x""y"`, "--x\ny"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		for _, st := range scanSQL(sql) {
			if len(st.words) == 0 || len(st.words) > maxScanWords {
				t.Fatalf("statement with %d words", len(st.words))
			}
		}
		_ = sessionOnly(sql)
	})
}
