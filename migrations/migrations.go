package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

// Schema is the schema every sepgadm object lives in.
const Schema = "sepgadm"

// VersionTable is tern's version table.
const VersionTable = Schema + ".schema_version"

//go:embed sql/*.sql
var embedded embed.FS

// files is the embedded migration set, rooted at sql/.
func files() fs.FS {
	sub, err := fs.Sub(embedded, "sql")
	if err != nil {
		panic(err) // the embed pattern guarantees sql/ exists
	}
	return sub
}

// Status is where a database stands.
type Status struct {
	// Current is the applied version (0: never migrated).
	Current int32
	// Latest is the version this binary carries.
	Latest int32
	// Pending names the migrations Up would apply, in order.
	Pending []string
}

// UpToDate reports whether nothing is pending.
func (s Status) UpToDate() bool { return s.Current == s.Latest }

// Names lists the embedded migrations in order.
func Names() ([]string, error) { return migrate.FindMigrations(files()) }

// Check reads the database's migration status without changing anything.
func Check(ctx context.Context, conn *pgx.Conn) (Status, error) {
	return checkFrom(ctx, conn, files())
}

func checkFrom(ctx context.Context, conn *pgx.Conn, fsys fs.FS) (Status, error) {
	names, err := migrate.FindMigrations(fsys)
	if err != nil {
		return Status{}, fmt.Errorf("read embedded migrations: %w", err)
	}
	st := Status{Latest: int32(len(names))}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", VersionTable).Scan(&exists); err != nil {
		return Status{}, fmt.Errorf("look for %s: %w", VersionTable, err)
	}
	if exists {
		if err := conn.QueryRow(ctx, "SELECT version FROM "+VersionTable).Scan(&st.Current); err != nil {
			return Status{}, fmt.Errorf("read %s: %w", VersionTable, err)
		}
	}
	if st.Current > st.Latest {
		return st, fmt.Errorf("database is at migration %d, newer than this sepgadm knows (%d): upgrade sepgadm", st.Current, st.Latest)
	}
	st.Pending = names[st.Current:]
	return st, nil
}

// Up applies every pending migration in one transaction and returns the names applied.
// On error nothing is changed: not even the schema or the version table is left behind.
func Up(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	return upFrom(ctx, conn, files())
}

func upFrom(ctx context.Context, conn *pgx.Conn, fsys fs.FS) (applied []string, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin migration: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx)
			// tern's advisory lock is session-level and survives the rollback.
			_, _ = conn.Exec(ctx, "SELECT pg_advisory_unlock_all()")
			applied = nil
		}
	}()
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+Schema); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", Schema, err)
	}
	// The transaction is ours; tern must not open its own per migration.
	m, err := migrate.NewMigratorEx(ctx, conn, VersionTable, &migrate.MigratorOptions{DisableTx: true})
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", VersionTable, err)
	}
	if err := m.LoadMigrations(fsys); err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	m.OnStart = func(_ int32, name, _, _ string) { applied = append(applied, name) }
	if err := m.Migrate(ctx); err != nil {
		var mErr migrate.MigrationPgError
		if errors.As(err, &mErr) {
			return nil, fmt.Errorf("migration %s: %w", mErr.MigrationName, mErr.PgError)
		}
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit migrations: %w", err)
	}
	return applied, nil
}
