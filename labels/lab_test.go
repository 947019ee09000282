//go:build lab

package labels_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

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
