package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sepgadm/sepgadm/proxy/wire"
)

// The event loop serves transaction-mode clients in their steady state on one
// goroutine, as PgBouncer's single epoll loop does: a client's goroutine parks itself
// while the client is between requests, and the loop reads the client's next request,
// checks a server connection out, forwards the request and relays the answer, for any
// number of clients, without waking a goroutine per message. Behind a pool smaller than
// its clients, the goroutine-per-client relay parked each client's goroutine three
// times per transaction (for the request, for a connection, for the answer), and those
// wake-ups were most of the gap to PgBouncer (see doc.go).
//
// The loop does only the common case, and the same way as the goroutines: it calls the
// same forwardTxn and serverMessage, on the same txState, takes connections from the
// same pool queue, and applies the same refusals (a query text the client's goroutine
// has not already found clean is not forwarded by the loop). Anything else hands the
// client back to its goroutine, untouched, with every unread byte still in its buffers:
// a text not yet checked, a server connection that must be switched, confirmed
// (verify_label = "always") or have settings replayed, a pool that may open a
// connection, a named Parse or a Close while idle, pipelining, Flush, COPY, a function
// call, Terminate, a frame larger than a buffer, a slow reader (what it could not take
// is kept in order and sent by its goroutine first), and every error.
//
// The loop never waits on a socket: reads are non-blocking (rawIO.nonblock), and what a
// socket cannot take is kept in rawIO.overflow; a client whose socket is full goes back
// to its goroutine. The loop's epoll descriptor sits in Go's own netpoller, so an idle
// loop parks like any goroutine and a busy one serves every ready descriptor per wake-up.
//
// It is experimental and off by default (event_loop = "off"), because it is not faster
// yet. Measured with make bench-proxy on this project's 2-core VM (same runs, medians of
// 3): select-only at 50 clients about level with the goroutine relay, at 100 clients
// from 0.8x to 1.0x of it; tpcb-like 15-25% more pooler CPU per transaction. It does
// what PgBouncer does (per transaction 2 writes, 2.5 reads, 0.56 epoll_ctl, 0.25
// epoll_pwait, against PgBouncer's 2 sendto, 2.5 recvfrom, 1 epoll_ctl, 0.05
// epoll_wait) and its own user time is small, but every socket it watches is also in Go's
// netpoller: each arrival is signalled to both epoll sets, and a parked loop is woken
// through two of them. Blocking in its own epoll_wait instead was worse still (Go's
// netpoller thread then wakes for the same events). A prototype (not kept) that took the
// parked clients' sockets out of Go's netpoller cut the loop's CPU by up to 4 µs per
// select-only and 17 µs per tpcb-like transaction, but not its TPS: serving its clients
// one after another also adds latency, which the goroutine relay, on both CPUs at once,
// does not have. On 2026-12-04 a second prototype (not kept) took clients and servers
// alike out of Go's netpoller while the loop served them (EPOLL_CTL_DEL on Go's own
// epoll descriptor, put back as /proc/self/fdinfo showed it before a goroutine waited
// again): raced in one run against the same loop without it (10 s points, medians of 2,
// 50 and 100 clients), select-only 14.6k and 14.8k TPS against 15.0k and 13.4k (36.9
// and 36.9 µs pooler CPU per transaction against 36.0 and 32.5), tpcb-like 1.9k and 1.8k
// against 1.8k and 2.0k (218 and 218 µs against 238 and 221), while the goroutine
// relay did 17.1k, 16.2k, 2.0k and 2.4k TPS on 30.8, 30.3, 190 and 161 µs. The double
// registration is not what makes the loop slower; the loop stays experimental.

// eventLoop is the proxy's event loop.
type eventLoop struct {
	bit  uint64 // this loop's bit in serverConn.inLoop
	epfd int
	evfd int      // an eventfd in epfd: post wakes a parked loop with it
	file *os.File // epfd in Go's netpoller
	raw  syscall.RawConn

	mu     sync.Mutex
	inbox  []loopMsg
	asleep bool // the loop may be parked: post must write evfd

	// Only the loop's goroutine touches what follows.
	slots  []loopSlot
	free   []int32
	events []unix.EpollEvent
	spare  []loopMsg
}

