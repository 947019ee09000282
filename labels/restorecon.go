package labels

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Restorecon runs sepgsql_restorecon(specfile) on conn ("" = the system's
// sepgsql_contexts) in a transaction and returns every label it changed, read as the
// difference of the catalog before and inside the transaction. With dryRun the
// transaction is rolled back, so nothing changes. The server's warnings (objects no
// rule matches) go to conn's OnNotice handler; see SkipWarningKey.
func Restorecon(ctx context.Context, conn *pgx.Conn, specfile string, dryRun bool) ([]Change, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin restorecon transaction: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // the dry run's rollback, or a no-op after Commit
	before, err := Objects(ctx, conn)
	if err != nil {
		return nil, err
	}
	var arg *string
	if specfile != "" {
		arg = &specfile
	}
	if _, err := tx.Exec(ctx, "SELECT sepgsql_restorecon($1)", arg); err != nil {
		return nil, restoreconError(err, specfile)
	}
	after, err := Objects(ctx, conn)
	if err != nil {
		return nil, err
	}
	changes := Diff(before, after)
	if dryRun {
		if err := tx.Rollback(ctx); err != nil {
			return nil, fmt.Errorf("roll back the restorecon dry run: %w", err)
		}
		return changes, nil
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit restorecon: %w", MapServerError(err))
	}
	return changes, nil
}

func restoreconError(err error, specfile string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Message, "SELinux: failed to initialize labeling handle") {
		where := "the system's sepgsql_contexts"
		if specfile != "" {
			where = fmt.Sprintf("%q", specfile)
		}
		return fmt.Errorf("the server could not open %s: it is read by the PostgreSQL server process (domain postgresql_t), on the server's host; "+
			"put the file where that domain may read it, e.g. under /var/lib/postgresql (type postgresql_db_t; run restorecon on it), not in /tmp: %w", where, err)
	}
	if errors.As(err, &pgErr) && pgErr.Code == "42501" && strings.Contains(pgErr.Message, "must be superuser") {
		return fmt.Errorf("sepgsql_restorecon needs a superuser: %w", err)
	}
	return fmt.Errorf("sepgsql_restorecon: %w", MapServerError(err))
}

const skipPrefix, skipSuffix = "SELinux: no initial label assigned for ", "skipping"

// SkipWarningKey recognises the server's "no initial label assigned for KEY (type=N),
// skipping" warning and returns KEY.
func SkipWarningKey(msg string) (key string, ok bool) {
	if !strings.HasPrefix(msg, skipPrefix) || !strings.HasSuffix(msg, skipSuffix) {
		return "", false
	}
	rest := strings.TrimSuffix(strings.TrimPrefix(msg, skipPrefix), skipSuffix)
	rest = strings.TrimSuffix(rest, ", ")
	if i := strings.LastIndex(rest, " (type="); i >= 0 {
		rest = rest[:i]
	}
	return rest, true
}

// Translate converts an MLS/MCS level or context between the raw and the human form
// with the server's sepgsql_mcstrans_in (toRaw) or sepgsql_mcstrans_out.
func Translate(ctx context.Context, conn *pgx.Conn, s string, toRaw bool) (string, error) {
	fn := "sepgsql_mcstrans_out"
	if toRaw {
		fn = "sepgsql_mcstrans_in"
	}
	var out string
	if err := conn.QueryRow(ctx, "SELECT "+fn+"($1)", s).Scan(&out); err != nil {
		return "", fmt.Errorf("translate %q with %s: %w", s, fn, MapServerError(err))
	}
	return out, nil
}
