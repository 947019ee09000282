package main

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/sepgadm/sepgadm/internal/pgtest"
)

// One cluster for the package, with sepgsql preloaded as on a real sepgsql server
// (on this host it registers nothing: there is no SELinux).
var pg = pgtest.NewShared(pgtest.Options{Sepgsql: true})

func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }

func TestConnectWithDSNAndEnvironment(t *testing.T) {
	c := pg.Get(t)
	ctx := context.Background()
	if err := c.CreateDatabase(ctx, "connect_env"); err != nil {
		t.Fatal(err)
	}
	t.Run("dsn", func(t *testing.T) {
		conn, err := connect(ctx, c.DSN("connect_env"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if got := conn.Config().Database; got != "connect_env" {
			t.Errorf("database = %q, want connect_env", got)
		}
	})
	t.Run("url", func(t *testing.T) {
		conn, err := connect(ctx, "postgres://postgres@127.0.0.1:"+strconv.Itoa(c.Port)+"/connect_env?sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
	})
	t.Run("PG environment as psql", func(t *testing.T) {
		for _, kv := range c.Env("connect_env") {
			k, v, _ := strings.Cut(kv, "=")
			t.Setenv(k, v)
		}
		conn, err := connect(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if got := conn.Config().Database; got != "connect_env" {
			t.Errorf("database from PGDATABASE = %q, want connect_env", got)
		}
	})
}

func TestConnectErrorsKeepPasswordSecret(t *testing.T) {
	const secret = "hunter2-sekrit"
	_, err := connect(context.Background(), "host=/nonexistent port=1 user=x password="+secret+" dbname=y connect_timeout=bogus")
	if err == nil {
		t.Fatal("connect with a bad connect_timeout succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks the password: %v", err)
	}
	var ue usageError
	if !errors.As(err, &ue) {
		t.Errorf("a malformed DSN is a usage error (exit 2), got %T: %v", err, err)
	}
	_, err = connect(context.Background(), "host=/nonexistent port=1 user=x password="+secret+" dbname=y")
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("connect to a missing server: err = %v (must fail and not show the password)", err)
	}
}

func TestForEachDatabase(t *testing.T) {
	c := pg.Get(t)
	ctx := context.Background()
	for _, db := range []string{"each_a", "each_b", "each_noconn"} {
		if err := c.CreateDatabase(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "ALTER DATABASE each_noconn ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}

	visit := func(allDBs bool) []string {
		var seen []string
		err := forEachDatabase(ctx, c.DSN("each_a"), allDBs, func(ctx context.Context, db string, conn *pgx.Conn) error {
			var cur string
			if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&cur); err != nil {
				return err
			}
			if cur != db {
				t.Errorf("callback for %q is connected to %q", db, cur)
			}
			seen = append(seen, db)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return seen
	}
	if diff := cmp.Diff([]string{"each_a"}, visit(false)); diff != "" {
		t.Errorf("without --all-dbs (-want +got):\n%s", diff)
	}
	all := visit(true)
	for _, want := range []string{"each_a", "each_b", "postgres", "template1"} {
		if !slices.Contains(all, want) {
			t.Errorf("--all-dbs visited %v, missing %s", all, want)
		}
	}
	for _, never := range []string{"each_noconn", "template0"} {
		if slices.Contains(all, never) {
			t.Errorf("--all-dbs visited %s, which does not accept connections", never)
		}
	}
	if !slices.IsSorted(all) {
		t.Errorf("--all-dbs order %v is not by name", all)
	}
}
