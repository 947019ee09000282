package labels

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Object is one labelable object of a database with its selinux label.
type Object struct {
	// Class is the SELinux object class (db_table, ...).
	Class string `json:"class"`
	// Key is what sepgsql_restorecon looks the object up by: quote_ident() of the
	// database, schema, relation and column or function name, joined by '.'.
	Key string `json:"key"`
	// Kind and Target name the object in SECURITY LABEL ... ON Kind Target.
	Kind   string `json:"kind"`
	Target string `json:"target"`
	// Label is the selinux label, "" when the object has none.
	Label string `json:"label,omitempty"`
	// System marks system columns (ctid, xmin, ...).
	System bool `json:"system,omitempty"`
	// LockTarget is what SECURITY LABEL locks for it: the object, or a column's table.
	LockTarget string `json:"-"`
}

// Labeled reports whether the object carries a selinux label.
func (o Object) Labeled() bool { return o.Label != "" }

// DisplayLabel is the label, or "unlabeled".
func (o Object) DisplayLabel() string {
	if o.Label == "" {
		return "unlabeled"
	}
	return o.Label
}

// objectsSQL lists, in one statement, everything sepgsql_restorecon visits: all
// databases of the cluster, and in the current database all schemas, tables (plain and
// partitioned), sequences, views, the columns of tables (system columns too, dropped
// ones not) and all functions. Keys are built with quote_ident, as the server builds
// them with quote_identifier.
const objectsSQL = `
WITH cur AS (SELECT quote_ident(current_database()) AS db),
lbl AS (SELECT classoid, objoid, objsubid, label FROM pg_catalog.pg_seclabel WHERE provider = 'selinux')
SELECT 'db_database', quote_ident(d.datname), 'DATABASE', quote_ident(d.datname), coalesce(l.label, ''), false, 'DATABASE ' || quote_ident(d.datname)
  FROM pg_catalog.pg_database d
  LEFT JOIN pg_catalog.pg_shseclabel l ON l.provider = 'selinux'
   AND l.classoid = 'pg_catalog.pg_database'::regclass AND l.objoid = d.oid
UNION ALL
SELECT 'db_schema', cur.db || '.' || quote_ident(n.nspname), 'SCHEMA', quote_ident(n.nspname), coalesce(l.label, ''), false, 'SCHEMA ' || n.oid
  FROM cur, pg_catalog.pg_namespace n
  LEFT JOIN lbl l ON l.classoid = 'pg_catalog.pg_namespace'::regclass AND l.objoid = n.oid AND l.objsubid = 0
UNION ALL
SELECT CASE c.relkind WHEN 'S' THEN 'db_sequence' WHEN 'v' THEN 'db_view' ELSE 'db_table' END,
       cur.db || '.' || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname), coalesce(l.label, ''), false, 'REL ' || c.oid
  FROM cur, pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN lbl l ON l.classoid = 'pg_catalog.pg_class'::regclass AND l.objoid = c.oid AND l.objsubid = 0
 WHERE c.relkind IN ('r', 'p', 'S', 'v')
UNION ALL
SELECT 'db_column',
       cur.db || '.' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(a.attname),
       'COLUMN', quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(a.attname),
       coalesce(l.label, ''), a.attnum < 0, 'REL ' || c.oid
  FROM cur, pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN lbl l ON l.classoid = 'pg_catalog.pg_class'::regclass AND l.objoid = c.oid AND l.objsubid = a.attnum
 WHERE c.relkind IN ('r', 'p') AND NOT a.attisdropped
UNION ALL
SELECT 'db_procedure', cur.db || '.' || quote_ident(n.nspname) || '.' || quote_ident(p.proname),
       CASE p.prokind WHEN 'a' THEN 'AGGREGATE' WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
       quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' ||
         CASE WHEN p.prokind = 'a' THEN coalesce(nullif(pg_catalog.pg_get_function_identity_arguments(p.oid), ''), '*')
              ELSE pg_catalog.pg_get_function_identity_arguments(p.oid) END || ')',
       coalesce(l.label, ''), false, 'PROC ' || p.oid
  FROM cur, pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  LEFT JOIN lbl l ON l.classoid = 'pg_catalog.pg_proc'::regclass AND l.objoid = p.oid AND l.objsubid = 0`

// Objects lists every labelable object of the connected database (and every database
// of the cluster), sorted by class (in restorecon's order), key and target.
func Objects(ctx context.Context, conn *pgx.Conn) ([]Object, error) {
	rows, err := conn.Query(ctx, objectsSQL)
	if err != nil {
		return nil, fmt.Errorf("list labelable objects: %w", err)
	}
	objs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Object, error) {
		var o Object
		err := row.Scan(&o.Class, &o.Key, &o.Kind, &o.Target, &o.Label, &o.System, &o.LockTarget)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("list labelable objects: %w", err)
	}
	SortObjects(objs)
	return objs, nil
}

// SortObjects orders objects by class (restorecon's order), then key, then target
// (unique together, so the order is total).
func SortObjects(objs []Object) {
	slices.SortFunc(objs, func(a, b Object) int {
		if ra, rb := classRank(a.Class), classRank(b.Class); ra != rb {
			return cmp.Compare(ra, rb)
		}
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return strings.Compare(a.Target, b.Target)
	})
}

// ErrNotEnabled means sepgsql does not label anything on this server: SELinux is off
// on its host, or sepgsql is not loaded there.
var ErrNotEnabled = errors.New("sepgsql is not enabled on the server (SELinux disabled on its host, or sepgsql not in shared_preload_libraries)")

// CheckEnabled returns ErrNotEnabled unless sepgsql is active in this session, and a
// clear error when its functions are not installed in the database.
func CheckEnabled(ctx context.Context, conn *pgx.Conn) error {
	var con *string
	err := conn.QueryRow(ctx, "SELECT sepgsql_getcon()").Scan(&con)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42883":
		return fmt.Errorf("sepgsql functions are not installed in database %s (run sepgsql.sql in it): %w", conn.Config().Database, ErrNotEnabled)
	case errors.As(err, &pgErr) && pgErr.Code == "55000":
		return ErrNotEnabled
	case err != nil:
		return fmt.Errorf("check sepgsql: %w", err)
	case con == nil:
		return ErrNotEnabled
	}
	return nil
}

// MapServerError turns the server errors users hit into ones that say what to do.
func MapServerError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "42883":
		if strings.Contains(pgErr.Message, "sepgsql_") {
			return fmt.Errorf("%w: its functions are not installed in this database (run sepgsql.sql in it): %v", ErrNotEnabled, err)
		}
	case "55000":
		return fmt.Errorf("%w: %v", ErrNotEnabled, err)
	case "53200":
		return fmt.Errorf("the server's lock table is full: SECURITY LABEL locks every object it relabels until the transaction ends; "+
			"raise max_locks_per_transaction (needs a restart) or apply a narrower spec: %w", err)
	case "22023":
		if pgErr.Message == `security label provider "selinux" is not loaded` {
			return fmt.Errorf("%w: %v", ErrNotEnabled, err)
		}
	case "42501":
		if pgErr.Message == "SELinux: security policy violation" {
			return fmt.Errorf("denied by sepgsql (the server log has the SELinux: denied line): %w", err)
		}
	}
	return err
}