// loopSlot is a client the loop holds; gen tells its events from those of the slot's
// earlier clients.
type loopSlot struct {
	c   *client
	gen uint32
}

type loopMsgKind uint8

const (
	msgAdopt  loopMsgKind = iota // a client's goroutine parks: the loop takes the client
	msgHanded                    // the pool handed a waiting client a connection, or nil
	msgEvict                     // the client is being closed: give it back now
)

type loopMsg struct {
	kind    loopMsgKind
	c       *client
	s       *serverConn
	expired bool
}

// loopClient is a client's part in the event loop. Apart from back and the fields the
// loop hands over, only the loop's goroutine touches it while the loop holds the client,
// and only the client's goroutine otherwise.
type loopClient struct {
	loop    *eventLoop    // the client's loop, for its whole session
	back    chan struct{} // buffered (1): the loop gives the client back
	rio     *rawIO        // the client's socket
	slot    int32         // -1: the loop does not hold the client
	gen     uint32
	waiting bool   // queued in the pool through waiter
	waiter  waiter // the loop's place in the pool queue for this client
	out     tally
	// What the client's goroutine finds when it gets the client back.
	pre    *serverConn // checked out for the client but not ready (switch, verify, replay)
	preErr error       // the pool wait ended without a connection
	evict  bool        // msgEvict arrived while a handed connection was on its way
}

// Keys of epoll events: the slot in Fd; the slot's generation, shifted, with bit 0 set
// for the client's server connection, in Pad. The eventfd has Fd -1. Generations wrap
// within 31 bits, so that the shifted one always fits.
const (
	keyServer = 1
	genMask   = 1<<31 - 1
)

// eventFor is the epoll event of a slot's client socket (server false) or of its server
// connection, for events.
func eventFor(slot int32, gen uint32, server bool, events uint32) unix.EpollEvent {
	pad := int32(gen << 1)
	if server {
		pad |= keyServer
	}
	return unix.EpollEvent{Events: events, Fd: slot, Pad: pad}
}

// eventKey undoes eventFor.
func eventKey(ev unix.EpollEvent) (slot int32, gen uint32, server bool) {
	return ev.Fd, uint32(ev.Pad) >> 1 & genMask, ev.Pad&keyServer != 0
}

