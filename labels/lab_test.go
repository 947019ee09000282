//go:build lab

package labels_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"github.com/sepgadm/sepgadm/lab"
	"github.com/sepgadm/sepgadm/labels"
)

// Lab tests of the label manager in the enforcing guest. They drive the freshly built
// sepgadm binary (on PATH in the guest) and read the catalog with package labels.

const (
	labDB    = "LabelLab" // mixed case on purpose: its key is "LabelLab"
	copyDB   = "labels_copy"
	specPath = "/var/lib/postgresql/labels-lab.spec" // the server (postgresql_t) reads it
)

const setupSQL = `
CREATE SCHEMA s1;
CREATE SCHEMA "MiXed";
CREATE TABLE public.t1 (id serial PRIMARY KEY, a int, "we""ird" text);
CREATE TABLE public."T1" ("Col" int, b text);
CREATE TABLE public."select" (x int);
CREATE TABLE s1.t1 (a int);
CREATE TABLE "MiXed"."Tab" ("A" int, "a" int);
CREATE TABLE public.pt (a int, b text) PARTITION BY RANGE (a);
CREATE TABLE public.pt1 PARTITION OF public.pt FOR VALUES FROM (0) TO (10);
CREATE SEQUENCE "MiXed"."Seq";
CREATE VIEW public.v1 AS SELECT a FROM public.t1;
CREATE VIEW "MiXed"."V" AS SELECT 1 AS one;
CREATE MATERIALIZED VIEW public.mv AS SELECT 1 AS one;
CREATE INDEX t1_a ON public.t1 (a);
CREATE FUNCTION public.f(int) RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION public.f(text) RETURNS int LANGUAGE sql AS 'SELECT 2';
CREATE FUNCTION "MiXed"."Fn"(a int, b int DEFAULT 0) RETURNS int LANGUAGE sql AS 'SELECT 3';
CREATE PROCEDURE s1.pr() LANGUAGE sql AS 'SELECT 1';
CREATE AGGREGATE public.ag(int) (sfunc = int4pl, stype = int);
CREATE TABLE public.dropcol (a int, gone int, b int);
ALTER TABLE public.dropcol DROP COLUMN gone;
`

// The spec touches every class; its db_database line names only the lab's databases,
// so the other databases of the cluster are skipped with a warning and left alone.
const specText = `# sepgadm lab spec
db_database  "LabelLab"            system_u:object_r:sepgsql_db_t:s0:c1
db_database  labels_copy           system_u:object_r:sepgsql_db_t:s0:c1
db_schema    *.s1                  system_u:object_r:sepgsql_schema_t:s0:c1
db_schema    *.*                   system_u:object_r:sepgsql_schema_t:s0
db_table     *.s1.*                system_u:object_r:sepgsql_table_t:s0:c2
db_table     *.public."T?"         system_u:object_r:sepgsql_ro_table_t:s0
db_table     *.pg_catalog.*        system_u:object_r:sepgsql_sysobj_t:s0
db_table     *."MiXed".*           system_u:object_r:sepgsql_fixed_table_t:s0
db_table     *                     system_u:object_r:sepgsql_table_t:s0
db_sequence  *.*.*                 system_u:object_r:sepgsql_seq_t:s0:c3
db_view      *.public.*            system_u:object_r:sepgsql_view_t:s0:c1
db_view      *                     system_u:object_r:sepgsql_view_t:s0
db_column    *.*.*."we""ird"       system_u:object_r:sepgsql_secret_table_t:s0
db_column    *.*.*.ctid            system_u:object_r:sepgsql_sysobj_t:s0
db_column    *.s1.*.*              system_u:object_r:sepgsql_table_t:s0:c2
db_column    *.pg_catalog.*.*      system_u:object_r:sepgsql_sysobj_t:s0
db_column    *."MiXed"."Tab"."[A]" system_u:object_r:sepgsql_ro_table_t:s0
db_column    *                     system_u:object_r:sepgsql_table_t:s0:c4
db_procedure *.public.f            system_u:object_r:sepgsql_trusted_proc_exec_t:s0
db_procedure *.*.*                 system_u:object_r:sepgsql_proc_exec_t:s0:c1
`

