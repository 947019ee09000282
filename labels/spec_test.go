package labels

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// golden compares got with testdata/NAME, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// The oracle file was written by glibc's fnmatch(3) itself (see its first line).
func TestFnmatchAgreesWithGlibc(t *testing.T) {
	f, err := os.Open("testdata/fnmatch_glibc.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, "\t")
		if len(parts) != 3 {
			t.Fatalf("bad oracle line %q", line)
		}
		n++
		want := parts[2] == "match"
		if got := fnmatch(parts[0], parts[1]); got != want {
			t.Errorf("fnmatch(%q, %q) = %v, glibc says %v", parts[0], parts[1], got, want)
		}
	}
	if n < 40 {
		t.Fatalf("only %d oracle cases", n)
	}
}

func readKeys(t *testing.T) [][2]string {
	t.Helper()
	b, err := os.ReadFile("testdata/spec/keys.txt")
	if err != nil {
		t.Fatal(err)
	}
	var keys [][2]string
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		class, key, _ := strings.Cut(line, " ")
		keys = append(keys, [2]string{class, key})
	}
	return keys
}

// Golden lookups: every spec file in testdata/spec matched against keys.txt.
func TestSpecLookupGolden(t *testing.T) {
	keys := readKeys(t)
	for _, name := range []string{"system.sepgsql_contexts", "ordered.spec"} {
		t.Run(name, func(t *testing.T) {
			spec, err := ReadSpecFile(filepath.Join("testdata/spec", name))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, k := range keys {
				if r, ok := spec.Lookup(k[0], k[1]); ok {
					fmt.Fprintf(&b, "%s %s -> %s (line %d)\n", k[0], k[1], r.Context, r.Line)
				} else {
					fmt.Fprintf(&b, "%s %s -> no match\n", k[0], k[1])
				}
			}
			golden(t, "spec/"+name+".golden", b.String())
		})
	}
}

func TestSpecSyntaxErrorsNameFileAndLine(t *testing.T) {
	_, err := ReadSpecFile("testdata/spec/bad.spec")
	if err == nil {
		t.Fatal("bad.spec parsed")
	}
	golden(t, "spec/bad.spec.golden", err.Error()+"\n")
}

func TestParseSpecKeepsOrderAndContexts(t *testing.T) {
	in := "db_table\t*.s1.*  u:r:t:s0:c1,c0 # x\r\n#only a comment\n\ndb_table *.s1.t1 u:r:t2:s0"
	spec, err := ParseSpec(strings.NewReader(in), "inline")
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Class: "db_table", Pattern: "*.s1.*", Context: "u:r:t:s0:c1,c0", Line: 1},
		{Class: "db_table", Pattern: "*.s1.t1", Context: "u:r:t2:s0", Line: 4},
	}
	if diff := cmp.Diff(want, spec.Rules); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
}

func TestPlanAndDiff(t *testing.T) {
	spec, err := ParseSpec(strings.NewReader("db_table *.public.* u:r:new_t:s0\ndb_column *.public.t.a u:r:col_t:s0\n"), "p")
	if err != nil {
		t.Fatal(err)
	}
	objs := []Object{
		{Class: ClassTable, Key: "db.public.t", Kind: "TABLE", Target: "public.t", Label: "u:r:old_t:s0"},
		{Class: ClassTable, Key: "db.public.u", Kind: "TABLE", Target: "public.u", Label: "u:r:new_t:s0"},
		{Class: ClassTable, Key: "db.public.w", Kind: "TABLE", Target: "public.w"},
		{Class: ClassColumn, Key: "db.public.t.a", Kind: "COLUMN", Target: "public.t.a", Label: "u:r:col_t:s0"},
		{Class: ClassColumn, Key: "db.public.t.b", Kind: "COLUMN", Target: "public.t.b"},
	}
	changes, unmatched := Plan(objs, spec)
	var lines []string
	for _, c := range changes {
		lines = append(lines, c.String())
	}
	want := []string{
		"Would relabel db_table db.public.t from u:r:old_t:s0 to u:r:new_t:s0",
		"Would relabel db_table db.public.w from unlabeled to u:r:new_t:s0",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if len(unmatched) != 1 || unmatched[0].Key != "db.public.t.b" {
		t.Errorf("unmatched = %v, want db.public.t.b", unmatched)
	}
	after := append([]Object(nil), objs...)
	after[0].Label = "u:r:new_t:s0"
	after[2].Label = "u:r:new_t:s0"
	var diffLines []string
	for _, c := range Diff(objs, after) {
		diffLines = append(diffLines, c.String())
	}
	if diff := cmp.Diff(want, diffLines); diff != "" {
		t.Errorf("diff of before/after (-want +got):\n%s", diff)
	}
}

func TestSetLabelSQL(t *testing.T) {
	tests := []struct {
		o     Object
		label string
		want  string
	}{
		{Object{Kind: "TABLE", Target: `public."we""ird"`}, "u:r:t:s0", `SECURITY LABEL FOR selinux ON TABLE public."we""ird" IS 'u:r:t:s0'`},
		{Object{Kind: "COLUMN", Target: `"S".t."Col"`}, "u:r:t:s0:c1,c2", `SECURITY LABEL FOR selinux ON COLUMN "S".t."Col" IS 'u:r:t:s0:c1,c2'`},
		{Object{Kind: "FUNCTION", Target: `public.f(integer, text)`}, "it's", `SECURITY LABEL FOR selinux ON FUNCTION public.f(integer, text) IS 'it''s'`},
		{Object{Kind: "AGGREGATE", Target: `public.a(*)`}, `a\b`, `SECURITY LABEL FOR selinux ON AGGREGATE public.a(*) IS E'a\\b'`},
		{Object{Kind: "VIEW", Target: `public.v`}, `a\'b`, `SECURITY LABEL FOR selinux ON VIEW public.v IS E'a\\''b'`},
		{Object{Kind: "DATABASE", Target: `"Odd DB"`}, "", `SECURITY LABEL FOR selinux ON DATABASE "Odd DB" IS NULL`},
	}
	for _, tt := range tests {
		if got := SetLabelSQL(tt.o, tt.label); got != tt.want {
			t.Errorf("SetLabelSQL = %s\nwant          %s", got, tt.want)
		}
	}
}

func TestEscapePatternMatchesOnlyItsKey(t *testing.T) {
	keys := []string{`db.public."a*b"`, `db.public."a?b"`, `db.public."a[1]"`, `db.public."a\b"`, `db.public.t`}
	for _, k := range keys {
		p, ok := EscapePattern(k)
		if !ok {
			t.Fatalf("EscapePattern(%q) not ok", k)
		}
		for _, other := range append(keys, `db.public."axb"`, `db.public."a1"`) {
			if got, want := fnmatch(p, other), other == k; got != want {
				t.Errorf("pattern %q for %q matches %q = %v", p, k, other, got)
			}
		}
	}
	if p, ok := EscapePattern(`db.public."a b#c"`); ok || p != `db.public."a?b?c"` {
		t.Errorf("EscapePattern with space and # = %q, %v", p, ok)
	}
}

func TestSkipWarningKey(t *testing.T) {
	k, ok := SkipWarningKey(`SELinux: no initial label assigned for probe.pg_catalog."substring" (type=7), skipping`)
	if !ok || k != `probe.pg_catalog."substring"` {
		t.Errorf("SkipWarningKey = %q, %v", k, ok)
	}
	if _, ok := SkipWarningKey("something else"); ok {
		t.Error("unrelated notice taken for a skip warning")
	}
}
