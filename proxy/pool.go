package proxy

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

type poolKey struct{ db, user string }

// pool holds the server connections of one (database, user).
type pool struct {
	key  poolKey
	size int

	mu      sync.Mutex
	idle    []*serverConn
	all     map[*serverConn]struct{}
	opening int
	clock   *clock
	waiters []*waiter // oldest first
	paused  bool
	// expiry ends waits at their deadline; expiryAt is when it fires (zero: not set).
	expiry   *time.Timer
	expiryAt time.Time
}

func newPool(k poolKey, size int, clk *clock) *pool {
	return &pool{key: k, size: size, all: map[*serverConn]struct{}{}, clock: clk}
}

var errPoolTimeout = errors.New("query_wait_timeout: no server connection became free")

// acquire returns an idle connection (preferring one already labelled want) or opens a
// new one while the pool is below its size; otherwise it waits, for at most timeout in
// all (dialing included). A wait makes no timer of its own: the pool's one timer
// (expire) ends the waits that reach their deadline. w is the caller's waiter, reused
// from one wait to the next (nil: a new one).
//
// match, when set, is the startup key a connection must have logged in with (session
// mode): idle connections of other keys are closed to make room for a new one.
func (p *pool) acquire(ctx context.Context, timeout time.Duration, want, match string, w *waiter, open func(context.Context) (*serverConn, error)) (*serverConn, error) {
	if w == nil {
		w = &waiter{}
	}
	if w.ch == nil {
		w.ch = make(chan *serverConn, 1)
	}
	var deadline time.Time // set when the pool first has nothing idle
	for {
		p.mu.Lock()
		if s := p.takeIdleLocked(want, match); s != nil {
			p.mu.Unlock()
			if !p.checkAlive(s) {
				continue
			}
			return s, nil
		}
		if match != "" && !p.paused && len(p.all)+p.opening >= p.size && len(p.idle) > 0 {
			// Full, with idle connections of other clients' startup packets: close the
			// oldest to open one with this client's.
			old := p.idle[0]
			p.idle = p.idle[1:]
			delete(p.all, old)
			old.close()
		}
		if deadline.IsZero() {
			deadline = p.clock.now().Add(timeout)
		}
		if !p.paused && len(p.all)+p.opening < p.size {
			p.opening++
			p.mu.Unlock()
			dctx, cancel := context.WithDeadline(ctx, deadline)
			s, err := open(dctx)
			cancel()
			p.mu.Lock()
			p.opening--
			if err != nil {
				p.wakeOne()
				p.mu.Unlock()
				return nil, err
			}
			s.pool = p
			s.setState("active")
			p.all[s] = struct{}{}
			p.mu.Unlock()
			return s, nil
		}
		// Wait for a connection handed over by release (nil: retry, something changed).
		w.deadline, w.expired = deadline, false
		p.waiters = append(p.waiters, w)
		p.armExpiry(deadline)
		p.mu.Unlock()
		var s *serverConn
		select {
		case s = <-w.ch:
		case <-ctx.Done():
			if p.cancelWait(w) {
				return nil, ctx.Err()
			}
			s = <-w.ch // handed over just as the wait ended: take it
		}
		if s == nil {
			if w.expired {
				return nil, errPoolTimeout
			}
			continue
		}
		if match != "" && s.loginKey != match {
			// Another client's startup packet: replace it with one of ours.
			p.mu.Lock()
			delete(p.all, s)
			p.mu.Unlock()
			s.close()
			continue
		}
		// Handed over by release: it served a transaction microseconds ago and was never
		// idle, so it is not peeked (a backend that dies now is seen at the first read,
		// as one that dies during the transaction is).
		return s, nil
	}
}

// takeIdleLocked takes an idle connection, preferring one labelled want (the most
// recently used otherwise), and only one that logged in with match when it is set;
// nil if none may be taken. p.mu must be held.
func (p *pool) takeIdleLocked(want, match string) *serverConn {
	if p.paused || len(p.idle) == 0 {
		return nil
	}
	i := -1
	for j := len(p.idle) - 1; j >= 0; j-- {
		if match != "" && p.idle[j].loginKey != match {
			continue
		}
		if i < 0 {
			i = j
		}
		if l, _, _ := p.idle[j].snapshot(); l == want {
			i = j
			break
		}
	}
	if i < 0 {
		return nil
	}
	s := p.idle[i]
	p.idle = append(p.idle[:i], p.idle[i+1:]...)
	s.setState("active")
	return s
}