type run struct {
	code           int
	stdout, stderr string
}

// sepgadm runs the sepgadm binary; as, when not empty, is a domain to run it in.
func sepgadm(t *testing.T, as string, args ...string) run {
	t.Helper()
	var cmd *exec.Cmd
	if as == "" {
		cmd = exec.Command("sepgadm", args...)
	} else {
		cmd = exec.Command("runcon", append([]string{"-t", as, "--", "/usr/local/bin/sepgadm"}, args...)...)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := run{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run sepgadm %v: %v", args, err)
	}
	return r
}

func mustOK(t *testing.T, r run, what string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, head(r.stdout), head(r.stderr))
	}
}

func head(s string) string {
	if len(s) > 3000 {
		return s[:3000] + "…"
	}
	return s
}

func psql(t *testing.T, db, sql string) {
	t.Helper()
	res, err := lab.PSQL(context.Background(), lab.Context{Type: "initrc_t"}, db, sql)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("psql %q: %s", sql, res.Stderr)
	}
}

func objects(t *testing.T, db string) []labels.Object {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, lab.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	objs, err := labels.Objects(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

var dsn = lab.DSN(labDB)

var (
	setupOnce sync.Once
	setupErr  error
)

// labSetup makes the lab database and the spec file once for all tests.
func labSetup(t *testing.T) {
	t.Helper()
	lab.Require(t)
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		t.Fatalf("labels lab setup: %v", setupErr)
	}
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, lab.DSN("postgres"))
	if err != nil {
		return err
	}
	for _, q := range []string{`DROP DATABASE IF EXISTS "LabelLab"`, `DROP DATABASE IF EXISTS labels_copy`, `CREATE DATABASE "LabelLab"`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			conn.Close(ctx)
			return err
		}
	}
	conn.Close(ctx)
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, setupSQL); err != nil {
		return err
	}
	if err := os.WriteFile(specPath, []byte(specText), 0o644); err != nil {
		return err
	}
	return exec.Command("restorecon", specPath).Run()
}

