package migrations

import (
	"context"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/sepgadm/sepgadm/internal/pgtest"
)

var pg = pgtest.NewShared(pgtest.Options{})

func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }

func freshDB(t *testing.T, name string) *pgx.Conn {
	t.Helper()
	c := pg.Get(t)
	ctx := context.Background()
	if err := c.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	conn, err := c.Connect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

func TestUpIsIdempotent(t *testing.T) {
	conn := freshDB(t, "mig_idem")
	ctx := context.Background()
	names, err := Names()
	if err != nil || len(names) == 0 {
		t.Fatalf("embedded migrations: %v %v", names, err)
	}
	before, err := Check(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Status{Current: 0, Latest: int32(len(names)), Pending: names}, before); diff != "" {
		t.Errorf("status of a fresh database (-want +got):\n%s", diff)
	}
	var schemas int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = 'sepgadm'").Scan(&schemas); err != nil || schemas != 0 {
		t.Fatalf("Check created the schema (count %d, err %v): it must only read", schemas, err)
	}

	applied, err := Up(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(names, applied); diff != "" {
		t.Errorf("first Up applied (-want +got):\n%s", diff)
	}
	applied, err = Up(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 0 {
		t.Errorf("second Up applied %v, want nothing", applied)
	}
	after, err := Check(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if !after.UpToDate() || after.Current != int32(len(names)) || len(after.Pending) != 0 {
		t.Errorf("status after Up = %+v, want up to date at %d", after, len(names))
	}
	for _, obj := range []string{"sepgadm.credential", "sepgadm.schema_version"} {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", obj).Scan(&ok); err != nil || !ok {
			t.Errorf("%s missing after Up (err %v)", obj, err)
		}
	}
	for _, fn := range []string{"sepgadm.tag(text,text)", "sepgadm.tag_switch(text,text)"} {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT to_regprocedure($1) IS NOT NULL", fn).Scan(&ok); err != nil || !ok {
			t.Errorf("%s missing after Up (err %v)", fn, err)
		}
	}
}

// objects lists every relation and function in schema sepgadm (and whether the schema exists).
func objects(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
		SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = 'sepgadm'
		UNION ALL SELECT 'rel ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'sepgadm'
		UNION ALL SELECT 'func ' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'sepgadm'
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestFailedMigrationLeavesDatabaseUnchanged(t *testing.T) {
	ctx := context.Background()
	good := &fstest.MapFile{Data: []byte("CREATE TABLE sepgadm.one (a int);")}
	bad := &fstest.MapFile{Data: []byte("CREATE TABLE sepgadm.two (a int);\nSELECT * FROM no_such_table;")}

	t.Run("fresh database", func(t *testing.T) {
		conn := freshDB(t, "mig_fail_fresh")
		_, err := upFrom(ctx, conn, fstest.MapFS{"001_one.sql": good, "002_two.sql": bad})
		if err == nil || !strings.Contains(err.Error(), "002_two.sql") || !strings.Contains(err.Error(), "no_such_table") {
			t.Fatalf("Up with a broken 002: err = %v, want one naming 002_two.sql and no_such_table", err)
		}
		if got := objects(t, conn); len(got) != 0 {
			t.Errorf("after a failed first Up the database holds %v, want nothing", got)
		}
		// The connection is still usable and holds no advisory lock.
		var locks int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()").Scan(&locks); err != nil || locks != 0 {
			t.Errorf("advisory locks held after the failure: %d (err %v)", locks, err)
		}
	})
	t.Run("partly migrated database", func(t *testing.T) {
		conn := freshDB(t, "mig_fail_partly")
		if _, err := upFrom(ctx, conn, fstest.MapFS{"001_one.sql": good}); err != nil {
			t.Fatal(err)
		}
		before := objects(t, conn)
		if _, err := upFrom(ctx, conn, fstest.MapFS{"001_one.sql": good, "002_two.sql": bad}); err == nil {
			t.Fatal("Up with a broken 002 succeeded")
		}
		if diff := cmp.Diff(before, objects(t, conn)); diff != "" {
			t.Errorf("objects changed by a failed Up (-before +after):\n%s", diff)
		}
		st, err := checkFrom(ctx, conn, fstest.MapFS{"001_one.sql": good, "002_two.sql": bad})
		if err != nil {
			t.Fatal(err)
		}
		if st.Current != 1 || st.Latest != 2 {
			t.Errorf("status after a failed Up = %+v, want current 1 of 2", st)
		}
	})
}

func TestCheckRefusesNewerDatabase(t *testing.T) {
	conn := freshDB(t, "mig_newer")
	ctx := context.Background()
	if _, err := Up(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "UPDATE sepgadm.schema_version SET version = 99"); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(ctx, conn); err == nil || !strings.Contains(err.Error(), "newer than this sepgadm knows") {
		t.Fatalf("Check on a database at version 99: err = %v", err)
	}
}
