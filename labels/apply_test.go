//go:build !lab

package labels

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/sepgadm/sepgadm/internal/pgtest"
)

var pg = pgtest.NewShared(pgtest.Options{Sepgsql: true})

func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }

// A transaction that cannot fit the server's lock table is refused before anything is
// sent; the message says which setting to raise.
func TestApplyRefusesWhatTheLockTableCannotHold(t *testing.T) {
	c := pg.Get(t)
	ctx := context.Background()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var changes []Change
	for i := range 20000 {
		changes = append(changes, Change{
			Object: Object{Class: ClassTable, Kind: "TABLE", Target: fmt.Sprintf("public.t%d", i), LockTarget: fmt.Sprintf("REL %d", i)},
			To:     "u:r:t:s0",
		})
	}
	if got := LocksNeeded(changes); got != 20000 {
		t.Fatalf("LocksNeeded = %d", got)
	}
	err = Apply(ctx, conn, changes, ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "raise max_locks_per_transaction") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("Apply of 20000 relations = %v, want the lock-table refusal", err)
	}
	// Columns of one table share their table's lock.
	cols := []Change{{Object: Object{LockTarget: "REL 1"}}, {Object: Object{LockTarget: "REL 1"}}, {Object: Object{LockTarget: "PROC 2"}}}
	if got := LocksNeeded(cols); got != 2 {
		t.Errorf("LocksNeeded(two columns of one table and a function) = %d, want 2", got)
	}
	// On a host without SELinux the first batch fails and says sepgsql is off.
	err = Apply(ctx, conn, changes[:3], ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "sepgsql is not enabled") {
		t.Errorf("Apply on a host without SELinux = %v", err)
	}
}