// The decisive test: labels plan and the server's own restorecon, dry run, agree line
// for line on a database with many kinds of objects, overloads and quoted names; and
// the dry run leaves every label as it was.
func TestPlanEqualsRestoreconDryRun(t *testing.T) {
	labSetup(t)
	before := objects(t, labDB)
	plan := sepgadm(t, "", "labels", "plan", "-d", dsn, "-f", specPath)
	mustOK(t, plan, "labels plan")
	dry := sepgadm(t, "", "restorecon", "-d", dsn, "--specfile", specPath, "--dry-run")
	mustOK(t, dry, "restorecon --dry-run")
	planLines, dryLines := lines(plan.stdout), lines(dry.stdout)
	if diff := cmp.Diff(dryLines, planLines); diff != "" {
		t.Errorf("labels plan differs from the restorecon dry run (-restorecon +plan):\n%s", head(diff))
	}
	if len(planLines) < 100 {
		t.Errorf("only %d changes planned; the spec should change hundreds", len(planLines))
	}
	for _, want := range []string{
		`Would relabel db_table "LabelLab".public."T1" from system_u:object_r:sepgsql_table_t:s0 to system_u:object_r:sepgsql_ro_table_t:s0`,
		`Would relabel db_column "LabelLab".public.t1."we""ird" from system_u:object_r:sepgsql_table_t:s0 to system_u:object_r:sepgsql_secret_table_t:s0`,
		`Would relabel db_column "LabelLab"."MiXed"."Tab"."A" from system_u:object_r:sepgsql_table_t:s0 to system_u:object_r:sepgsql_ro_table_t:s0`,
		`Would relabel db_column "LabelLab"."MiXed"."Tab".a from system_u:object_r:sepgsql_table_t:s0 to system_u:object_r:sepgsql_table_t:s0:c4`,
		`Would relabel db_table "LabelLab".s1.t1 from system_u:object_r:sepgsql_table_t:s0 to system_u:object_r:sepgsql_table_t:s0:c2`,
		`Would relabel db_sequence "LabelLab"."MiXed"."Seq" from system_u:object_r:sepgsql_seq_t:s0 to system_u:object_r:sepgsql_seq_t:s0:c3`,
		`Would relabel db_database "LabelLab" from system_u:object_r:sepgsql_db_t:s0 to system_u:object_r:sepgsql_db_t:s0:c1`,
	} {
		if !contains(planLines, want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	for _, l := range planLines {
		if strings.Contains(l, ".mv ") || strings.Contains(l, ".t1_a ") {
			t.Errorf("materialized views and indexes are not sepgsql_restorecon's: %q", l)
		}
	}
	// Overloads share one key: f(int) and f(text) give two identical lines.
	n := 0
	for _, l := range planLines {
		if strings.HasPrefix(l, `Would relabel db_procedure "LabelLab".public.f from`) {
			n++
		}
	}
	if n != 2 {
		t.Errorf("public.f overloads planned %d times, want 2", n)
	}
	if !strings.Contains(dry.stderr, "no initial label assigned for template1") || !strings.Contains(dry.stderr, "skipped with no initial label assigned") {
		t.Errorf("restorecon did not show and count the server's skip warnings:\n%s", head(dry.stderr))
	}
	if diff := cmp.Diff(before, objects(t, labDB)); diff != "" {
		t.Errorf("the dry run changed labels (-before +after):\n%s", head(diff))
	}
	// public.dropcol has a dropped column: neither the plan nor the dry run names it
	// (SECURITY LABEL cannot, and the catalog diff of the dry run leaves it out as well).
	if !contains(planLines, `Would relabel db_column "LabelLab".public.dropcol.b from system_u:object_r:sepgsql_table_t:s0 to system_u:object_r:sepgsql_table_t:s0:c4`) {
		t.Error("plan lacks the live column after a dropped one")
	}
	for _, l := range append(planLines, dryLines...) {
		if strings.Contains(l, "pg.dropped") {
			t.Errorf("a dropped column is listed: %q", l)
		}
	}
}

// What sepgsql_restorecon does with a dropped column, which labels plan leaves out:
// DROP COLUMN deletes the column's label, restorecon gives its leftover pg_attribute row
// a new one (key "db.schema.table.\"........pg.dropped.N........\""), and SECURITY LABEL
// cannot name that column, so apply could not do the same; no access check ever reads
// the label of a dropped column.
func TestRestoreconLabelsDroppedColumns(t *testing.T) {
	labSetup(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const q = `SELECT coalesce(l.label, '') FROM pg_attribute a
		LEFT JOIN pg_seclabel l ON l.provider = 'selinux' AND l.classoid = 'pg_class'::regclass AND l.objoid = a.attrelid AND l.objsubid = a.attnum
		WHERE a.attrelid = 'public.dropcol'::regclass AND a.attisdropped`
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var before, after string
	if err := tx.QueryRow(ctx, q).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT sepgsql_restorecon($1)", specPath); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, q).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if before != "" || after != "system_u:object_r:sepgsql_table_t:s0:c4" {
		t.Errorf("dropped column's label: %q before restorecon, %q after; want none, then the spec's db_column * label", before, after)
	}
	_, err = tx.Exec(ctx, `SECURITY LABEL FOR selinux ON COLUMN public.dropcol."........pg.dropped.2........" IS 'system_u:object_r:sepgsql_table_t:s0'`)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("SECURITY LABEL on a dropped column: %v, want does not exist", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Denied relabels fail whole and show the denial; the catalog stays as it was.
func TestDeniedForUnprivilegedDomain(t *testing.T) {
	labSetup(t)
	before := objects(t, labDB)
	r := sepgadm(t, lab.ClientDomain, "labels", "apply", "-d", dsn, "-f", specPath)
	if r.code != 3 || !strings.Contains(r.stderr, "denied by sepgsql") || !strings.Contains(r.stderr, "relabel ") {
		t.Errorf("apply as %s: exit %d, stderr %q; want 3 and the denial naming the object", lab.ClientDomain, r.code, head(r.stderr))
	}
	rc := sepgadm(t, lab.ClientDomain, "labels", "set", "-d", dsn, "db_table", "public.t1", "system_u:object_r:sepgsql_table_t:s0:c9")
	if rc.code != 3 || !strings.Contains(rc.stderr, "security policy violation") {
		t.Errorf("set as %s: exit %d, stderr %q", lab.ClientDomain, rc.code, rc.stderr)
	}
	if _, err := lab.ServerLogContains(context.Background(), 10*time.Second, "SELinux: denied", "relabelfrom", "scontext=system_u:system_r:"+lab.ClientDomain); err != nil {
		t.Error(err)
	}
	if diff := cmp.Diff(before, objects(t, labDB)); diff != "" {
		t.Errorf("a denied apply changed labels (-before +after):\n%s", head(diff))
	}
}

// Bad input of every kind is refused with a clear message, and nothing is half-applied.
func TestBadInputLeavesCatalogUnchanged(t *testing.T) {
	labSetup(t)
	before := objects(t, labDB)
	bad := t.TempDir() + "/bad.spec"
	os.WriteFile(bad, []byte("db_table *.*.* system_u:object_r:sepgsql_table_t:s0\ndb_tabel * u:r:t:s0\n"), 0o644)
	// A spec whose context the policy does not know: valid syntax, refused by the server
	// after other relabels in the same transaction have run.
	unknown := t.TempDir() + "/unknown.spec"
	os.WriteFile(unknown, []byte("db_column * system_u:object_r:sepgsql_table_t:s0:c7\ndb_table *.public.t1 system_u:object_r:no_such_type_t:s0\ndb_table * system_u:object_r:sepgsql_table_t:s0:c7\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"spec syntax", []string{"labels", "apply", "-d", dsn, "-f", bad}, 2, bad + `:2: unknown object class "db_tabel"`},
		{"unknown type", []string{"labels", "apply", "-d", dsn, "-f", unknown}, 3, `relabel db_table "LabelLab".public.t1 to system_u:object_r:no_such_type_t:s0`},
		{"unknown class", []string{"labels", "set", "-d", dsn, "db_tabel", "public.t1", "system_u:object_r:sepgsql_table_t:s0"}, 2, `unknown class "db_tabel"`},
		{"malformed context", []string{"labels", "set", "-d", dsn, "db_table", "public.t1", "system_u:object_r:sepgsql_table_t:s0:c3.c1"}, 2, `category span must go upwards: "c3.c1"`},
		{"no such object", []string{"labels", "set", "-d", dsn, "db_table", "public.nosuch", "system_u:object_r:sepgsql_table_t:s0"}, 2, "no db_table named public.nosuch"},
		{"ambiguous function", []string{"labels", "set", "-d", dsn, "db_procedure", "public.f", "system_u:object_r:sepgsql_proc_exec_t:s0"}, 2, "is ambiguous"},
		{"spec in /tmp", []string{"restorecon", "-d", dsn, "--specfile", "/tmp/nowhere.spec", "--dry-run"}, 3, "/var/lib/postgresql"},
	}
	os.WriteFile("/tmp/nowhere.spec", []byte(specText), 0o644)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sepgadm(t, "", tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, head(r.stderr), tt.code, tt.want)
			}
		})
	}
	if diff := cmp.Diff(before, objects(t, labDB)); diff != "" {
		t.Errorf("bad input changed labels (-before +after):\n%s", head(diff))
	}
}

// apply, then check: clean; a manual relabel is drift (exit 1, one line); apply again
// fixes it; the server's restorecon with the same spec then finds nothing to change.
// Export then reproduces the labels exactly on a copy whose labels were changed.
func TestApplyCheckExportRoundTrip(t *testing.T) {
	labSetup(t)
	r := sepgadm(t, "", "labels", "apply", "-d", dsn, "-f", specPath)
	mustOK(t, r, "labels apply")
	if !strings.Contains(r.stdout, "database LabelLab: relabeled ") {
		t.Errorf("apply report = %q", r.stdout)
	}
	mustOK(t, sepgadm(t, "", "labels", "check", "-d", dsn, "-f", specPath), "check after apply")
	dry := sepgadm(t, "", "restorecon", "-d", dsn, "--specfile", specPath, "--dry-run")
	mustOK(t, dry, "restorecon dry run after apply")
	if got := lines(dry.stdout); len(got) != 0 {
		t.Errorf("after apply restorecon would still change %d labels: %q", len(got), head(strings.Join(got, "\n")))
	}

	psql(t, labDB, `SECURITY LABEL FOR selinux ON TABLE public."T1" IS 'system_u:object_r:sepgsql_table_t:s0'`)
	c := sepgadm(t, "", "labels", "check", "-d", dsn, "-f", specPath)
	want := []string{`Would relabel db_table "LabelLab".public."T1" from system_u:object_r:sepgsql_table_t:s0 to system_u:object_r:sepgsql_ro_table_t:s0`}
	if c.code != 1 || !cmp.Equal(lines(c.stdout), want) {
		t.Errorf("check after a manual relabel: exit %d, stdout %q; want 1 and %q", c.code, c.stdout, want)
	}
	mustOK(t, sepgadm(t, "", "labels", "apply", "-d", dsn, "-f", specPath), "apply again")
	mustOK(t, sepgadm(t, "", "labels", "check", "-d", dsn, "-f", specPath), "check after the second apply")

	// labels set with a quoted column, then ls shows it.
	mustOK(t, sepgadm(t, "", "labels", "set", "-d", dsn, "db_column", `public.t1."we""ird"`, "system_u:object_r:sepgsql_table_t:s0:c5"), "labels set")
	ls := sepgadm(t, "", "labels", "ls", "-d", dsn, "--class", "db_column", "-o", "csv")
	mustOK(t, ls, "labels ls")
	if !strings.Contains(ls.stdout, `"""LabelLab"".public.t1.""we""""ird""","COLUMN public.t1.""we""""ird""",system_u:object_r:sepgsql_table_t:s0:c5`) {
		t.Errorf("ls does not show the new column label:\n%s", head(ls.stdout))
	}

	// Export round trip, spec and SQL, onto a copy with other labels.
	exp := sepgadm(t, "", "labels", "export", "-d", dsn, "--any-db")
	mustOK(t, exp, "export spec")
	if !strings.Contains(exp.stderr, "overloads carry different labels") && exp.stderr != "" {
		t.Logf("export warnings: %s", exp.stderr)
	}
	expSQL := sepgadm(t, "", "labels", "export", "-d", dsn, "-o", "sql")
	mustOK(t, expSQL, "export sql")
	specFile := t.TempDir() + "/exported.spec"
	os.WriteFile(specFile, []byte(exp.stdout), 0o644)
	psql(t, "postgres", `CREATE DATABASE labels_copy TEMPLATE "LabelLab"`)
	mess := t.TempDir() + "/mess.spec"
	os.WriteFile(mess, []byte("db_schema * system_u:object_r:sepgsql_schema_t:s0:c9\ndb_table * system_u:object_r:sepgsql_table_t:s0:c9\ndb_column * system_u:object_r:sepgsql_table_t:s0:c9\ndb_procedure * system_u:object_r:sepgsql_proc_exec_t:s0:c9\ndb_view * system_u:object_r:sepgsql_view_t:s0:c9\ndb_sequence * system_u:object_r:sepgsql_seq_t:s0:c9\n"), 0o644)
	copyDSN := lab.DSN(copyDB)
	want0 := inner(objects(t, labDB), `"LabelLab"`)
	for _, form := range []string{"spec", "sql"} {
		mustOK(t, sepgadm(t, "", "labels", "apply", "-d", copyDSN, "-f", mess), "mess up the copy")
		if cmp.Equal(want0, inner(objects(t, copyDB), copyDB)) {
			t.Fatal("the messed-up copy still has the original's labels")
		}
		if form == "spec" {
			mustOK(t, sepgadm(t, "", "labels", "apply", "-d", copyDSN, "-f", specFile), "apply the export")
		} else {
			// Too long for a psql -c argument: run the script over one connection.
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, copyDSN)
			if err != nil {
				t.Fatal(err)
			}
			_, err = conn.PgConn().Exec(ctx, expSQL.stdout).ReadAll()
			conn.Close(ctx)
			if err != nil {
				t.Fatalf("run the SQL export: %v", err)
			}
		}
		if diff := cmp.Diff(want0, inner(objects(t, copyDB), copyDB)); diff != "" {
			t.Errorf("%s export → apply on the copy is not exact (-original +copy):\n%s", form, head(diff))
		}
	}
}

