package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var updateLabels = flag.Bool("update-labels", false, "rewrite the labels golden files in testdata/")

const labelsHostSQL = `
CREATE SCHEMA s1;
CREATE TABLE public.t1 (id serial PRIMARY KEY, "we""ird" text);
CREATE TABLE public."T1" ("Col" int);
CREATE TABLE public."select" (x int);
CREATE TABLE s1."MixedCase" (a int);
CREATE TABLE public.pt (a int) PARTITION BY RANGE (a);
CREATE VIEW public.v1 AS SELECT id FROM public.t1;
CREATE MATERIALIZED VIEW public.mv AS SELECT 1 AS one;
CREATE FUNCTION public.f(int) RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION public.f(text) RETURNS int LANGUAGE sql AS 'SELECT 2';
CREATE PROCEDURE s1.pr() LANGUAGE sql AS 'SELECT 1';
CREATE AGGREGATE public.ag(int) (sfunc = int4pl, stype = int);
CREATE AGGREGATE public.cnt(*) (sfunc = int8inc, stype = int8, initcond = '0');
`

// labelsDB makes the host fixture database once per test binary run.
func labelsDB(t *testing.T) string {
	t.Helper()
	c := pg.Get(t)
	ctx := context.Background()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = 'labels_host')").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if !exists {
		if err := c.CreateDatabase(ctx, "labels_host"); err != nil {
			t.Fatal(err)
		}
		db, err := c.Connect(ctx, "labels_host")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(ctx)
		if _, err := db.Exec(ctx, labelsHostSQL); err != nil {
			t.Fatal(err)
		}
	}
	return c.DSN("labels_host")
}

