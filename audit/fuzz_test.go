package audit

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// drain reads every event of r and checks the invariants any input must keep.
func drain(t *testing.T, r Reader) {
	t.Helper()
	defer r.Close()
	for i := 0; ; i++ {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("non-strict reader returned %v", err)
		}
		if i > 1<<16 {
			t.Fatal("too many events")
		}
		_ = e.AppendJSON(nil)
		_ = e.AppendCSV(nil)
		_ = KernelAVC(e)
	}
}

func FuzzAuditReader(f *testing.F) {
	f.Add([]byte("node=h type=AVC msg=audit(1700000000.123:42): avc:  denied  { read } for  pid=7 comm=\"cat\" scontext=a:b:c_t tcontext=a:b:d_t tclass=file permissive=0\nnode=h type=SYSCALL msg=audit(1700000000.123:42): arch=c000003e comm=\"cat\" exe=\"/bin/cat\"\x1dUID=\"root\"\n"))
	f.Add([]byte("type=USER_AVC msg=audit(1.000:2): pid=1 msg='avc:  denied  { start } for scontext=a tcontext=b tclass=service permissive=0 exe=\"/x\"'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		drain(t, NewAuditReader(bytes.NewReader(data), nil, "fuzz", Options{KeepOther: true}))
	})
}

func FuzzPostgresReaders(f *testing.F) {
	f.Add([]byte("2026-11-23 19:49:35.281 UTC [437] postgres@auditcap LOG:  SELinux: denied { select } scontext=a tcontext=b tclass=db_table name=\"public.\"a\"\" permissive=0 at character 3\n2026-11-23 19:49:35.281 UTC [437] postgres@auditcap STATEMENT:  SELECT\n\t1\n"))
	f.Add([]byte("2026-11-23 19:49:35.281 UTC,\"postgres\",\"db\",437,\"[local]\",6b.1,1,\"SELECT\",2026-11-23 19:49:35 UTC,3/1,0,LOG,00000,\"SELinux: denied { select } scontext=a tcontext=b tclass=db_table name=\"\"x\"\" permissive=0\",,,,,,\"SELECT\n1\",,,\"psql\",\"client backend\",,0\n"))
	f.Add([]byte(`{"timestamp":"2026-11-23 19:49:35.281 UTC","pid":437,"error_severity":"LOG","message":"SELinux: denied { select } scontext=a tcontext=b tclass=db_table permissive=1","statement":"SELECT 1"}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := Options{}
		r, err := NewStderrReader(bytes.NewReader(data), nil, "fuzz", opts)
		if err != nil {
			t.Fatal(err)
		}
		drain(t, r)
		drain(t, NewCSVReader(bytes.NewReader(data), nil, "fuzz", opts))
		drain(t, NewJSONReader(bytes.NewReader(data), nil, "fuzz", opts))
		var e Event
		_ = parseSepgsql(string(data), &e, nil)
		if p, err := CompilePrefix(strings.ToValidUTF8(string(data[:min(len(data), 40)]), "")); err == nil {
			p.Match(string(data), nil)
		}
	})
}