func newEventLoop(idx int) (*eventLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("event loop: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("event loop: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(evfd)
		return nil, fmt.Errorf("event loop: epoll_ctl: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(evfd)
		return nil, fmt.Errorf("event loop: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "sepgadm-event-loop")
	raw, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		_ = unix.Close(evfd)
		return nil, fmt.Errorf("event loop: %w", err)
	}
	return &eventLoop{bit: 1 << idx, epfd: epfd, evfd: evfd, file: f, raw: raw, events: make([]unix.EpollEvent, 256)}, nil
}

// close stops the loop's goroutine; no client may be in the loop any more.
func (l *eventLoop) close() {
	_ = l.file.Close()
	_ = unix.Close(l.evfd)
}

// post hands m to the loop from any goroutine (or from the loop itself).
func (l *eventLoop) post(m loopMsg) {
	l.mu.Lock()
	l.inbox = append(l.inbox, m)
	wake := l.asleep
	l.asleep = false
	l.mu.Unlock()
	if wake {
		one := uint64(1)
		_, _ = unix.Write(l.evfd, (*[8]byte)(unsafe.Pointer(&one))[:])
	}
}

// run is the loop's goroutine; it returns when close is called.
func (l *eventLoop) run() {
	for {
		l.drainInbox()
		n, err := l.wait()
		if err != nil {
			return
		}
		for i := range n {
			l.event(l.events[i])
		}
	}
}

// wait returns the ready events, parking in Go's netpoller while there are none and
// nothing was posted.
func (l *eventLoop) wait() (int, error) {
	var n int
	var werr error
	err := l.raw.Read(func(uintptr) bool {
		l.mu.Lock()
		if len(l.inbox) > 0 {
			l.asleep = false
			l.mu.Unlock()
			n = 0
			return true
		}
		l.asleep = true
		l.mu.Unlock()
		n, werr = epollWait(l.epfd, l.events)
		if n == 0 && werr == nil {
			return false // park until epfd is readable
		}
		l.mu.Lock()
		l.asleep = false
		l.mu.Unlock()
		return true
	})
	if err == nil {
		err = werr
	}
	return n, err
}

// drainInbox handles what was posted. It is re-entered (handling a message can release
// a connection to a client waiting here, whose request is then sent at once), so a slice
// being worked through is never the inbox or the spare one.
func (l *eventLoop) drainInbox() {
	for {
		l.mu.Lock()
		work := l.inbox
		l.inbox, l.spare = l.spare[:0], nil
		l.mu.Unlock()
		if len(work) > 0 {
			for i := range work {
				l.handle(work[i])
			}
			clear(work)
		}
		if l.spare == nil {
			l.spare = work[:0]
		}
		if len(work) == 0 {
			return
		}
	}
}

func (l *eventLoop) handle(m loopMsg) {
	c := m.c
	lp := c.lp
	switch m.kind {
	case msgAdopt:
		l.adopt(c)
	case msgEvict:
		if lp.slot < 0 {
			return // not here; its goroutine sees the closed connection
		}
		if lp.waiting && !c.pool.cancelWait(&lp.waiter) {
			lp.evict = true // a connection is on its way (msgHanded, in the inbox)
			return
		}
		lp.waiting = false
		l.giveBack(c)
	case msgHanded:
		if lp.slot < 0 || !lp.waiting {
			// Cannot happen: a waiting client leaves the loop only once it is out of
			// the queue. Never lose a connection all the same.
			if m.s != nil {
				c.p.releaseTxn(m.s)
			}
			return
		}
		lp.waiting = false
		switch {
		case m.s != nil && lp.evict:
			lp.pre = m.s
			l.giveBack(c)
		case m.s != nil:
			l.attach(c, m.s) // handed over by release: it was never idle, so not peeked
		case m.expired:
			lp.waiter.deadline = time.Time{}
			lp.preErr = errPoolTimeout
			l.giveBack(c)
		case lp.evict:
			l.giveBack(c)
		default:
			l.checkout(c) // something changed (a connection closed, RESUME): try again
		}
	}
}

// adopt takes a parked client: its socket joins the loop, level-triggered, so a request
// already sent is seen at once.
func (l *eventLoop) adopt(c *client) {
	lp := c.lp
	if len(l.free) == 0 {
		l.slots = append(l.slots, loopSlot{})
		l.free = append(l.free, int32(len(l.slots)-1))
	}
	slot := l.free[len(l.free)-1]
	l.free = l.free[:len(l.free)-1]
	l.slots[slot].c = c
	lp.slot, lp.gen = slot, l.slots[slot].gen
	lp.rio.nonblock = true
	ev := eventFor(slot, lp.gen, false, unix.EPOLLIN|unix.EPOLLRDHUP)
	var cerr error
	err := lp.rio.raw.Control(func(fd uintptr) { cerr = epollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev) })
	if err != nil || cerr != nil || c.killed.Load() {
		l.giveBack(c) // closed meanwhile: its goroutine finds out
	}
}

// giveBack returns a client to its goroutine.
func (l *eventLoop) giveBack(c *client) {
	lp := c.lp
	if lp.slot < 0 {
		return
	}
	_ = lp.rio.raw.Control(func(fd uintptr) { _ = epollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
	slot := lp.slot
	l.slots[slot].c = nil
	l.slots[slot].gen = (l.slots[slot].gen + 1) & genMask
	l.free = append(l.free, slot)
	lp.slot = -1
	lp.rio.nonblock = false
	c.p.metrics.addOut(&lp.out)
	c.p.metrics.nLoopHandbacks.Add(1)
	lp.back <- struct{}{}
}

func (l *eventLoop) event(ev unix.EpollEvent) {
	if ev.Fd < 0 {
		var buf [8]byte
		_, _ = unix.Read(l.evfd, buf[:])
		return
	}
	slot, gen, server := eventKey(ev)
	if int(slot) >= len(l.slots) || l.slots[slot].c == nil || l.slots[slot].gen != gen {
		return // an earlier client's
	}
	c := l.slots[slot].c
	if server {
		l.serverReady(c)
	} else {
		l.clientReady(c)
	}
}

// clientReady: the client's socket is readable (or closed).
func (l *eventLoop) clientReady(c *client) {
	lp, tx := c.lp, &c.txn.tx
	for lp.waiting {
		if c.pool.cancelWait(&lp.waiter) {
			// More from a client waiting with a whole request sent (pipelining), or
			// its end: its goroutine deals with it.
			lp.waiting = false
			lp.waiter.deadline = time.Time{}
			l.giveBack(c)
			return
		}
		// A connection (or a retry) was handed over just now and is in the inbox: take
		// it, then see what the client sent.
		l.drainInbox()
		if lp.slot < 0 {
			return
		}
	}
	if tx.server != nil && tx.pending > 0 {
		l.giveBack(c) // more while the server answers: pipelining, or the client left
		return
	}
	if !l.fill(c.br, lp.rio) {
		if lp.rio.rerr != unix.EAGAIN || c.br.Buffered() == c.br.Size() {
			l.giveBack(c)
		}
		return
	}
	l.request(c)
}

// fill reads once, without waiting, into br. False: nothing read (rio.rerr tells
// EAGAIN from an error or the end).
func (l *eventLoop) fill(br *bufio.Reader, rio *rawIO) bool {
	before := br.Buffered()
	if before == br.Size() {
		return false
	}
	was := rio.nonblock
	rio.nonblock = true
	rio.rerr = 0
	_, err := br.Peek(before + 1)
	rio.nonblock = was
	if br.Buffered() > before {
		return true
	}
	if err != nil && !errors.Is(err, errWouldBlock) && rio.rerr == 0 {
		rio.rerr = unix.EIO // the end of the stream, or another error: not EAGAIN
	}
	return false
}

// request looks at what the client has sent: a whole request the loop may forward goes
// to a server connection; an incomplete one waits for more; anything else goes back.
func (l *eventLoop) request(c *client) {
	buf, _ := c.br.Peek(c.br.Buffered())
	ok, complete := l.scan(c, buf)
	switch {
	case !ok:
		l.giveBack(c)
	case !complete:
		if len(buf) == c.br.Size() {
			l.giveBack(c)
		}
	case c.txn.tx.server != nil:
		l.forward(c, c.txn.tx.server) // the next request of an open transaction
	default:
		l.checkout(c)
	}
}

// scan checks that buf holds frames the loop may forward, ending in exactly one Query
// or Sync (ok, complete), or the start of such a request (ok, !complete).
func (l *eventLoop) scan(c *client, buf []byte) (ok, complete bool) {
	t := c.txn
	max := c.p.state().cfg.MaxMessageSize
	for off := 0; off+5 <= len(buf); {
		typ := buf[off]
		n := int(binary.BigEndian.Uint32(buf[off+1:])) - 4
		if n < 0 || n > max {
			return false, false // its goroutine reports the violation
		}
		end := off + 5 + n
		if end > len(buf) {
			return true, false
		}
		body := buf[off+5 : end]
		switch typ {
		case 'Q':
			if !c.plainQuery(wire.QueryBytes(typ, body)) {
				return false, false
			}
			return end == len(buf), true
		case 'S':
			return end == len(buf), true
		case 'P':
			q := wire.QueryBytes(typ, body)
			if q == nil || (body[0] != 0 && t.tx.server == nil) || !c.plainQuery(q) {
				return false, false // a named Parse while idle is answered by the goroutine
			}
		case 'B', 'D', 'E':
		default:
			return false, false
		}
		off = end
	}
	return true, false
}

// plainQuery reports whether the loop may forward query text q as it is: a text the
// client's goroutine found clean, or one that neither calls the switch function, nor uses
// a feature transaction pooling refuses, nor mentions search_path (those go back to the
// goroutine, which refuses or tracks them). Texts with literals in them (the simple
// protocol) are new every time, so the loop checks them itself.
func (c *client) plainQuery(q []byte) bool {
	t := c.txn
	if q == nil || c.knownClean(t.clean, &t.cleanSt, q) {
		return true
	}
	if len(q) == 0 {
		return true
	}
	sql := unsafe.String(&q[0], len(q)) // read here only, while q is unchanged
	if c.p.forbidden(sql) || sessionOnly(sql) != "" || containsFold(sql, "search_path") {
		return false
	}
	if len(t.clean) < maxCleanQueries && len(q) <= maxCleanQueryLen {
		t.clean[string(q)] = struct{}{}
	}
	return true
}

// checkout takes a server connection for the client's request, or queues the client.
func (l *eventLoop) checkout(c *client) {
	lp := c.lp
	if c.pool == nil {
		l.giveBack(c)
		return
	}
	s, r := c.pool.tryAcquire(c.p.state().cfg.QueryWaitTimeout.Duration, c.context, &lp.waiter)
	switch r {
	case tryGot:
		l.attach(c, s)
	case tryWaiting:
		lp.waiting = true
	default:
		l.giveBack(c) // opening a connection takes a goroutine
	}
}

// attach gives s to the client and forwards its request, when s needs nothing first.
func (l *eventLoop) attach(c *client, s *serverConn) {
	lp, tx := c.lp, &c.txn.tx
	lp.waiter.deadline = time.Time{}
	if !c.ready(s) {
		lp.pre = s
		l.giveBack(c)
		return
	}
	s.setState("active")
	tx.mu.Lock()
	tx.server, tx.pending, tx.dirty, tx.parses, tx.async = s, 0, false, tx.parses[:0], false
	c.setServer(s)
	tx.mu.Unlock()
	l.forward(c, s)
}

// ready reports whether s can run the client's request as it is: under the client's
// label (not to be confirmed first) and with the client's settings.
func (c *client) ready(s *serverConn) bool {
	cfg := c.p.state().cfg
	if cfg.Tagging == "on" {
		if label, _, _ := s.snapshot(); label != c.context || cfg.VerifyLabel == "always" {
			return false
		}
	}
	return s.rio != nil && !c.needsReplay(s)
}

// forward sends the client's buffered request to s, through forwardTxn.
func (l *eventLoop) forward(c *client, s *serverConn) {
	t := c.txn
	tx := &t.tx
	var err error
	c.p.metrics.nLoopRequests.Add(1)
	tx.mu.Lock()
	s.rio.nonblock = true
	for err == nil && c.br.Buffered() > 0 {
		err = c.forwardOne(s, tx)
	}
	if err == nil {
		err = s.w.Flush()
	}
	s.rio.nonblock = false
	tx.mu.Unlock()
	c.p.metrics.addIn(&t.in)
	if err != nil || len(s.rio.overflow) > 0 {
		l.giveBack(c) // its goroutine sends the rest, or finds the failure
		return
	}
	l.serverReady(c)
}

// serverReady relays what s has sent: whole frames, through serverMessage, until the
// request is answered; then s is re-armed for more, or the client waits for its next
// request.
func (l *eventLoop) serverReady(c *client) {
	lp, tx := c.lp, &c.txn.tx
	s := tx.server
	if s == nil || tx.pending <= 0 {
		return // an event from before
	}
	if !l.fill(s.br, s.rio) && s.rio.rerr != unix.EAGAIN && s.br.Buffered() < s.br.Size() {
		l.giveBack(c) // the server closed or failed: its goroutine reports it
		return
	}
	for {
		b := s.br.Buffered()
		if b < 5 {
			break
		}
		hdr, _ := s.br.Peek(5)
		if size := 1 + int(binary.BigEndian.Uint32(hdr[1:])); size > b {
			if size > s.br.Size() {
				l.giveBack(c) // a frame larger than the buffer: its goroutine streams it
				return
			}
			break
		}
		st, err := c.serverMessage(s, tx, &lp.out)
		if err != nil || st == msgCopyIn {
			l.giveBack(c)
			return
		}
		if st != msgMore {
			// Answered; s may be back in the pool (msgReleased) and must not be touched.
			c.p.metrics.addOut(&lp.out)
			if len(lp.rio.overflow) > 0 {
				l.giveBack(c)
			}
			if st == msgReleased {
				// Released s may have gone to a client waiting in this loop: send that
				// client's request now, rather than after the rest of this batch, so that
				// the backend does not sit idle meanwhile.
				l.drainInbox()
			}
			return
		}
	}
	c.wmu.Lock()
	err := c.w.Flush()
	c.wmu.Unlock()
	if err != nil || len(lp.rio.overflow) > 0 {
		l.giveBack(c)
		return
	}
	l.arm(c, s)
}

// arm asks for one event when s has more to read (one-shot: after the answer, s may
// serve other clients, whose reads are none of the loop's business).
func (l *eventLoop) arm(c *client, s *serverConn) {
	ev := eventFor(c.lp.slot, c.lp.gen, true, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLONESHOT)
	var cerr error
	err := s.rio.raw.Control(func(fd uintptr) {
		op := unix.EPOLL_CTL_MOD
		if s.inLoop&l.bit == 0 {
			op = unix.EPOLL_CTL_ADD
		}
		cerr = epollCtl(l.epfd, op, int(fd), &ev)
		if errors.Is(cerr, unix.ENOENT) {
			cerr = epollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		} else if errors.Is(cerr, unix.EEXIST) {
			cerr = epollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		}
	})
	if err != nil || cerr != nil {
		l.giveBack(c)
		return
	}
	s.inLoop |= l.bit
}

// forwardOne reads one whole buffered frame of the client's and forwards it. tx.mu is
// held.
func (c *client) forwardOne(s *serverConn, tx *txState) error {
	typ, n, err := c.r.Header()
	if err != nil {
		return err
	}
	c.txn.in.bytes += int64(n + 5)
	var body []byte
	switch typ {
	case 'Q', 'P', 'B', 'D', 'C':
		if body, err = c.r.Body(n); err != nil {
			return err
		}
	}
	return c.forwardTxn(s, tx, c.txn.stmts, typ, n, body)
}

// parkInLoop hands the client to the event loop until the loop gives it back, then
// sends what the loop could not send and starts a reader if an answer is under way.
func (c *client) parkInLoop() error {
	c.lp.loop.post(loopMsg{kind: msgAdopt, c: c})
	<-c.lp.back
	tx := &c.txn.tx
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if s := tx.server; s != nil && len(s.rio.overflow) > 0 {
		if err := s.rio.FlushOverflow(); err != nil {
			return err
		}
	}
	c.wmu.Lock()
	err := c.lp.rio.FlushOverflow()
	if err == nil {
		err = c.w.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	if s := tx.server; s != nil && tx.pending > 0 && !tx.async {
		c.handOff(s, tx)
	}
	return nil
}

// canPark reports whether the client may park in the loop: nothing of it is buffered
// and no server answer is under way.
func (c *client) canPark() bool {
	if c.lp == nil || c.r.Buffered() > 0 || c.txn.local || c.killed.Load() {
		return false
	}
	tx := &c.txn.tx
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.server == nil || (!tx.async && tx.pending == 0 && !tx.dirty)
}

func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// epollWait returns the ready events without waiting.
func epollWait(epfd int, events []unix.EpollEvent) (int, error) {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		default:
			return 0, e
		}
	}
}