// inner is the objects inside database dbKey, keys without the database part.
func inner(objs []labels.Object, dbKey string) []labels.Object {
	var out []labels.Object
	for _, o := range objs {
		if o.Class == labels.ClassDatabase {
			continue
		}
		o.Key = strings.TrimPrefix(o.Key, dbKey)
		out = append(out, o)
	}
	return out
}

// The real restorecon relabels, and -v lists what it did in the plan's words.
func TestRestoreconRunsAndTranslate(t *testing.T) {
	labSetup(t)
	r := sepgadm(t, "", "restorecon", "-d", dsn, "-v", "--quiet-warnings")
	mustOK(t, r, "restorecon with the system spec")
	if !strings.Contains(r.stdout, `Relabeled db_table "LabelLab".public."T1" from system_u:object_r:sepgsql_ro_table_t:s0 to system_u:object_r:sepgsql_table_t:s0`) {
		t.Errorf("restorecon -v output lacks the T1 relabel:\n%s", head(r.stdout))
	}
	c := sepgadm(t, "", "labels", "check", "-d", dsn, "-f", "/etc/selinux/default/contexts/sepgsql_contexts")
	if c.code != 0 {
		t.Errorf("check against the system spec right after restorecon: exit %d\n%s", c.code, head(c.stdout))
	}
	tr := sepgadm(t, "", "labels", "translate", "-d", dsn, "s0-s0:c0.c1023")
	mustOK(t, tr, "translate")
	if tr.stdout != "s0-s0:c0.c1023\ts0-s0:c0.c1023\n" { // mcstrans is not running in the lab
		t.Errorf("translate = %q", tr.stdout)
	}
}

