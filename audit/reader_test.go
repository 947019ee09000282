package audit

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/golden")

// readAll reads every event of path.
func readAll(t testing.TB, path string, format Format, opts Options) ([]*Event, Stats) {
	t.Helper()
	r, _, err := OpenReader(context.Background(), path, format, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var evs []*Event
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		evs = append(evs, e)
	}
	return evs, r.Stats()
}

func jsonLines(evs []*Event) string {
	var b []byte
	for _, e := range evs {
		b = e.AppendJSON(b)
		b = append(b, '\n')
	}
	return string(b)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// countLines counts the lines of path that contain s, like grep -c.
func countLines(t *testing.T, path, s string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(l, []byte(s)) {
			n++
		}
	}
	return n
}

var labRuns = []string{"run1", "run2"}

// The three PostgreSQL log formats of one server run give the same events, as many as
// grep -c 'SELinux: denied' finds denials, and match the golden JSON.
func TestLabPostgresFormatsAgree(t *testing.T) {
	for _, run := range labRuns {
		t.Run(run, func(t *testing.T) {
			dir := filepath.Join("..", "testdata", "lab", run)
			byFormat := map[string][]*Event{}
			for _, f := range []string{"log", "csv", "json"} {
				path := filepath.Join(dir, "postgresql."+f)
				evs, st := readAll(t, path, FormatAuto, Options{})
				if st.Malformed != 0 {
					t.Errorf("%s: %d malformed lines: %v", path, st.Malformed, st.Examples)
				}
				denied := 0
				for _, e := range evs {
					if e.Result == ResultDenied {
						denied++
					}
					if e.Statement == "" {
						t.Errorf("%s: event without statement: %s", path, e.AppendJSON(nil))
					}
				}
				if want := countLines(t, path, "SELinux: denied"); denied != want || want == 0 {
					t.Errorf("%s: %d denials, grep -c 'SELinux: denied' = %d", path, denied, want)
				}
				byFormat[f] = evs
			}
			golden(t, run+"-postgresql.jsonl", jsonLines(byFormat["json"]))
			// stderr with this prefix has no session id (%c); otherwise all agree.
			var fromCSV []*Event
			for _, e := range byFormat["csv"] {
				c := *e
				c.SessionID = ""
				fromCSV = append(fromCSV, &c)
			}
			if diff := cmp.Diff(jsonLines(fromCSV), jsonLines(byFormat["log"])); diff != "" {
				t.Errorf("stderr vs csvlog (-csv +stderr):\n%s", diff)
			}
			if diff := cmp.Diff(jsonLines(byFormat["csv"]), jsonLines(byFormat["json"])); diff != "" {
				t.Errorf("csvlog vs jsonlog (-csv +json):\n%s", diff)
			}
		})
	}
}

// AVC and USER_AVC counts equal ausearch's (run in the lab guest on the same file).
func TestLabAuditMatchesAusearch(t *testing.T) {
	for _, run := range labRuns {
		t.Run(run, func(t *testing.T) {
			dir := filepath.Join("..", "testdata", "lab", run)
			evs, st := readAll(t, filepath.Join(dir, "audit.log"), FormatAuto, Options{})
			if st.Malformed != 0 {
				t.Errorf("malformed: %v", st.Examples)
			}
			got := map[string]int{}
			for _, e := range evs {
				got[e.RecordType]++
			}
			raw := filepath.Join(dir, "ausearch.raw")
			for _, typ := range []string{"AVC", "USER_AVC"} {
				want := countLines(t, raw, "type="+typ+" ")
				if got[typ] != want || want == 0 {
					t.Errorf("%s: read %d, ausearch -m AVC,USER_AVC found %d", typ, got[typ], want)
				}
			}
			for _, typ := range []string{"MAC_STATUS", "MAC_POLICY_LOAD", "MAC_CONFIG_CHANGE", "SELINUX_ERR"} {
				if want := countLines(t, filepath.Join(dir, "audit.log"), "type="+typ+" "); got[typ] != want {
					t.Errorf("%s: read %d, grep finds %d", typ, got[typ], want)
				}
			}
			golden(t, run+"-audit.jsonl", jsonLines(evs))
		})
	}
}

