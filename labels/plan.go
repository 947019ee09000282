package labels

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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
	m := spec.matcher()
	for _, o := range objs {
		r, ok := m.lookup(o.Class, o.Key)
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

// writeLiteral writes s as an SQL string literal (standard_conforming_strings on;
// backslashes force the E'...' form, which does not depend on it).
func writeLiteral(b *strings.Builder, s string) {
	if !strings.ContainsAny(s, `'\`) {
		b.WriteByte('\'')
		b.WriteString(s)
		b.WriteByte('\'')
		return
	}
	if strings.ContainsRune(s, '\\') {
		b.WriteByte('E')
		s = strings.ReplaceAll(s, `\`, `\\`)
	}
	b.WriteByte('\'')
	b.WriteString(strings.ReplaceAll(s, "'", "''"))
	b.WriteByte('\'')
}

// writeSetLabel writes the statement that gives o the label ("" removes it), without
// the closing semicolon.
func writeSetLabel(b *strings.Builder, o Object, label string) {
	b.WriteString("SECURITY LABEL FOR selinux ON ")
	b.WriteString(o.Kind)
	b.WriteByte(' ')
	b.WriteString(o.Target)
	b.WriteString(" IS ")
	if label == "" {
		b.WriteString("NULL")
		return
	}
	writeLiteral(b, label)
}

// SetLabelSQL is the statement that gives o the label (label "" removes it).
func SetLabelSQL(o Object, label string) string {
	var b strings.Builder
	writeSetLabel(&b, o, label)
	return b.String()
}

// DefaultBatchSize is how many statements Apply sends per round trip unless told.
const DefaultBatchSize = 1000

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// BatchSize is how many statements go to the server in one round trip
	// (DefaultBatchSize when 0).
	BatchSize int
	// Progress, when set, is called after each batch with the count done so far.
	Progress func(done int)
	// Stats, when set, receives where the time went.
	Stats *ApplyStats
}

// ApplyStats says where Apply's time went.
type ApplyStats struct {
	// Batches is how many multi-statement round trips were made.
	Batches int
	// Exec is the time spent in those round trips (the server running the statements);
	// the next batch's text is built meanwhile.
	Exec time.Duration
	// Commit is the time the COMMIT took.
	Commit time.Duration
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
// batches of many per round trip (one simple-query message each); a goroutine builds
// the text of batch k+1 while the server runs batch k. When the server refuses one, the
// transaction is rolled back, and the batch is replayed statement by statement in a
// second transaction (also rolled back) to name the change it refused (an *ApplyError).
func Apply(ctx context.Context, conn *pgx.Conn, changes []Change, opts ApplyOptions) error {
	size := opts.BatchSize
	if size <= 0 {
		size = DefaultBatchSize
	}
	stats := opts.Stats
	if stats == nil {
		stats = &ApplyStats{}
	}
	if err := checkLockCapacity(ctx, conn, changes); err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin relabel transaction: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	buildCtx, stopBuilding := context.WithCancel(ctx)
	defer stopBuilding()
	texts := make(chan string, 1)
	go buildBatches(buildCtx, changes, size, texts)
	done := 0
	for text := range texts {
		batch := changes[done:min(done+size, len(changes))]
		t0 := time.Now()
		_, err := conn.PgConn().Exec(ctx, text).ReadAll()
		stats.Exec += time.Since(t0)
		stats.Batches++
		if err != nil {
			tx.Rollback(ctx) //nolint:errcheck // the replay below needs a clean session
			return findRefused(ctx, conn, batch, MapServerError(err))
		}
		done += len(batch)
		if opts.Progress != nil {
			opts.Progress(done)
		}
	}
	if done != len(changes) { // the builder stopped early: ctx is done
		return fmt.Errorf("relabel stopped after %d of %d changes, rolled back: %w", done, len(changes), ctx.Err())
	}
	t0 := time.Now()
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit relabel transaction: %w", MapServerError(err))
	}
	stats.Commit = time.Since(t0)
	return nil
}

// buildBatches sends the text of each batch of size statements to out, in order, and
// closes it; it stops early when ctx is done.
func buildBatches(ctx context.Context, changes []Change, size int, out chan<- string) {
	defer close(out)
	for start := 0; start < len(changes); start += size {
		var b strings.Builder
		b.Grow(128 * min(size, len(changes)-start))
		for _, c := range changes[start:min(start+size, len(changes))] {
			writeSetLabel(&b, c.Object, c.To)
			b.WriteString(";\n")
		}
		select {
		case out <- b.String():
		case <-ctx.Done():
			return
		}
	}
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
