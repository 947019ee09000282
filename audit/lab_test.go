//go:build lab

package audit_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sepgadm/sepgadm/lab"
)

// The audit2allow loop on real sepgsql denials: a lab client is denied a labelled
// table; its denials, collected in permissive mode, become a module with sepgadm
// audit2allow; checkmodule/semodule_package compile it, semodule loads it, and the same
// workload then runs in enforcing mode without denials.

const (
	a2aDB     = "auditlab"
	a2aModule = "sepgadm_audit_lab"
	workload  = "SELECT id, secret FROM secret_t"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func dba(t *testing.T, db, sql string) {
	t.Helper()
	run(t, filepath.Join(lab.PGBin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", lab.PGSocketDir, "-U", "postgres", "-d", db, "-c", sql)
}

func csvLogs(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(lab.PGData, "log", "*.csv"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no csvlog files in %s/log: %v", lab.PGData, err)
	}
	return files
}

func sepgadm(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "sepgadm", args...)
}

func TestAudit2AllowLoop(t *testing.T) {
	lab.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := lab.Context{Type: lab.ClientDomain}

	dba(t, "postgres", "CREATE DATABASE "+a2aDB)
	dba(t, a2aDB, "CREATE TABLE secret_t (id int, secret text)")
	dba(t, a2aDB, "INSERT INTO secret_t VALUES (1, 'x')")
	dba(t, a2aDB, "SECURITY LABEL FOR selinux ON TABLE secret_t IS 'system_u:object_r:sepgsql_secret_table_t:s0'")
	dba(t, a2aDB, "SECURITY LABEL FOR selinux ON COLUMN secret_t.secret IS 'system_u:object_r:sepgsql_secret_table_t:s0'")
	dba(t, a2aDB, "SECURITY LABEL FOR selinux ON COLUMN secret_t.id IS 'system_u:object_r:sepgsql_secret_table_t:s0'")

	// Enforcing: denied.
	res, err := lab.PSQL(ctx, client, a2aDB, workload)
	if err != nil {
		t.Fatal(err)
	}
	if res.SQLState != "42501" {
		t.Fatalf("workload before the module: SQLSTATE %q, want 42501 (%s)", res.SQLState, res.Stderr)
	}
	since := time.Now().UTC().Add(-time.Second).Format(time.RFC3339Nano)
	time.Sleep(100 * time.Millisecond)

	// Permissive: every denial of the workload is logged once, none stops it.
	run(t, "setenforce", "0")
	res, err = lab.PSQL(ctx, client, a2aDB, workload)
	run(t, "setenforce", "1")
	if err != nil || res.SQLState != "" {
		t.Fatalf("workload in permissive mode: %v %q %s", err, res.SQLState, res.Stderr)
	}
	if mode, _ := lab.Enforce(); mode != "Enforcing" {
		t.Fatalf("mode after setenforce 1: %s", mode)
	}
	time.Sleep(500 * time.Millisecond) // the logging collector writes asynchronously

	filter := []string{"--source", "db", "--scontext", lab.ClientDomain, "--result", "denied", "--since", since}
	args := append([]string{"audit2allow", "-m", a2aModule}, filter...)
	for _, f := range csvLogs(t) {
		args = append(args, "--pglog", f)
	}
	te := sepgadm(t, args...)
	t.Logf("generated module:\n%s", te)
	for _, want := range []string{"module " + a2aModule + " 1.0;", "require {", "type sepgadm_lab_client_t;",
		"#============= sepgadm_lab_client_t ==============",
		"allow sepgadm_lab_client_t sepgsql_secret_table_t:db_table select;",
		"allow sepgadm_lab_client_t sepgsql_secret_table_t:db_column select;"} {
		if !strings.Contains(te, want) {
			t.Errorf("module lacks %q", want)
		}
	}

	// audit2why on the db denials, rewritten into kernel form.
	why := sepgadm(t, append(append([]string{"audit2allow", "--explain"}, filter...), "--pglog", csvLogs(t)[0])...)
	if !strings.Contains(why, "Missing type enforcement (TE) allow rule") {
		t.Errorf("audit2why did not explain the db denial as a missing allow rule:\n%s", why)
	}

	dir := t.TempDir()
	tePath := filepath.Join(dir, a2aModule+".te")
	if err := os.WriteFile(tePath, []byte(te), 0o644); err != nil {
		t.Fatal(err)
	}
	modPath := filepath.Join(dir, a2aModule+".mod")
	ppPath := filepath.Join(dir, a2aModule+".pp")
	run(t, "checkmodule", "-M", "-m", "-o", modPath, tePath)
	run(t, "semodule_package", "-o", ppPath, "-m", modPath)
	start := time.Now()
	run(t, "semodule", "-i", ppPath)
	t.Logf("module loaded in %s", time.Since(start).Round(time.Second))
	defer func() {
		out, err := exec.Command("semodule", "-r", a2aModule).CombinedOutput()
		if err != nil {
			t.Errorf("remove module: %v %s", err, out)
		}
	}()

	after := time.Now().UTC().Format(time.RFC3339Nano)
	res, err = lab.PSQL(ctx, client, a2aDB, workload)
	if err != nil || res.SQLState != "" || res.Stdout != "1|x" {
		t.Fatalf("workload with the module: err %v SQLSTATE %q stdout %q stderr %s", err, res.SQLState, res.Stdout, res.Stderr)
	}
	time.Sleep(500 * time.Millisecond)
	left := sepgadm(t, append([]string{"audit", "-o", "json", "--source", "db", "--scontext", lab.ClientDomain,
		"--result", "denied", "--since", after}, "--pglog", csvLogs(t)[0])...)
	if strings.TrimSpace(left) != "" {
		t.Errorf("denials after loading the module:\n%s", left)
	}
}
