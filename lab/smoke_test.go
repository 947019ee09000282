//go:build lab

package lab_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/sepgadm/sepgadm/lab"
)

// The lab smoke test: the guest is what every other lab test assumes it is.

func connect(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, lab.DSN("postgres"))
	if err != nil {
		t.Fatalf("connect to the guest's PostgreSQL: %v", err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

func TestSmokeGetenforceIsEnforcing(t *testing.T) {
	lab.Require(t)
	out, err := exec.Command("getenforce").Output()
	if err != nil {
		t.Fatalf("getenforce: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "Enforcing" {
		t.Fatalf("getenforce = %q, want Enforcing", got)
	}
}

func TestSmokeSepgsqlGetcon(t *testing.T) {
	lab.Require(t)
	conn := connect(t)
	var con *string
	if err := conn.QueryRow(context.Background(), "SELECT sepgsql_getcon()").Scan(&con); err != nil {
		t.Fatalf("sepgsql_getcon(): %v", err)
	}
	if con == nil || !strings.HasPrefix(*con, "system_u:system_r:") {
		t.Fatalf("sepgsql_getcon() = %v, want the runner's label system_u:system_r:...", con)
	}
	t.Logf("sepgsql_getcon() = %s", *con)
}

func TestSmokeSecurityLabelShowsInPgSeclabels(t *testing.T) {
	lab.Require(t)
	ctx := context.Background()
	conn := connect(t)
	const label = "system_u:object_r:sepgsql_ro_table_t:s0"
	for _, sql := range []string{
		"DROP TABLE IF EXISTS smoke_labelled",
		"CREATE TABLE smoke_labelled (a int)",
		"SECURITY LABEL FOR selinux ON TABLE smoke_labelled IS '" + label + "'",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var got string
	err := conn.QueryRow(ctx, `SELECT label FROM pg_seclabels
		WHERE provider = 'selinux' AND objoid = 'public.smoke_labelled'::regclass AND objsubid = 0`).Scan(&got)
	if err != nil {
		t.Fatalf("read pg_seclabels: %v", err)
	}
	if got != label {
		t.Fatalf("pg_seclabels label = %q, want %q", got, label)
	}
}

func TestSmokeUnprivilegedClientDeniedSecretTable(t *testing.T) {
	lab.Require(t)
	ctx := context.Background()
	conn := connect(t)
	for _, sql := range []string{
		"DROP TABLE IF EXISTS smoke_secret",
		"CREATE TABLE smoke_secret (a int)",
		"INSERT INTO smoke_secret VALUES (1)",
		"GRANT SELECT ON smoke_secret TO PUBLIC",
		"SECURITY LABEL FOR selinux ON TABLE smoke_secret IS 'system_u:object_r:sepgsql_secret_table_t:s0'",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// The same client may read an ordinary table: the denial is SELinux's, not a broken login.
	res, err := lab.PSQL(ctx, lab.Context{Type: lab.ClientDomain}, "postgres", "SELECT sepgsql_getcon()")
	if err != nil || res.SQLState != "" {
		t.Fatalf("psql as %s: %v %+v", lab.ClientDomain, err, res)
	}
	if !strings.Contains(res.Stdout, ":"+lab.ClientDomain+":") {
		t.Fatalf("sepgsql_getcon() as the client = %q, want its domain %s", res.Stdout, lab.ClientDomain)
	}
	res, err = lab.PSQL(ctx, lab.Context{Type: lab.ClientDomain}, "postgres", "SELECT a FROM smoke_secret")
	if err != nil {
		t.Fatal(err)
	}
	if res.SQLState != "42501" {
		t.Fatalf("SELECT on a sepgsql_secret_table_t table as %s: SQLSTATE %q (stdout %q, stderr %q), want 42501",
			lab.ClientDomain, res.SQLState, res.Stdout, res.Stderr)
	}
	line, err := lab.ServerLogContains(ctx, 10*time.Second,
		"SELinux: denied { select }",
		"scontext=system_u:system_r:"+lab.ClientDomain+":s0",
		"tcontext=system_u:object_r:sepgsql_secret_table_t:s0",
		"tclass=db_table",
		`name="public.smoke_secret"`,
		"permissive=0")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server log: %s", line)
}

func TestSmokeRestoreconRollbackLeavesLabels(t *testing.T) {
	lab.Require(t)
	ctx := context.Background()
	conn := connect(t)
	// A label restorecon would change, so the dry run has something to undo.
	for _, sql := range []string{
		"DROP TABLE IF EXISTS smoke_relabel",
		"CREATE TABLE smoke_relabel (a int)",
		"SECURITY LABEL FOR selinux ON TABLE smoke_relabel IS 'system_u:object_r:sepgsql_secret_table_t:s0'",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	before := allLabels(t, conn)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT sepgsql_restorecon(NULL)"); err != nil {
		t.Fatalf("sepgsql_restorecon(NULL): %v", err)
	}
	var inside string
	if err := tx.QueryRow(ctx, `SELECT label FROM pg_seclabels WHERE provider = 'selinux'
		AND objoid = 'public.smoke_relabel'::regclass AND objsubid = 0`).Scan(&inside); err != nil {
		t.Fatal(err)
	}
	if inside == "system_u:object_r:sepgsql_secret_table_t:s0" {
		t.Fatalf("restorecon inside the transaction left smoke_relabel at %s; the dry run proves nothing", inside)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, allLabels(t, conn)); diff != "" {
		t.Fatalf("labels changed after BEGIN; sepgsql_restorecon(NULL); ROLLBACK (-before +after):\n%s", diff)
	}
	t.Logf("%d labels unchanged after the rolled-back restorecon (smoke_relabel was %s inside)", len(before), inside)
}

func allLabels(t *testing.T, conn *pgx.Conn) map[string]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT objtype || ' ' || objname || ' ' || objsubid, label FROM pg_seclabels WHERE provider = 'selinux'`)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{}
	var k, v string
	if _, err := pgx.ForEachRow(rows, []any{&k, &v}, func() error { labels[k] = v; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(labels) == 0 {
		t.Fatal("pg_seclabels has no selinux labels: sepgsql.sql was not installed")
	}
	return labels
}
