//go:build lab

package trusted_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sepgadm/sepgadm/lab"
	"github.com/sepgadm/sepgadm/trusted"
)

// Lab tests of the trusted-procedure switch, in the enforcing guest with the sepgadm
// policy module and the lab-only test module (testdata/policy) loaded.

const (
	db        = "tagtest"
	tokenFile = "/root/sepgadm-lab.token"

	proxyType = "sepgadm_proxy_t"
	tenantA   = "sepgadm_lab_tenant_a_t"
	tenantB   = "sepgadm_lab_tenant_b_t"
)

func label(typ, level string) string { return "system_u:system_r:" + typ + ":" + level }

var (
	proxyLabel = label(proxyType, "s0")
	aLabel     = label(tenantA, "s0")
	bLabel     = label(tenantB, "s0")
)

func TestMain(m *testing.M) {
	if code := lab.HelperMain(map[string]lab.Helper{"steps": runSteps}); code >= 0 {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// step is one action of a helper session: SQL over the simple protocol, or a Tag call
// (token from the token file unless Token is set).
type step struct {
	SQL     string  `json:"sql,omitempty"`
	Tag     bool    `json:"tag,omitempty"`
	Context *string `json:"context,omitempty"`
	Token   *string `json:"token,omitempty"`
}

type result struct {
	Value    *string `json:"value"`
	SQLState string  `json:"sqlstate,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// runSteps is the helper: one connection, the steps in order, one result each.
func runSteps(ctx context.Context, in io.Reader, out io.Writer) error {
	var steps []step
	if err := json.NewDecoder(in).Decode(&steps); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, lab.DSN(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	token, err := trusted.ReadTokenFile(tokenFile)
	if err != nil {
		return err
	}
	results := make([]result, 0, len(steps))
	for _, s := range steps {
		var r result
		if s.Tag {
			tok := token
			if s.Token != nil {
				tok = *s.Token
			}
			got, err := trusted.Tag(ctx, conn, tok, s.Context)
			if err != nil {
				r.SQLState, r.Error = trusted.SQLState(err), err.Error()
			} else {
				r.Value = &got
			}
		} else {
			res, err := conn.PgConn().Exec(ctx, s.SQL).ReadAll()
			if err != nil {
				r.SQLState, r.Error = trusted.SQLState(err), err.Error()
			} else if n := len(res); n > 0 && len(res[n-1].Rows) > 0 && len(res[n-1].Rows[0]) > 0 && res[n-1].Rows[0][0] != nil {
				v := string(res[n-1].Rows[0][0])
				r.Value = &v
			}
		}
		results = append(results, r)
	}
	return json.NewEncoder(out).Encode(results)
}

// session runs steps as the given context in one connection and returns the results.
func session(t *testing.T, as lab.Context, steps ...step) []result {
	t.Helper()
	setup(t)
	var res []result
	if err := lab.RunHelper(context.Background(), as, "steps", steps, &res); err != nil {
		t.Fatal(err)
	}
	if len(res) != len(steps) {
		t.Fatalf("helper returned %d results for %d steps", len(res), len(steps))
	}
	return res
}

func sql(s string) step              { return step{SQL: s} }
func tag(ctx string) step            { return step{Tag: true, Context: &ctx} }
func tagNull() step                  { return step{Tag: true} }
func tagWith(token, ctx string) step { return step{Tag: true, Context: &ctx, Token: &token} }
func getcon() step                   { return sql("SELECT sepgsql_getcon()") }
func str(r result) string {
	if r.Value == nil {
		return fmt.Sprintf("<null> sqlstate=%s %s", r.SQLState, r.Error)
	}
	return *r.Value
}

func wantValue(t *testing.T, what string, r result, want string) {
	t.Helper()
	if r.SQLState != "" || r.Value == nil || *r.Value != want {
		t.Errorf("%s = %s, want %q", what, str(r), want)
	}
}

func wantState(t *testing.T, what string, r result, code string) {
	t.Helper()
	if r.SQLState != code {
		t.Errorf("%s: got %s, want SQLSTATE %s", what, str(r), code)
	}
}

var setupOnce struct {
	sync.Once
	err error
}

// setup makes the test database as the DBA with the real sepgadm binary: install,
// rotate the credential, and a table per tenant.
func setup(t *testing.T) {
	t.Helper()
	lab.Require(t)
	setupOnce.Do(func() { setupOnce.err = doSetup() })
	if setupOnce.err != nil {
		t.Fatalf("lab set-up: %v", setupOnce.err)
	}
}

func sepgadm(args ...string) (string, error) {
	out, err := exec.Command("sepgadm", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("sepgadm %v: %w\n%s", args, err, out)
	}
	return string(out), nil
}

func doSetup() error {
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, lab.DSN("postgres"))
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		return err
	}
	dsn := lab.DSN(db)
	if _, err := sepgadm("install", "-d", dsn); err != nil {
		return err
	}
	_ = os.Remove(tokenFile)
	if _, err := sepgadm("credential", "rotate", "-d", dsn, "--out", tokenFile); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, s := range []string{
		"CREATE TABLE ta (v text)", "INSERT INTO ta VALUES ('a-row')",
		"CREATE TABLE tb (v text)", "INSERT INTO tb VALUES ('b-row')",
		"CREATE TABLE ta_c5 (v text)", "INSERT INTO ta_c5 VALUES ('a-c5-row')",
		"CREATE TABLE ta_c6 (v text)", "INSERT INTO ta_c6 VALUES ('a-c6-row')",
		"GRANT SELECT ON ta, tb, ta_c5, ta_c6 TO PUBLIC",
		"SECURITY LABEL FOR selinux ON TABLE ta IS 'system_u:object_r:sepgadm_lab_a_table_t:s0'",
		"SECURITY LABEL FOR selinux ON COLUMN ta.v IS 'system_u:object_r:sepgadm_lab_a_table_t:s0'",
		"SECURITY LABEL FOR selinux ON TABLE tb IS 'system_u:object_r:sepgadm_lab_b_table_t:s0'",
		"SECURITY LABEL FOR selinux ON COLUMN tb.v IS 'system_u:object_r:sepgadm_lab_b_table_t:s0'",
		"SECURITY LABEL FOR selinux ON TABLE ta_c5 IS 'system_u:object_r:sepgadm_lab_a_table_t:s0:c5'",
		"SECURITY LABEL FOR selinux ON COLUMN ta_c5.v IS 'system_u:object_r:sepgadm_lab_a_table_t:s0:c5'",
		"SECURITY LABEL FOR selinux ON TABLE ta_c6 IS 'system_u:object_r:sepgadm_lab_a_table_t:s0:c6'",
		"SECURITY LABEL FOR selinux ON COLUMN ta_c6.v IS 'system_u:object_r:sepgadm_lab_a_table_t:s0:c6'",
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

func TestLabProxyDomainCannotReadTenantTablesNorSetconDirectly(t *testing.T) {
	r := session(t, lab.Context{Type: proxyType},
		getcon(),
		sql("SELECT v FROM ta"),
		sql("SELECT sepgsql_setcon('"+aLabel+"')"),
		getcon(),
	)
	wantValue(t, "getcon as the proxy", r[0], proxyLabel)
	wantState(t, "proxy SELECT on A's table", r[1], trusted.CodeDenied)
	wantState(t, "proxy sepgsql_setcon(A) directly", r[2], trusted.CodeDenied)
	wantValue(t, "getcon after the refused setcon", r[3], proxyLabel)
	line, err := lab.ServerLogContains(context.Background(), 10*time.Second,
		"SELinux: denied { dyntransition }", "scontext="+proxyLabel, "tcontext="+aLabel, "tclass=process", "permissive=0")
	if err != nil {
		t.Error(err)
	} else {
		t.Logf("server log: %s", line)
	}
}

func TestLabWrongCredentialIsRefusedLabelUnchanged(t *testing.T) {
	r := session(t, lab.Context{Type: proxyType},
		tagWith("not-the-token", aLabel),
		tagWith("", aLabel),
		getcon(),
		sql("SELECT v FROM ta"),
	)
	wantState(t, "tag with a wrong token", r[0], trusted.CodeInvalidCredential)
	if !strings.Contains(r[0].Error, "sepgadm: invalid credential") {
		t.Errorf("wrong token error = %q, want sepgadm: invalid credential", r[0].Error)
	}
	wantState(t, "tag with an empty token", r[1], trusted.CodeInvalidCredential)
	wantValue(t, "getcon after refused tags", r[2], proxyLabel)
	wantState(t, "SELECT on A's table after refused tags", r[3], trusted.CodeDenied)
}

func TestLabRightCredentialSwitchesToTenantA(t *testing.T) {
	r := session(t, lab.Context{Type: proxyType},
		tag(aLabel),
		getcon(),
		sql("SELECT v FROM ta"),
		sql("SELECT v FROM tb"),
		sql("SELECT digest FROM sepgadm.credential"),
	)
	wantValue(t, "tag(A) returns", r[0], aLabel)
	wantValue(t, "getcon after tag(A)", r[1], aLabel)
	wantValue(t, "A reads its table", r[2], "a-row")
	wantState(t, "A reads B's table", r[3], trusted.CodeDenied)
	wantState(t, "A reads the credential table", r[4], trusted.CodeDenied)
}

func TestLabSwitchAToBThenNullBackToProxy(t *testing.T) {
	r := session(t, lab.Context{Type: proxyType},
		tag(aLabel),
		tag(bLabel),
		sql("SELECT v FROM tb"),
		sql("SELECT v FROM ta"),
		tagNull(),
		getcon(),
		sql("SELECT v FROM tb"),
	)
	wantValue(t, "tag(A)", r[0], aLabel)
	wantValue(t, "tag(B) from A", r[1], bLabel)
	wantValue(t, "B reads its table", r[2], "b-row")
	wantState(t, "B reads A's table", r[3], trusted.CodeDenied)
	wantValue(t, "tag(NULL) returns the peer label", r[4], proxyLabel)
	wantValue(t, "getcon after tag(NULL)", r[5], proxyLabel)
	wantState(t, "proxy reads B's table after NULL", r[6], trusted.CodeDenied)
}

func TestLabSwitchInsideRolledBackTransactionIsUndone(t *testing.T) {
	r := session(t, lab.Context{Type: proxyType},
		sql("BEGIN"),
		tag(aLabel),
		getcon(),
		sql("ROLLBACK"),
		getcon(),
		sql("SELECT v FROM ta"),
	)
	wantValue(t, "tag(A) inside BEGIN", r[1], aLabel)
	wantValue(t, "getcon inside the transaction", r[2], aLabel)
	wantValue(t, "getcon after ROLLBACK", r[4], proxyLabel)
	wantState(t, "SELECT on A's table after ROLLBACK", r[5], trusted.CodeDenied)
}

// Tenant A is mcs_constrained (testdata/policy): only then do categories restrict its
// database access, as refpolicy's MCS constraints on db_* classes exempt other domains.
func TestLabMCSCategories(t *testing.T) {
	c5 := label(tenantA, "s0:c5")
	r := session(t, lab.Context{Type: proxyType},
		tag(c5),
		getcon(),
		sql("SELECT v FROM ta_c5"),
		sql("SELECT v FROM ta_c6"),
		sql("SELECT v FROM ta"),
		tagNull(),
	)
	wantValue(t, "tag(A:s0:c5)", r[0], c5)
	wantValue(t, "getcon at s0:c5", r[1], c5)
	wantValue(t, "A:s0:c5 reads a table at s0:c5", r[2], "a-c5-row")
	wantState(t, "A:s0:c5 reads a table at s0:c6", r[3], trusted.CodeDenied)
	wantValue(t, "A:s0:c5 reads a table at s0", r[4], "a-row")
	wantValue(t, "back to the proxy", r[5], proxyLabel)
	line, err := lab.ServerLogContains(context.Background(), 10*time.Second,
		"SELinux: denied { select }", "scontext="+c5, "tcontext=system_u:object_r:sepgadm_lab_a_table_t:s0:c6")
	if err != nil {
		t.Error(err)
	} else {
		t.Logf("server log: %s", line)
	}
}

// The token, not the domain, is the barrier: a tenant cannot read the digest, but a
// tenant that knows the token can switch (README's security model says so).
func TestLabTenantCannotReadDigestButTokenSwitches(t *testing.T) {
	r := session(t, lab.Context{Type: tenantA},
		getcon(),
		sql("SELECT digest FROM sepgadm.credential"),
		sql("SELECT count(*) FROM sepgadm.credential"),
		tagWith("guess", bLabel),
		tag(bLabel),
		sql("SELECT v FROM tb"),
	)
	wantValue(t, "getcon as tenant A", r[0], aLabel)
	wantState(t, "tenant reads the digest", r[1], trusted.CodeDenied)
	wantState(t, "tenant counts the credential rows", r[2], trusted.CodeDenied)
	wantState(t, "tenant tags with a guessed token", r[3], trusted.CodeInvalidCredential)
	wantValue(t, "tenant that knows the token switches to B", r[4], bLabel)
	wantValue(t, "then reads B's table", r[5], "b-row")
}

func TestLabInvalidLabelPassesSepgsqlState(t *testing.T) {
	r := session(t, lab.Context{Type: proxyType},
		tag("system_u:system_r:no_such_type_t:s0"),
		tag(label("initrc_t", "s0")),
		getcon(),
	)
	wantState(t, "tag to a label the policy does not know", r[0], trusted.CodeInvalidLabel)
	wantState(t, "tag to a domain that is not a tenant", r[1], trusted.CodeDenied)
	wantValue(t, "getcon after refused tags", r[2], proxyLabel)
}

func TestLabStatusReportsReady(t *testing.T) {
	setup(t)
	out, err := sepgadm("status", "-d", lab.DSN(db))
	if err != nil {
		t.Fatalf("sepgadm status in the lab is not ready: %v", err)
	}
	t.Logf("sepgadm status:\n%s", out)
	if !strings.HasSuffix(strings.TrimSpace(out), "ready") || strings.Contains(out, "FAIL") {
		t.Errorf("status output does not say ready:\n%s", out)
	}
	jsonOut, err := sepgadm("status", "-d", lab.DSN(db), "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var report struct {
		Ready bool `json:"ready"`
	}
	if err := json.Unmarshal([]byte(jsonOut), &report); err != nil || !report.Ready {
		t.Errorf("status -o json: ready=%v err=%v\n%s", report.Ready, err, jsonOut)
	}
}

// No token may reach the server's logs, whatever failed on the way.
func TestLabTokenNeverInServerLogs(t *testing.T) {
	setup(t)
	token, err := trusted.ReadTokenFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	// Make sure some failures with the real token were logged first.
	session(t, lab.Context{Type: proxyType}, tag("system_u:system_r:no_such_type_t:s0"), tag(label("initrc_t", "s0")))
	time.Sleep(500 * time.Millisecond)
	files, err := os.ReadDir(lab.PGData + "/log")
	if err != nil {
		t.Fatal(err)
	}
	var checked int
	for _, f := range files {
		b, err := os.ReadFile(lab.PGData + "/log/" + f.Name())
		if err != nil {
			t.Fatal(err)
		}
		checked += len(b)
		if strings.Contains(string(b), token) {
			t.Errorf("server log %s contains the token", f.Name())
		}
	}
	if checked == 0 {
		t.Fatal("no server log to check")
	}
	t.Logf("checked %d bytes of server log", checked)
}