// checkAlive peeks at a connection just taken from the idle list and closes it if its
// backend is gone.
func (p *pool) checkAlive(s *serverConn) bool {
	if s.alive() {
		return true
	}
	p.mu.Lock()
	delete(p.all, s)
	p.mu.Unlock()
	s.close()
	return false
}

// cancelWait takes w out of the queue; false if it was already handed something.
func (p *pool) cancelWait(w *waiter) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.Index(p.waiters, w)
	if i < 0 {
		return false
	}
	p.waiters = slices.Delete(p.waiters, i, i+1)
	return true
}

// waiter is a client waiting for a server connection. When acquire returns, the waiter
// is in no list and its channel is empty, so a client keeps one for all its waits.
type waiter struct {
	ch       chan *serverConn // buffered (1): a connection, or nil (retry; expired: give up)
	deadline time.Time
	expired  bool // set under p.mu before nil is sent
}

// hand gives w a connection, or nil (retry; w.expired: give up). p.mu is held.
func (w *waiter) hand(s *serverConn) {
	w.ch <- s
}

// armExpiry makes sure the pool's timer fires by deadline. p.mu must be held.
func (p *pool) armExpiry(deadline time.Time) {
	if p.expiry == nil {
		p.expiry = time.AfterFunc(time.Until(deadline), p.expire)
		p.expiryAt = deadline
		return
	}
	if p.expiryAt.IsZero() || deadline.Before(p.expiryAt) {
		p.expiry.Reset(time.Until(deadline))
		p.expiryAt = deadline
	}
}

// expire ends the waits past their deadline and sets the timer for the next one.
func (p *pool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	kept := p.waiters[:0]
	next := time.Time{}
	for _, w := range p.waiters {
		if !w.deadline.After(now) {
			w.expired = true
			w.hand(nil)
			continue
		}
		if next.IsZero() || w.deadline.Before(next) {
			next = w.deadline
		}
		kept = append(kept, w)
	}
	clear(p.waiters[len(kept):])
	p.waiters = kept
	p.expiryAt = next
	if !next.IsZero() {
		p.expiry.Reset(time.Until(next))
	}
}

// wakeOne lets one waiter retry. p.mu must be held.
func (p *pool) wakeOne() {
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w.hand(nil)
	}
}

// release returns s to the pool, or closes it when it cannot be reused. A reusable
// connection goes straight to the longest waiter, if any: one wake-up, and no client
// that arrives meanwhile can take it first.
func (p *pool) release(s *serverConn, reusable bool, lifetime time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !reusable || s.doubtful.Load() || p.clock.now().Sub(s.created) > lifetime:
		delete(p.all, s)
		s.close()
		p.wakeOne()
	case len(p.waiters) > 0 && !p.paused:
		s.setState("active")
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w.hand(s)
	default:
		s.setState("idle")
		p.idle = append(p.idle, s)
		p.wakeOne()
	}
}

// reap closes idle connections past the idle timeout or their lifetime.
func (p *pool) reap(idleTimeout, lifetime time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.idle[:0]
	for _, s := range p.idle {
		if _, _, last := s.snapshot(); time.Since(last) > idleTimeout || time.Since(s.created) > lifetime {
			delete(p.all, s)
			s.close()
			continue
		}
		kept = append(kept, s)
	}
	p.idle = kept
}

// closeIdle closes every idle connection (shutdown, reload of the server address).
func (p *pool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.idle {
		delete(p.all, s)
		s.close()
	}
	p.idle = nil
}

func (p *pool) setPaused(v bool) {
	p.mu.Lock()
	p.paused = v
	if !v {
		for range p.waiters {
			p.wakeOne()
		}
	}
	p.mu.Unlock()
}