// With KeepOther, every record that is not part of an event passes through, and every
// line is accounted for.
func TestAuditKeepOther(t *testing.T) {
	path := filepath.Join("..", "testdata", "lab", "run2", "audit.log")
	evs, _ := readAll(t, path, FormatAudit, Options{KeepOther: true})
	got := map[string]int{}
	for _, e := range evs {
		got[e.RecordType]++
	}
	for _, typ := range []string{"SERVICE_START", "SERVICE_STOP", "DAEMON_START", "SYSTEM_BOOT"} {
		if want := countLines(t, path, "type="+typ+" "); got[typ] != want {
			t.Errorf("%s: passed through %d, want %d", typ, got[typ], want)
		}
	}
	if got["PROCTITLE"] != 0 || got["SYSCALL"] != 0 {
		t.Errorf("joined records passed through: %v", got)
	}
}

func TestAuditRecords(t *testing.T) {
	tests := []struct {
		name string
		line string
		want string // JSON of the one event, "" for none
		bad  bool
	}{
		{"raw kernel AVC, no node",
			`type=AVC msg=audit(1700000000.123:42): avc:  denied  { read write } for  pid=7 comm="cat" name="x y" dev="vda" ino=3 scontext=u:r:a_t:s0 tcontext=u:object_r:b_t:s0 tclass=file permissive=1`,
			`{"time":"2023-11-14T22:13:20.123000000Z","source":"os","result":"denied","permissive":true,"perms":["read","write"],"scontext":"u:r:a_t:s0","tcontext":"u:object_r:b_t:s0","tclass":"file","name":"x y","pid":7,"comm":"cat","record_type":"AVC","serial":42}`, false},
		{"hex-encoded comm and name",
			`node=h type=AVC msg=audit(1700000000.5:1): avc:  denied  { open } for  pid=7 comm=6120622063 name=2F746D702F6120 scontext=u:r:a_t tcontext=u:r:a_t tclass=file permissive=0`,
			`{"time":"2023-11-14T22:13:20.500000000Z","source":"os","node":"h","result":"denied","permissive":false,"perms":["open"],"scontext":"u:r:a_t","tcontext":"u:r:a_t","tclass":"file","name":"/tmp/a ","pid":7,"comm":"a b c","record_type":"AVC","serial":1}`, false},
		{"granted",
			`type=AVC msg=audit(1700000000.000:9): avc:  granted  { setenforce } for  pid=1 comm="setenforce" scontext=u:r:a_t:s0 tcontext=u:object_r:security_t:s0 tclass=security`,
			`{"time":"2023-11-14T22:13:20.000000000Z","source":"os","result":"granted","perms":["setenforce"],"scontext":"u:r:a_t:s0","tcontext":"u:object_r:security_t:s0","tclass":"security","pid":1,"comm":"setenforce","record_type":"AVC","serial":9}`, false},
		{"USER_AVC from dbus, ENRICHED",
			"type=USER_AVC msg=audit(1700000000.000:10): pid=55 uid=81 auid=4294967295 ses=4294967295 subj=u:r:dbusd_t:s0 msg='avc:  denied  { send_msg } for msgtype=method_call interface=org.X member=Y dest=org.Z spid=9 tpid=10 scontext=u:r:a_t:s0 tcontext=u:r:b_t:s0 tclass=dbus permissive=0 exe=\"/usr/bin/dbus-daemon\" sauid=81 hostname=? addr=? terminal=?'\x1dUID=\"messagebus\"",
			`{"time":"2023-11-14T22:13:20.000000000Z","source":"os","result":"denied","permissive":false,"perms":["send_msg"],"scontext":"u:r:a_t:s0","tcontext":"u:r:b_t:s0","tclass":"dbus","pid":55,"exe":"/usr/bin/dbus-daemon","record_type":"USER_AVC","serial":10}`, false},
		{"bounded transition SELINUX_ERR",
			`type=SELINUX_ERR msg=audit(1700000000.000:11): op=security_bounded_transition seresult=denied oldcontext=u:r:a_t newcontext=u:r:b_t`,
			`{"time":"2023-11-14T22:13:20.000000000Z","source":"os","result":"denied","name":"op=security_bounded_transition seresult=denied oldcontext=u:r:a_t newcontext=u:r:b_t","record_type":"SELINUX_ERR","serial":11}`, false},
		{"unknown type skipped", `type=LOGIN msg=audit(1700000000.000:12): pid=1 uid=0`, "", false},
		{"no stamp", `type=AVC msg=audit(abc): avc:  denied  { read }`, "", true},
		{"not audit", `hello world`, "", true},
		{"AVC without tclass", `type=AVC msg=audit(1.000:1): avc:  denied  { read } for pid=1 scontext=a tcontext=b`, "", true},
		{"unterminated quote", `type=AVC msg=audit(1.000:1): avc:  denied  { read } for comm="abc scontext=a`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewAuditReader(strings.NewReader(tt.line+"\n"), nil, "t", Options{})
			var got []string
			for {
				e, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, string(e.AppendJSON(nil)))
			}
			var want []string
			if tt.want != "" {
				want = []string{tt.want}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if (r.Stats().Malformed > 0) != tt.bad {
				t.Errorf("malformed = %d, want bad=%v (%v)", r.Stats().Malformed, tt.bad, r.Stats().Examples)
			}
			rs := NewAuditReader(strings.NewReader(tt.line+"\n"), nil, "t", Options{Strict: true})
			_, err := rs.Next()
			if tt.bad != errors.Is(err, ErrMalformed) {
				t.Errorf("strict: err = %v, want ErrMalformed: %v", err, tt.bad)
			}
		})
	}
}