func goldenFile(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateLabels {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update-labels): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// Keys come from the server's quote_ident: mixed case, keywords and embedded quotes are
// quoted; functions and their overloads share a key; materialized views are left out.
// The host has no SELinux, so everything is unlabeled.
func TestLabelsPlanGoldenOnHost(t *testing.T) {
	dsn := labelsDB(t)
	code, stdout, stderr := runCLI(t, "", "labels", "plan", "-d", dsn, "-f", "testdata/labels-host.spec")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var keep []string
	for _, l := range strings.Split(stdout, "\n") {
		// pg_catalog and information_schema match no rule here; only ours.
		if strings.Contains(l, " labels_host") {
			keep = append(keep, l)
		}
	}
	goldenFile(t, "labels-plan-host.golden", strings.Join(keep, "\n")+"\n")
	if !strings.Contains(stderr, "match no rule and would be skipped") {
		t.Errorf("plan summary missing: %q", stderr)
	}
	code, _, _ = runCLI(t, "", "labels", "check", "-d", dsn, "-f", "testdata/labels-host.spec")
	if code != exitCheck {
		t.Errorf("check with drift: exit %d, want %d", code, exitCheck)
	}
}

func TestLabelsLsOnHost(t *testing.T) {
	dsn := labelsDB(t)
	code, stdout, stderr := runCLI(t, "", "labels", "ls", "-d", dsn, "--class", "db_table,db_procedure", "-o", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rows []struct {
		Database, Class, Key, Kind, Target, Label string
	}
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rows {
		if r.Label != "" {
			t.Errorf("%s is labelled on a host without SELinux: %q", r.Key, r.Label)
		}
		got[r.Kind+" "+r.Target] = r.Key
	}
	for target, key := range map[string]string{
		`TABLE public."T1"`:            `labels_host.public."T1"`,
		`TABLE public."select"`:        `labels_host.public."select"`,
		`TABLE public.pt`:              `labels_host.public.pt`,
		`FUNCTION public.f(integer)`:   `labels_host.public.f`,
		`FUNCTION public.f(text)`:      `labels_host.public.f`,
		`PROCEDURE s1.pr()`:            `labels_host.s1.pr`,
		`AGGREGATE public.ag(integer)`: `labels_host.public.ag`,
		`AGGREGATE public.cnt(*)`:      `labels_host.public.cnt`,
	} {
		if got[target] != key {
			t.Errorf("%s: key %q, want %q", target, got[target], key)
		}
	}
	if _, ok := got["TABLE public.mv"]; ok {
		t.Error("materialized view listed")
	}
	_, stdout, _ = runCLI(t, "", "labels", "ls", "-d", dsn, "--class", "db_column", "--unlabeled")
	if strings.Contains(stdout, ".ctid") {
		t.Error("system columns listed without --system-columns")
	}
	if !regexp.MustCompile(`(?m)^db_column +labels_host\.public\.t1\."we""ird" +unlabeled$`).MatchString(stdout) {
		t.Errorf("ls table output lacks the quoted column:\n%s", stdout)
	}
	_, stdout, _ = runCLI(t, "", "labels", "ls", "-d", dsn, "--class", "db_column", "--system-columns", "-o", "csv")
	if !strings.Contains(stdout, "labels_host.public.t1.ctid,COLUMN public.t1.ctid,") {
		t.Errorf("--system-columns csv lacks ctid:\n%s", stdout)
	}
}

func TestLabelsErrorsOnHost(t *testing.T) {
	dsn := labelsDB(t)
	bad := filepath.Join(t.TempDir(), "bad.spec")
	os.WriteFile(bad, []byte("db_table * u:r:t:s0\n\ndb_table *\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"spec syntax", []string{"labels", "plan", "-d", dsn, "-f", bad}, exitUsage, bad + ":3: want CLASS PATTERN CONTEXT, got 2 fields"},
		{"missing spec", []string{"labels", "plan", "-d", dsn, "-f", "/nonexistent.spec"}, exitUsage, "read spec file"},
		{"unknown class", []string{"labels", "set", "-d", dsn, "db_tabel", "public.t1", "u:r:t:s0"}, exitUsage, `unknown class "db_tabel"`},
		{"malformed context", []string{"labels", "set", "-d", dsn, "db_table", "public.t1", "u:r:t:s0:c1,,c2"}, exitUsage, `category must be c0, c1, … or a span cN.cM`},
		{"not found", []string{"labels", "set", "-d", dsn, "db_table", "public.nosuch", "u:r:t:s0"}, exitUsage, "no db_table named public.nosuch"},
		{"ambiguous", []string{"labels", "set", "-d", dsn, "db_procedure", "public.f", "u:r:t:s0"}, exitUsage, "public.f(integer), public.f(text)"},
		{"set not enabled", []string{"labels", "set", "-d", dsn, "db_table", `public."T1"`, "u:r:t:s0"}, exitFailure, "sepgsql is not enabled"},
		{"apply not enabled", []string{"labels", "apply", "-d", dsn, "-f", "testdata/labels-host.spec"}, exitFailure, "sepgsql is not enabled"},
		{"restorecon not enabled", []string{"restorecon", "-d", dsn, "--dry-run"}, exitFailure, "sepgsql is not enabled"},
		{"translate not enabled", []string{"labels", "translate", "-d", dsn, "s0"}, exitFailure, "sepgsql is not enabled"},
		{"db and all-dbs", []string{"labels", "ls", "-d", dsn, "--db", "x", "--all-dbs"}, exitUsage, "exclude each other"},
		{"bad output", []string{"labels", "ls", "-d", dsn, "-o", "xml"}, exitUsage, `--output "xml"`},
		{"bad ls class", []string{"labels", "ls", "-d", dsn, "--class", "db_blob"}, exitUsage, `unknown class "db_blob"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}

func TestLabelsDryRunSQL(t *testing.T) {
	dsn := labelsDB(t)
	code, stdout, stderr := runCLI(t, "", "labels", "set", "-d", dsn, "--dry-run", "db_column", `public.t1."we""ird"`, "system_u:object_r:sepgsql_table_t:s0:c1")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := "SECURITY LABEL FOR selinux ON COLUMN public.t1.\"we\"\"ird\" IS 'system_u:object_r:sepgsql_table_t:s0:c1';\n"
	if stdout != want {
		t.Errorf("set --dry-run = %q, want %q", stdout, want)
	}
	code, stdout, _ = runCLI(t, "", "labels", "apply", "-d", dsn, "--dry-run", "-f", "testdata/labels-host.spec")
	if code != exitOK || !strings.HasPrefix(stdout, "-- database labels_host\nBEGIN;\n") || !strings.HasSuffix(stdout, "COMMIT;\n") ||
		!strings.Contains(stdout, "SECURITY LABEL FOR selinux ON AGGREGATE public.cnt(*) IS 'system_u:object_r:sepgsql_proc_exec_t:s0';\n") {
		t.Errorf("apply --dry-run: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = runCLI(t, "", "labels", "export", "-d", dsn, "-o", "sql")
	if code != exitOK || stdout != "-- sepgadm labels export of database labels_host\nBEGIN;\nCOMMIT;\n" {
		t.Errorf("export of an unlabeled database: exit %d %q", code, stdout)
	}
}
