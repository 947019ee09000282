package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const labRun2 = "../../testdata/lab/run2/"

func TestAuditCommand(t *testing.T) {
	pg, al := labRun2+"postgresql.log", labRun2+"audit.log"
	tests := []struct {
		name     string
		args     []string
		wantCode int
		check    func(t *testing.T, stdout, stderr string)
	}{
		{"csv denied merges db and os in time order", []string{"audit", "--result", "denied", "-o", "csv", pg, al}, exitOK,
			func(t *testing.T, out, _ string) {
				rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.Join(rows[0], ","); got != "time,source,node,result,permissive,perms,scontext,tcontext,tclass,name,pid,comm,exe,database,db_user,session_id,statement,record_type,serial" {
					t.Errorf("header %q", got)
				}
				src := map[string]int{}
				for i, r := range rows[1:] {
					src[r[1]]++
					if r[3] != "denied" {
						t.Errorf("row %d result %q", i, r[3])
					}
					if i > 0 && r[0] < rows[i][0] {
						t.Errorf("row %d out of time order: %s < %s", i, r[0], rows[i][0])
					}
				}
				// 7 sepgsql denials; 12 AVC + 2 USER_AVC denials.
				if diff := cmp.Diff(map[string]int{"db": 7, "os": 14}, src); diff != "" {
					t.Errorf("rows by source (-want +got):\n%s", diff)
				}
			}},
		{"type filter exact", []string{"audit", "-o", "json", "--scontext", "sepgadm_lab_client_t", "--exact", "--class", "db_table", "--perm", "insert", pg}, exitOK,
			func(t *testing.T, out, _ string) {
				if n := strings.Count(out, "\n"); n != 1 || !strings.Contains(out, `"name":"public.ro_t"`) {
					t.Errorf("got %d lines:\n%s", n, out)
				}
			}},
		{"exact needs whole type", []string{"audit", "-o", "json", "--scontext", "lab_client", "--exact", pg}, exitOK,
			func(t *testing.T, out, _ string) {
				if out != "" {
					t.Errorf("exact substring matched:\n%s", out)
				}
			}},
		{"source and node", []string{"audit", "-o", "json", "--source", "os", "--node", "sepgadm-lab", "--result", "denied", "--perm", "start", pg, al}, exitOK,
			func(t *testing.T, out, _ string) {
				if strings.Count(out, "\n") != 1 || !strings.Contains(out, `"record_type":"USER_AVC"`) {
					t.Errorf("got:\n%s", out)
				}
			}},
		{"time window", []string{"audit", "-o", "json", "--since", "2026-11-23T19:49:38Z", "--until", "2026-11-23T19:49:38.999Z", pg, al}, exitOK,
			func(t *testing.T, out, _ string) {
				want := []string{"MAC_STATUS", "SEPGSQL", "AVC", "MAC_STATUS", "MAC_POLICY_LOAD"}
				var got []string
				for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
					i := strings.Index(l, `"record_type":"`)
					got = append(got, strings.SplitN(l[i+15:], `"`, 2)[0])
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("records (-want +got):\n%s", diff)
				}
			}},
		{"summary", []string{"audit", "-o", "summary", "--result", "denied", pg, al}, exitOK,
			func(t *testing.T, out, _ string) {
				for _, s := range []string{"Total access decisions: 21", "1. 14 sepgadm_lab_client_t", "db_table"} {
					if !strings.Contains(out, s) {
						t.Errorf("summary lacks %q:\n%s", s, out)
					}
				}
			}},
		{"text and timeline", []string{"audit", "-o", "timeline", pg, al}, exitOK,
			func(t *testing.T, out, _ string) {
				for _, s := range []string{"== MAC_POLICY_LOAD", "denied(permissive) {select}", `"SELECT * FROM ta -- after reload"`} {
					if !strings.Contains(out, s) {
						t.Errorf("timeline lacks %q:\n%s", s, out)
					}
				}
			}},
		{"stdin", []string{"audit", "-o", "json", "--auditlog", "-", "--result", "granted"}, exitOK, nil},
		{"no input", []string{"audit"}, exitUsage, nil},
		{"bad result", []string{"audit", "--result", "maybe", pg}, exitUsage, nil},
		{"bad time", []string{"audit", "--since", "last tuesday", pg}, exitUsage, nil},
		{"bad output", []string{"audit", "-o", "xml", pg}, exitUsage, nil},
		{"missing file", []string{"audit", "/nonexistent/audit.log"}, exitUsage, nil},
		{"bad prefix", []string{"audit", "--log-line-prefix", "%z", pg}, exitUsage, nil},
		{"audit2allow module", []string{"audit2allow", "-m", "local1", "--result", "denied", "--scontext", "sepgadm_lab_client_t", pg, al}, exitOK,
			func(t *testing.T, out, _ string) {
				golden, err := os.ReadFile("testdata/audit2allow-run2.te")
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(string(golden), out); diff != "" {
					t.Errorf("module (-want +got):\n%s", diff)
				}
			}},
		{"audit2allow dontaudit", []string{"audit2allow", "-D", "--class", "capability", al}, exitOK,
			func(t *testing.T, out, _ string) {
				if !strings.Contains(out, "dontaudit sepgadm_lab_client_t self:capability net_admin;") || strings.Contains(out, "module") {
					t.Errorf("got:\n%s", out)
				}
			}},
		{"audit2allow bad module name", []string{"audit2allow", "-m", "a b", al}, exitUsage, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdin := ""
			if strings.Contains(strings.Join(tt.args, " "), "-") {
				b, _ := os.ReadFile(al)
				stdin = string(b)
			}
			code, out, errOut := runCLI(t, stdin, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %s", code, tt.wantCode, errOut)
			}
			if tt.check != nil {
				tt.check(t, out, errOut)
			}
		})
	}
}

func TestAuditMalformedAndStrict(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(labRun2 + "audit.log")
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(bad, append([]byte("type=AVC msg=audit(garbage\n"), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "audit", "-o", "csv", "--result", "denied", "--auditlog", bad)
	if code != exitOK || strings.Count(out, "\n") != 15 || !strings.Contains(errOut, "1 malformed line(s)") || !strings.Contains(errOut, "audit.log:1:") {
		t.Errorf("lenient: exit %d, %d lines, stderr %q", code, strings.Count(out, "\n"), errOut)
	}
	code, _, errOut = runCLI(t, "", "audit", "--strict", "--auditlog", bad)
	if code != exitUsage || !strings.Contains(errOut, "malformed input") {
		t.Errorf("strict: exit %d, stderr %q", code, errOut)
	}
}