func TestSepgsqlMessages(t *testing.T) {
	const ctx = "scontext=u:r:c_t:s0 tcontext=u:object_r:t_t:s0"
	tests := []struct {
		msg      string
		name     string
		perms    []string
		class    string
		perm     bool
		wantErr  bool
		notAudit bool
	}{
		{msg: `SELinux: denied { select } ` + ctx + ` tclass=db_table name="public.ta" permissive=0`, name: "public.ta", perms: []string{"select"}, class: "db_table"},
		{msg: `SELinux: denied { select } ` + ctx + ` tclass=db_table name="public."a"" permissive=0"" permissive=1`, name: `public."a"" permissive=0"`, perms: []string{"select"}, class: "db_table", perm: true},
		{msg: `SELinux: allowed { search } ` + ctx + ` tclass=db_schema name="public" permissive=0 at character 15`, name: "public", perms: []string{"search"}, class: "db_schema"},
		{msg: `SELinux: denied { getattr execute } ` + ctx + ` tclass=db_procedure name="pg_catalog.textlike(pg_catalog.text,pg_catalog.text)" permissive=0`, name: "pg_catalog.textlike(pg_catalog.text,pg_catalog.text)", perms: []string{"getattr", "execute"}, class: "db_procedure"},
		{msg: `SELinux: denied { dyntransition } ` + ctx + ` tclass=process permissive=0`, perms: []string{"dyntransition"}, class: "process"},
		{msg: `SELinux: security policy violation`, notAudit: true},
		{msg: `SELinux: denied { } ` + ctx + ` tclass=x permissive=0`, wantErr: true},
		{msg: `SELinux: denied { select } ` + ctx + ` tclass=x permissive=7`, wantErr: true},
		{msg: `SELinux: denied { select } scontext=a tclass=x permissive=0`, wantErr: true},
		{msg: `SELinux: denied { select ` + ctx, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			var e Event
			err := parseSepgsql(tt.msg, &e, nil)
			switch {
			case tt.notAudit:
				if !errors.Is(err, errNotSepgsql) {
					t.Fatalf("err = %v, want errNotSepgsql", err)
				}
				return
			case tt.wantErr:
				if err == nil || errors.Is(err, errNotSepgsql) {
					t.Fatalf("err = %v, want a parse error", err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			got := []any{e.Name, e.Perms, e.TClass, e.Permissive}
			want := []any{tt.name, tt.perms, tt.class, tt.perm}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
