package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/sepgadm/sepgadm/internal/pgtest"
	"github.com/sepgadm/sepgadm/trusted"
)

// Host tier: PostgreSQL with sepgsql preloaded on a host without SELinux, as on the
// developers' and CI machines. MAC behaviour itself is proven in the lab (trusted/).

func newDB(t *testing.T, name string) (c *pgtest.Cluster, dsn string) {
	t.Helper()
	c = pg.Get(t)
	if err := c.CreateDatabase(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return c, c.DSN(name)
}

func TestInstallWithoutSepgsqlInstallsSQLOnly(t *testing.T) {
	_, dsn := newDB(t, "inst_nosel")
	code, out, errOut := runCLI(t, "", "install", "-d", dsn)
	if code != exitOK {
		t.Fatalf("install: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"applied [001_tagging.sql]", "sepgsql is not enabled on this server", "installed the SQL only, no labels applied"} {
		if !strings.Contains(out, want) {
			t.Errorf("install output %q lacks %q", out, want)
		}
	}
	code, out, _ = runCLI(t, "", "install", "-d", dsn)
	if code != exitOK || !strings.Contains(out, "migrations up to date") {
		t.Errorf("second install: exit %d, output %q; want up to date", code, out)
	}
}

// install --proxy-role protects each role's sessions from logging bind parameters.
func TestInstallProtectsProxyRoles(t *testing.T) {
	c, dsn := newDB(t, "inst_roles")
	ctx := context.Background()
	conn, err := c.Connect(ctx, "inst_roles")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE ROLE "proxy role" LOGIN`); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "install", "-d", dsn, "--proxy-role", "proxy role")
	if code != exitOK || !strings.Contains(out, "role proxy role: bind parameters are never logged") {
		t.Fatalf("install --proxy-role: exit %d, out %q, err %q", code, out, errOut)
	}
	var settings []string
	if err := conn.QueryRow(ctx, `SELECT setconfig FROM pg_db_role_setting WHERE setrole = (SELECT oid FROM pg_roles WHERE rolname = 'proxy role') AND setdatabase = 0`).Scan(&settings); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"log_parameter_max_length=0", "log_parameter_max_length_on_error=0"}, settings); d != "" {
		t.Errorf("role settings (-want +got):\n%s", d)
	}
	if code, _, errOut := runCLI(t, "", "install", "-d", dsn, "--proxy-role", "nobody_here"); code == exitOK || !strings.Contains(errOut, "nobody_here") {
		t.Errorf("install --proxy-role of a missing role: exit %d, %q", code, errOut)
	}
}

func TestMigrateStatusAndUp(t *testing.T) {
	_, dsn := newDB(t, "mig_cli")
	code, out, errOut := runCLI(t, "", "migrate", "status", "-d", dsn)
	if code != exitCheck || !strings.Contains(out, "mig_cli: version 0 of 1, pending [001_tagging.sql]") {
		t.Fatalf("migrate status before: exit %d, out %q, err %q", code, out, errOut)
	}
	if code, _, errOut = runCLI(t, "", "migrate", "up", "-d", dsn); code != exitOK {
		t.Fatalf("migrate up: exit %d, %s", code, errOut)
	}
	code, out, _ = runCLI(t, "", "migrate", "status", "-d", dsn)
	if code != exitOK || !strings.Contains(out, "mig_cli: version 1 of 1, up to date") {
		t.Fatalf("migrate status after: exit %d, out %q", code, out)
	}
}

func TestCredentialRotate(t *testing.T) {
	c, dsn := newDB(t, "cred_rot")
	if code, _, errOut := runCLI(t, "", "install", "-d", dsn); code != exitOK {
		t.Fatalf("install: %s", errOut)
	}
	path := filepath.Join(t.TempDir(), "token")
	code, out, errOut := runCLI(t, "", "credential", "rotate", "-d", dsn, "--out", path)
	if code != exitOK {
		t.Fatalf("rotate: exit %d, %s", code, errOut)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %04o, want 0600", fi.Mode().Perm())
	}
	token, err := trusted.ReadTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(token) < 43 {
		t.Errorf("token has %d characters, want ≥ 43 (32 random bytes)", len(token))
	}
	if strings.Contains(out+errOut, token) {
		t.Fatal("rotate printed the token")
	}
	digest := storedDigest(t, c, "cred_rot")
	if digest != trusted.Digest(token) {
		t.Errorf("stored digest %s, want sha256 of the file's token", digest)
	}

	// A second rotation replaces both.
	if code, _, errOut := runCLI(t, "", "credential", "rotate", "-d", dsn, "--out", path); code != exitOK {
		t.Fatalf("second rotate: %s", errOut)
	}
	token2, _ := trusted.ReadTokenFile(path)
	if token2 == token || storedDigest(t, c, "cred_rot") != trusted.Digest(token2) {
		t.Error("second rotation did not replace the token and its digest together")
	}

	// A token file others can read is refused, and nothing changes.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "", "credential", "rotate", "-d", dsn, "--out", path)
	if code != exitUsage || !strings.Contains(errOut, "readable by group or others") || !strings.Contains(errOut, "nothing was changed") {
		t.Errorf("rotate onto a 0644 file: exit %d, stderr %q", code, errOut)
	}
	if storedDigest(t, c, "cred_rot") != trusted.Digest(token2) {
		t.Error("a refused rotation changed the stored digest")
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != token2 {
		t.Error("a refused rotation changed the token file")
	}
}

func TestCredentialRotateAllDBsIsAllOrNothing(t *testing.T) {
	pg.Get(t) // the PostgreSQL tier must be available
	ctx := context.Background()
	// A cluster of its own: --all-dbs must see exactly these databases.
	c, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		if pgtest.RequireAll() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	defer c.Stop()
	for _, db := range []string{"a_ok", "b_missing"} {
		if err := c.CreateDatabase(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	for _, db := range []string{"a_ok", "postgres", "template1"} {
		if code, _, errOut := runCLI(t, "", "install", "-d", c.DSN(db)); code != exitOK {
			t.Fatalf("install %s: %s", db, errOut)
		}
	}
	path := filepath.Join(t.TempDir(), "token")
	code, _, errOut := runCLI(t, "", "credential", "rotate", "--all-dbs", "-d", c.DSN("postgres"), "--out", path)
	if code != exitUsage || !strings.Contains(errOut, "database b_missing: sepgadm is not installed there") {
		t.Fatalf("rotate --all-dbs with b_missing uninstalled: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("token file written although the rotation failed (stat err %v)", err)
	}
	if d := storedDigest(t, c, "a_ok"); d != "" {
		t.Errorf("a_ok got digest %q although the rotation failed", d)
	}
	if code, _, errOut := runCLI(t, "", "install", "-d", c.DSN("b_missing")); code != exitOK {
		t.Fatalf("install b_missing: %s", errOut)
	}
	code, out, errOut := runCLI(t, "", "credential", "rotate", "--all-dbs", "-d", c.DSN("postgres"), "--out", path)
	if code != exitOK {
		t.Fatalf("rotate --all-dbs: exit %d, %s", code, errOut)
	}
	if !strings.Contains(out, "credential rotated in 4 database(s) [a_ok b_missing postgres template1]") {
		t.Errorf("rotate output %q", out)
	}
	token, _ := trusted.ReadTokenFile(path)
	for _, db := range []string{"a_ok", "b_missing", "postgres", "template1"} {
		if storedDigest(t, c, db) != trusted.Digest(token) {
			t.Errorf("%s does not hold the new digest", db)
		}
	}
}

func storedDigest(t *testing.T, c *pgtest.Cluster, db string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := c.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var d string
	_ = conn.QueryRow(ctx, "SELECT digest FROM sepgadm.credential").Scan(&d)
	return d
}

// Without SELinux, the switch refuses with 55000 after checking the credential (28000).
func TestTagWithoutSELinux(t *testing.T) {
	c, dsn := newDB(t, "tag_nosel")
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "token")
	for _, args := range [][]string{{"install", "-d", dsn}, {"credential", "rotate", "-d", dsn, "--out", path}} {
		if code, _, errOut := runCLI(t, "", args...); code != exitOK {
			t.Fatalf("%v: %s", args, errOut)
		}
	}
	token, _ := trusted.ReadTokenFile(path)
	conn, err := c.Connect(ctx, "tag_nosel")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tenant := "system_u:system_r:sepgadm_lab_tenant_a_t:s0"
	// An ordinary role, as the proxy logs in as its clients' roles: DAC must let it call
	// the switch (55000 here, not 42501 "permission denied for schema sepgadm").
	if _, err := conn.Exec(ctx, "CREATE ROLE tag_plain_user LOGIN"); err != nil {
		t.Fatal(err)
	}
	plainCfg := conn.Config().Copy()
	plainCfg.User = "tag_plain_user"
	plain, err := pgx.ConnectConfig(ctx, plainCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)
	if _, err := trusted.Tag(ctx, plain, token, &tenant); trusted.SQLState(err) != trusted.CodeNotEnabled {
		t.Fatalf("Tag as an ordinary role: %v, want SQLSTATE 55000", err)
	}
	for _, tt := range []struct {
		name, token, want string
	}{
		{"right credential", token, trusted.CodeNotEnabled},
		{"wrong credential", token + "x", trusted.CodeInvalidCredential},
		{"empty credential", "", trusted.CodeInvalidCredential},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := trusted.Tag(ctx, conn, tt.token, &tenant)
			if got := trusted.SQLState(err); got != tt.want {
				t.Fatalf("Tag: SQLSTATE %q (err %v), want %s", got, err, tt.want)
			}
			if strings.Contains(err.Error(), token) {
				t.Fatal("the error shows the token")
			}
			if !strings.Contains(err.Error(), "sepgadm: ") {
				t.Errorf("error %q does not start its message with sepgadm:", err)
			}
		})
	}
}

func TestStatusOnHostIsNotReady(t *testing.T) {
	_, dsn := newDB(t, "status_host")
	if code, _, errOut := runCLI(t, "", "install", "-d", dsn); code != exitOK {
		t.Fatalf("install: %s", errOut)
	}
	code, out, _ := runCLI(t, "", "status", "-d", dsn, "-o", "json")
	if code != exitCheck {
		t.Fatalf("status on a host without SELinux: exit %d, want %d", code, exitCheck)
	}
	var report statusReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	got := map[string]bool{}
	for _, ch := range report.Databases[0].Checks {
		got[ch.Name] = ch.OK
	}
	want := map[string]bool{
		"sepgsql preloaded":     true,
		"sepgsql.sql installed": false,
		"SELinux enforcing":     false,
		"migrations":            true,
		"credential":            false,
		"label function sepgadm.tag_switch(text,text)": false,
		"label table sepgadm.credential":               false,
		"label column sepgadm.credential.singleton":    false,
		"label column sepgadm.credential.digest":       false,
		"label column sepgadm.credential.rotated_at":   false,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status checks (-want +got):\n%s", diff)
	}
	if report.Ready {
		t.Error("report says ready")
	}
	code, out, _ = runCLI(t, "", "status", "-d", dsn)
	if code != exitCheck || !strings.Contains(out, "NOT READY") || !strings.Contains(out, "run sepgadm credential rotate") {
		t.Errorf("status table: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, "", "status", "-d", dsn, "-o", "yaml"); code != exitUsage || !strings.Contains(errOut, `--output "yaml"`) {
		t.Errorf("status -o yaml: exit %d, %q", code, errOut)
	}
}
