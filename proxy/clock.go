package proxy

import (
	"sync/atomic"
	"time"
)

// clockTick is how often Run moves the coarse clock.
const clockTick = 50 * time.Millisecond

// clock is a coarse clock, moved by Run every clockTick: pool wait deadlines, server
// lifetimes and idle times read it instead of the system clock, which costs about a
// tenth of a microsecond a read in this project's VM.
type clock struct {
	nanos atomic.Int64 // unix time at the last tick
}

func (k *clock) set(t time.Time) { k.nanos.Store(t.UnixNano()) }

// now is the time of the last tick (at most clockTick late).
func (k *clock) now() time.Time { return time.Unix(0, k.nanos.Load()) }
