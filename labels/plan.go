package labels

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Change is one relabel: Object from its current label to To.
type Change struct {
	Object Object
	To     string
}

// String is the fixfiles-check style line: "Would relabel CLASS KEY from OLD to NEW",
// OLD being "unlabeled" for an object without a label.
func (c Change) String() string {
	return fmt.Sprintf("Would relabel %s %s from %s to %s", c.Object.Class, c.Object.Key, c.Object.DisplayLabel(), c.To)
}

// Plan matches every object against spec as sepgsql_restorecon does and returns the
// objects whose label would change, and those no rule matches (restorecon warns about
// and skips them). Labels are compared as exact strings, as stored.
func Plan(objs []Object, spec *Spec) (changes []Change, unmatched []Object) {
	for _, o := range objs {
		r, ok := spec.Lookup(o.Class, o.Key)
		if !ok {
			unmatched = append(unmatched, o)
			continue
		}
		if r.Context != o.Label {
			changes = append(changes, Change{Object: o, To: r.Context})
		}
	}
	return changes, unmatched
}

// Diff returns the objects whose label differs between before and after (both from
// Objects on the same database), as changes from the before label to the after one.
// An object that lost its label is a change to "unlabeled".
func Diff(before, after []Object) []Change {
	type id struct{ class, kind, target string }
	was := make(map[id]string, len(before))
	for _, o := range before {
		was[id{o.Class, o.Kind, o.Target}] = o.Label
	}
	var out []Change
	for _, o := range after {
		old, ok := was[id{o.Class, o.Kind, o.Target}]
		if !ok || old == o.Label {
			continue
		}
		c := Change{Object: o, To: o.DisplayLabel()}
		c.Object.Label = old
		out = append(out, c)
	}
	return out
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings on;
// backslashes force the E” form, which does not depend on it).
func quoteLiteral(s string) string {
	if strings.ContainsRune(s, '\\') {
		return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// SetLabelSQL is the statement that gives o the label (label "" removes it).
func SetLabelSQL(o Object, label string) string {
	lit := "NULL"
	if label != "" {
		lit = quoteLiteral(label)
	}
	return fmt.Sprintf("SECURITY LABEL FOR selinux ON %s %s IS %s", o.Kind, o.Target, lit)
}

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// BatchSize is how many statements go to the server in one round trip (default 500).
	BatchSize int
	// Progress, when set, is called after each batch with the count done so far.
	Progress func(done int)
}

// ApplyError names the change the server refused.
type ApplyError struct {
	Change Change
	Err    error
}

func (e *ApplyError) Error() string {
	return fmt.Sprintf("relabel %s %s to %s: %v", e.Change.Object.Class, e.Change.Object.Key, e.Change.To, e.Err)
}
func (e *ApplyError) Unwrap() error { return e.Err }

// Apply makes all changes in one transaction on conn: all or nothing. Statements go in
// batches of many per round trip. When the server refuses one, the transaction is rolled
// back, and the batch is replayed statement by statement in a second transaction (also
// rolled back) to name the change it refused (an *ApplyError).
func Apply(ctx context.Context, conn *pgx.Conn, changes []Change, opts ApplyOptions) error {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if err := checkLockCapacity(ctx, conn, changes); err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin relabel transaction: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	for start := 0; start < len(changes); start += opts.BatchSize {
		batch := changes[start:min(start+opts.BatchSize, len(changes))]
		var b strings.Builder
		for _, c := range batch {
			b.WriteString(SetLabelSQL(c.Object, c.To))
			b.WriteString(";\n")
		}
		if _, err := conn.PgConn().Exec(ctx, b.String()).ReadAll(); err != nil {
			tx.Rollback(ctx) //nolint:errcheck // the replay below needs a clean session
			return findRefused(ctx, conn, batch, MapServerError(err))
		}
		if opts.Progress != nil {
			opts.Progress(start + len(batch))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit relabel transaction: %w", MapServerError(err))
	}
	return nil
}

func findRefused(ctx context.Context, conn *pgx.Conn, batch []Change, batchErr error) error {
	if errors.Is(batchErr, ErrNotEnabled) || ctx.Err() != nil {
		return batchErr
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return batchErr
	}
	defer tx.Rollback(ctx) //nolint:errcheck // this transaction only finds the culprit
	for _, c := range batch {
		if _, err := conn.PgConn().Exec(ctx, SetLabelSQL(c.Object, c.To)).ReadAll(); err != nil {
			return &ApplyError{Change: c, Err: MapServerError(err)}
		}
	}
	return batchErr
}

// LocksNeeded is how many lock-table entries one transaction applying changes takes:
// SECURITY LABEL locks each object it labels (a column: its table) until commit.
func LocksNeeded(changes []Change) int {
	seen := make(map[string]bool, len(changes))
	for _, c := range changes {
		seen[c.Object.LockTarget] = true
	}
	return len(seen)
}

// checkLockCapacity refuses, before anything is changed, a transaction that cannot fit
// the server's shared lock table (max_locks_per_transaction × (max_connections +
// max_prepared_transactions) entries, shared by every session).
func checkLockCapacity(ctx context.Context, conn *pgx.Conn, changes []Change) error {
	need := LocksNeeded(changes)
	if need < 1000 {
		return nil
	}
	var perTx, capacity int
	err := conn.QueryRow(ctx, `SELECT current_setting('max_locks_per_transaction')::int,
		current_setting('max_locks_per_transaction')::int *
		(current_setting('max_connections')::int + current_setting('max_prepared_transactions')::int)`).Scan(&perTx, &capacity)
	if err != nil {
		return fmt.Errorf("read the server's lock table size: %w", err)
	}
	if need > capacity*9/10 {
		return fmt.Errorf("relabeling %d objects in one transaction takes about %d locks, but the server's lock table holds %d "+
			"(max_locks_per_transaction = %d): raise max_locks_per_transaction to at least %d (needs a restart), or apply a narrower spec; nothing was changed",
			len(changes), need, capacity, perTx, 2*need/(capacity/perTx)+1)
	}
	return nil
}