// allSpec names objects of two databases only: every other database of the cluster
// matches no line, so --all-dbs runs leave them alone (restorecon only warns there).
const allSpec = `db_database "LabelLab"               system_u:object_r:sepgsql_db_t:s0:c2
db_database labels_other             system_u:object_r:sepgsql_db_t:s0:c2
db_table    "LabelLab".public.t1     system_u:object_r:sepgsql_ro_table_t:s0:c2
db_table    labels_other.public.o1   system_u:object_r:sepgsql_ro_table_t:s0:c2
db_column   labels_other.public.o1.a system_u:object_r:sepgsql_ro_table_t:s0:c2
`

// --all-dbs walks every database that accepts connections: plan equals the restorecon
// dry run over all of them, apply relabels each in its own transaction, check is then
// clean, and ls --type lists what apply labelled, database by database. Last in the
// file: it relabels "LabelLab" and puts the system labels back at the end.
func TestAllDatabases(t *testing.T) {
	labSetup(t)
	psql(t, "postgres", "DROP DATABASE IF EXISTS labels_other")
	psql(t, "postgres", "CREATE DATABASE labels_other")
	defer psql(t, "postgres", "DROP DATABASE labels_other")
	psql(t, "labels_other", "CREATE TABLE public.o1 (a int, b int)")
	spec := "/var/lib/postgresql/labels-all.spec"
	if err := os.WriteFile(spec, []byte(allSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("restorecon", spec).Run(); err != nil {
		t.Fatal(err)
	}
	postgres := lab.DSN("postgres")

	plan := sepgadm(t, "", "labels", "plan", "-d", postgres, "--all-dbs", "-f", spec)
	mustOK(t, plan, "labels plan --all-dbs")
	dry := sepgadm(t, "", "restorecon", "-d", postgres, "--all-dbs", "--specfile", spec, "--dry-run", "--quiet-warnings")
	mustOK(t, dry, "restorecon --all-dbs --dry-run")
	planLines := lines(plan.stdout)
	if diff := cmp.Diff(lines(dry.stdout), planLines); diff != "" {
		t.Errorf("labels plan --all-dbs differs from restorecon --all-dbs --dry-run (-restorecon +plan):\n%s", head(diff))
	}
	for _, want := range []string{
		`Would relabel db_database "LabelLab" from `,
		`Would relabel db_database labels_other from system_u:object_r:sepgsql_db_t:s0 to system_u:object_r:sepgsql_db_t:s0:c2`,
		`Would relabel db_table "LabelLab".public.t1 from `,
		`Would relabel db_table labels_other.public.o1 from system_u:object_r:sepgsql_table_t:s0 to system_u:object_r:sepgsql_ro_table_t:s0:c2`,
		`Would relabel db_column labels_other.public.o1.a from system_u:object_r:sepgsql_table_t:s0 to system_u:object_r:sepgsql_ro_table_t:s0:c2`,
	} {
		n := 0
		for _, l := range planLines {
			if strings.HasPrefix(l, want) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d plan lines start with %q, want 1 (each database once, though every database lists them all)", n, want)
		}
	}

	apply := sepgadm(t, "", "labels", "apply", "-d", postgres, "--all-dbs", "-f", spec)
	mustOK(t, apply, "labels apply --all-dbs")
	// The databases' own labels go with the first database walked ("LabelLab" sorts first).
	for _, want := range []string{"database LabelLab: relabeled 3 objects", "database labels_other: relabeled 2 objects", "database postgres: nothing to relabel"} {
		if !strings.Contains(apply.stdout, want) {
			t.Errorf("apply --all-dbs report lacks %q:\n%s", want, apply.stdout)
		}
	}
	mustOK(t, sepgadm(t, "", "labels", "check", "-d", postgres, "--all-dbs", "-f", spec), "check --all-dbs after apply")
	if r := sepgadm(t, "", "restorecon", "-d", postgres, "--all-dbs", "--specfile", spec, "--dry-run", "--quiet-warnings"); r.code != 0 || r.stdout != "" {
		t.Errorf("restorecon --all-dbs --dry-run after apply: exit %d, would still change:\n%s", r.code, head(r.stdout))
	}

	ls := sepgadm(t, "", "labels", "ls", "-d", postgres, "--all-dbs", "--type", "sepgsql_ro_table_t", "-o", "csv")
	mustOK(t, ls, "labels ls --all-dbs --type")
	var got []string
	for _, l := range lines(ls.stdout) {
		if !strings.HasPrefix(l, "database,") && !strings.Contains(l, ":sepgsql_ro_table_t:") {
			t.Errorf("ls --type sepgsql_ro_table_t listed %q", l)
		}
		if strings.HasPrefix(l, "labels_other,") || strings.Contains(l, ",db_table,\"\"\"LabelLab\"\".public.t1\",") {
			got = append(got, l)
		}
	}
	want := []string{
		`LabelLab,db_table,"""LabelLab"".public.t1",TABLE public.t1,system_u:object_r:sepgsql_ro_table_t:s0:c2`,
		`labels_other,db_column,labels_other.public.o1.a,COLUMN public.o1.a,system_u:object_r:sepgsql_ro_table_t:s0:c2`,
		`labels_other,db_table,labels_other.public.o1,TABLE public.o1,system_u:object_r:sepgsql_ro_table_t:s0:c2`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ls --all-dbs --type (-want +got):\n%s", diff)
	}

	// The real restorecon over all databases with the same spec then changes nothing.
	rc := sepgadm(t, "", "restorecon", "-d", postgres, "--all-dbs", "--specfile", spec, "-v", "--quiet-warnings")
	mustOK(t, rc, "restorecon --all-dbs")
	if rc.stdout != "" || !strings.Contains(rc.stderr, "restorecon: 0 objects relabeled") {
		t.Errorf("restorecon --all-dbs after apply: stdout %q, stderr %q", head(rc.stdout), head(rc.stderr))
	}
	mustOK(t, sepgadm(t, "", "restorecon", "-d", dsn, "--quiet-warnings"), "back to the system labels")
}

// The progress bar of a large apply goes to stderr when it is a terminal, and nothing
// of it when stderr is a pipe.
func TestApplyProgressOnlyOnATerminal(t *testing.T) {
	labSetup(t)
	// Over a thousand changes: every column and function of the database gets c6.
	spec := t.TempDir() + "/progress.spec"
	os.WriteFile(spec, []byte("db_column * system_u:object_r:sepgsql_table_t:s0:c6\ndb_procedure * system_u:object_r:sepgsql_proc_exec_t:s0:c6\n"), 0o644)
	piped := sepgadm(t, "", "labels", "apply", "-d", dsn, "-f", spec)
	mustOK(t, piped, "apply with stderr a pipe")
	if !strings.Contains(piped.stdout, "database LabelLab: relabeled ") || piped.stderr != "" {
		t.Errorf("apply with stderr a pipe: stdout %q, stderr %q; want the report and an empty stderr", piped.stdout, head(piped.stderr))
	}
	n := strings.TrimSuffix(strings.TrimPrefix(piped.stdout, "database LabelLab: relabeled "), "\n")
	n, _, _ = strings.Cut(n, " ")

	// Now with c7 (so everything changes again) and stderr on a pseudo-terminal.
	os.WriteFile(spec, []byte("db_column * system_u:object_r:sepgsql_table_t:s0:c7\ndb_procedure * system_u:object_r:sepgsql_proc_exec_t:s0:c7\n"), 0o644)
	ptmx, pts, err := openPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	cmd := exec.Command("sepgadm", "labels", "apply", "-d", dsn, "-f", spec)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, pts
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	tty := make(chan string)
	go func() {
		b, _ := io.ReadAll(ptmx) // EIO once the child has gone and closed its end
		tty <- string(b)
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("apply with stderr a terminal: %v\n%s", err, out.String())
	}
	bar := <-tty
	if !strings.Contains(bar, "relabel LabelLab") || !strings.Contains(bar, "100%") || !strings.Contains(bar, "("+n+"/"+n) {
		t.Errorf("stderr on a terminal shows no finished progress bar of %s changes: %q", n, head(bar))
	}
	if strings.Contains(out.String(), "relabel LabelLab") {
		t.Errorf("the progress bar went to stdout: %q", out.String())
	}
	mustOK(t, sepgadm(t, "", "restorecon", "-d", dsn, "--quiet-warnings"), "back to the system labels")
}

// openPTY opens a pseudo-terminal pair (the master, and the slave to hand a child).
func openPTY() (ptmx, pts *os.File, err error) {
	ptmx, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		ptmx.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		ptmx.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	return ptmx, pts, nil
}
