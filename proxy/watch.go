package proxy

import (
	"sync/atomic"
	"time"
)

// watchTick is how often the watchdog runs: a quarter of inlineWait, so that a wait is
// cut between inlineWait and inlineWait+watchTick after it began.
const watchTick = inlineWait / 4

// clock is a coarse clock kept by the watchdog.
type clock struct {
	nanos atomic.Int64 // unix time at the last tick
	ticks atomic.Int64
}

func (k *clock) set(t time.Time) { k.nanos.Store(t.UnixNano()) }

// now is the time of the last tick (at most watchTick late).
func (k *clock) now() time.Time { return time.Unix(0, k.nanos.Load()) }

// watch is the watchdog's tick: it moves the coarse clock and cuts short the inline
// waits older than inlineWait (awaitInline then hands the wait to a reader goroutine
// and goes back to watching the client).
func (p *Proxy) watch(now time.Time) {
	p.clock.set(now)
	t := p.clock.ticks.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.clients {
		c.cutLongWait(t)
	}
}

// cutLongWait ends c's inline wait if it began inlineWait or more before tick t.
func (c *client) cutLongWait(t int64) {
	c.imu.Lock()
	defer c.imu.Unlock()
	if c.iserver != nil && !c.icut && t-c.isince > int64(inlineWait/watchTick) {
		_ = c.iserver.conn.SetReadDeadline(time.Now())
		c.icut = true
	}
}
