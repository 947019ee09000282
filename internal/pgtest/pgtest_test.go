package pgtest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sepgadm/sepgadm/internal/pgtest"
)

var pg = pgtest.NewShared(pgtest.Options{Sepgsql: true})

func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }

func TestClusterServesSocketAndTCP(t *testing.T) {
	c := pg.Get(t)
	ctx := context.Background()
	for name, dsn := range map[string]string{"socket": c.DSN("postgres"), "tcp": c.TCPDSN("postgres")} {
		t.Run(name, func(t *testing.T) {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatalf("connect over %s: %v", name, err)
			}
			defer conn.Close(ctx)
			var version string
			if err := conn.QueryRow(ctx, "SHOW server_version_num").Scan(&version); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(version, "15") {
				t.Errorf("server_version_num = %s, want PostgreSQL 15", version)
			}
		})
	}
}

// On a host without SELinux, sepgsql loads but registers no label provider (lab.md):
// the cluster must really preload it for later tiers to rely on that.
func TestSepgsqlPreloadedWithoutSELinux(t *testing.T) {
	c := pg.Get(t)
	ctx := context.Background()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var libs string
	if err := conn.QueryRow(ctx, "SHOW shared_preload_libraries").Scan(&libs); err != nil {
		t.Fatal(err)
	}
	if libs != "sepgsql" {
		t.Fatalf("shared_preload_libraries = %q, want sepgsql", libs)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS t_label (a int)"); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, "SECURITY LABEL FOR selinux ON TABLE t_label IS 'system_u:object_r:sepgsql_table_t:s0'")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "22023" {
		t.Fatalf("SECURITY LABEL without SELinux: got %v, want SQLSTATE 22023 (provider not loaded)", err)
	}
}

func TestEnvPointsLibpqClientsAtCluster(t *testing.T) {
	c := pg.Get(t)
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatalf("psql not installed: %v", err)
	}
	cmd := exec.Command(psql, "-X", "-Atc", "SELECT current_database()")
	cmd.Env = append(os.Environ(), c.Env("template1")...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "template1" {
		t.Errorf("psql current_database() = %q, want template1", got)
	}
}

func TestCreateDatabase(t *testing.T) {
	c := pg.Get(t)
	ctx := context.Background()
	if err := c.CreateDatabase(ctx, "Mixed Case"); err != nil {
		t.Fatal(err)
	}
	conn, err := c.Connect(ctx, "Mixed Case")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
}

// A cluster that cannot start must say why, naming the missing binaries.
func TestStartFailsClearlyWithoutBinaries(t *testing.T) {
	_, err := pgtest.Start(context.Background(), pgtest.Options{BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "postgresql-15") {
		t.Fatalf("Start with an empty BinDir: err = %v, want one naming postgresql-15", err)
	}
}
