package refpool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sepgadm/sepgadm/proxy/wire"
)

// Config is what Serve needs.
type Config struct {
	Listen   string // host:port to accept clients on (IPv4)
	Socket   string // PostgreSQL's Unix socket, the path of .s.PGSQL.PORT
	User     string // the role every server connection logs in as (trust)
	Database string
	PoolSize int // server connections in all, split evenly between the loops
	Loops    int // event loops, each on a thread of its own with its own listener
}

const (
	maxFrame  = 1 << 20 // larger client frames close the client
	writeWait = 10 * time.Second
	loginWait = 10 * time.Second // a server's login, which blocks the loop's thread
	readSize  = 64 << 10
)

// Serve runs the pooler until ctx ends; ready, if not nil, is called once every loop
// listens.
func Serve(ctx context.Context, cfg Config, ready func()) error {
	if cfg.Loops < 1 || cfg.PoolSize < cfg.Loops {
		return fmt.Errorf("refpool: %d loops need a pool of at least as many connections, not %d", cfg.Loops, cfg.PoolSize)
	}
	addr, err := net.ResolveTCPAddr("tcp4", cfg.Listen)
	if err != nil {
		return fmt.Errorf("refpool: listen address %q: %w", cfg.Listen, err)
	}
	var sa unix.SockaddrInet4
	sa.Port = addr.Port
	copy(sa.Addr[:], addr.IP.To4())

	loops := make([]*loop, 0, cfg.Loops)
	defer func() {
		for _, l := range loops {
			l.close()
		}
	}()
	for i := range cfg.Loops {
		size := cfg.PoolSize / cfg.Loops
		if i < cfg.PoolSize%cfg.Loops {
			size++
		}
		l, err := newLoop(cfg, size)
		if l != nil {
			loops = append(loops, l)
		}
		if err != nil {
			return err
		}
	}
	// Listen only once every pool is open, so that a client that can connect is served.
	for _, l := range loops {
		if err := l.listen(&sa); err != nil {
			return err
		}
	}
	if ready != nil {
		ready()
	}
	errs := make([]error, len(loops))
	var wg sync.WaitGroup
	for i, l := range loops {
		wg.Go(func() {
			if errs[i] = l.run(); errs[i] != nil {
				for _, o := range loops {
					o.stop()
				}
			}
		})
	}
	// The watcher stops the loops when ctx ends; it is done before the loops' descriptors
	// are closed, so it never writes to a descriptor number that was reused.
	stopped, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			for _, l := range loops {
				l.stop()
			}
		case <-stopped:
		}
	}()
	wg.Wait()
	close(stopped)
	<-watched
	return errors.Join(errs...)
}

// conn is a client or a server connection of one loop.
type conn struct {
	fd     int
	server bool
	peer   *conn // the other side while a server connection serves a client
	closed bool

	// Client side: bytes read and not yet forwarded (whole frames are forwarded, the
	// tail of a frame waits here), whether the startup packet was answered, and whether
	// the client waits for a server connection.
	in      []byte
	started bool
	waiting bool

	// Server side: frame boundaries of what the server sends, and the Syncs and
	// Queries forwarded and not yet answered.
	frames  frames
	pending int
	open    bool // frames were forwarded after the last Sync, Query or FunctionCall
}

type loop struct {
	cfg    Config
	epfd   int
	evfd   int // stop
	lfd    int // listener
	conns  map[int]*conn
	idle   []*conn
	queue  []*conn // clients waiting for a server connection, oldest first
	scrap  []byte
	events []unix.EpollEvent
	hello  []byte
	fds    []int // every descriptor the loop owns, closed by close
}

// newLoop makes a loop with its pool of size server connections, not yet listening.
func newLoop(cfg Config, size int) (*loop, error) {
	l := &loop{cfg: cfg, conns: map[int]*conn{}, scrap: make([]byte, readSize), events: make([]unix.EpollEvent, 256), hello: hello()}
	var err error
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("refpool: epoll_create1: %w", err)
	}
	l.fds = append(l.fds, l.epfd)
	if l.evfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return l, fmt.Errorf("refpool: eventfd: %w", err)
	}
	l.fds = append(l.fds, l.evfd)
	if err := l.watch(l.evfd, unix.EPOLLIN); err != nil {
		return l, err
	}
	for range size {
		s, err := l.dial()
		if err != nil {
			return l, err
		}
		l.idle = append(l.idle, s)
	}
	return l, nil
}

// listen opens the loop's own listener on sa (SO_REUSEPORT: the kernel spreads new
// clients over the loops).
func (l *loop) listen(sa *unix.SockaddrInet4) error {
	var err error
	if l.lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err != nil {
		return fmt.Errorf("refpool: socket: %w", err)
	}
	l.fds = append(l.fds, l.lfd)
	for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
		if err := unix.SetsockoptInt(l.lfd, unix.SOL_SOCKET, opt, 1); err != nil {
			return fmt.Errorf("refpool: setsockopt: %w", err)
		}
	}
	if err := unix.Bind(l.lfd, sa); err != nil {
		return fmt.Errorf("refpool: bind %s: %w", l.cfg.Listen, err)
	}
	if err := unix.Listen(l.lfd, 4096); err != nil {
		return fmt.Errorf("refpool: listen %s: %w", l.cfg.Listen, err)
	}
	return l.watch(l.lfd, unix.EPOLLIN)
}

func (l *loop) watch(fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("refpool: epoll_ctl: %w", err)
	}
	return nil
}

// add makes c one of the loop's connections, edge-triggered.
func (l *loop) add(c *conn) error {
	if err := l.watch(c.fd, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLET); err != nil {
		_ = unix.Close(c.fd)
		return err
	}
	l.conns[c.fd] = c
	return nil
}

// dial opens and logs in one server connection (blocking; at start and to replace one).
func (l *loop) dial() (*conn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("refpool: socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: l.cfg.Socket}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("refpool: connect %s: %w", l.cfg.Socket, err)
	}
	tv := unix.NsecToTimeval(loginWait.Nanoseconds())
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			_ = unix.Close(fd)
			return nil, fmt.Errorf("refpool: setsockopt: %w", err)
		}
	}
	if err := login(fd, l.cfg.User, l.cfg.Database); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("refpool: %w", err)
	}
	s := &conn{fd: fd, server: true}
	return s, l.add(s)
}

// login sends the startup packet on blocking fd and reads up to ReadyForQuery.
func login(fd int, user, database string) error {
	msg := make([]byte, 8, 64)
	binary.BigEndian.PutUint32(msg[4:], wire.ProtocolV3)
	for _, s := range []string{"user", user, "database", database, ""} {
		msg = append(append(msg, s...), 0)
	}
	binary.BigEndian.PutUint32(msg, uint32(len(msg)))
	if _, err := unix.Write(fd, msg); err != nil {
		return fmt.Errorf("refpool: startup: %w", err)
	}
	var got []byte
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil || n == 0 {
			return fmt.Errorf("refpool: the server closed or did not finish the login within %s (%v)", loginWait, err)
		}
		got = append(got, buf[:n]...)
		for off := 0; off+5 <= len(got); {
			typ, end := got[off], off+1+int(binary.BigEndian.Uint32(got[off+1:]))
			if end > len(got) {
				break
			}
			switch {
			case typ == 'R' && end >= off+9 && binary.BigEndian.Uint32(got[off+5:]) != 0:
				return fmt.Errorf("refpool: the server asked for authentication (request %d); the reference pooler logs in by trust only", binary.BigEndian.Uint32(got[off+5:]))
			case typ == 'E':
				return fmt.Errorf("refpool: the server refused the login: %q", got[off+5:end])
			case typ == 'Z' && end == len(got):
				return nil
			}
			off = end
		}
	}
}

// hello is the proxy's answer to a startup packet: AuthenticationOk, the parameters
// libpq wants, BackendKeyData, ReadyForQuery.
func hello() []byte {
	b := wire.AppendMessage(nil, 'R', []byte{0, 0, 0, 0})
	for _, kv := range [][2]string{{"server_version", "15"}, {"server_encoding", "UTF8"}, {"client_encoding", "UTF8"},
		{"standard_conforming_strings", "on"}, {"integer_datetimes", "on"}, {"DateStyle", "ISO, MDY"}} {
		b = wire.AppendMessage(b, 'S', []byte(kv[0]+"\x00"+kv[1]+"\x00"))
	}
	b = wire.AppendMessage(b, 'K', []byte{0, 0, 0, 1, 0, 0, 0, 1})
	return wire.AppendMessage(b, 'Z', []byte{'I'})
}

func (l *loop) stop() {
	one := uint64(1)
	_, _ = unix.Write(l.evfd, (*[8]byte)(unsafe.Pointer(&one))[:])
}

func (l *loop) close() {
	for fd := range l.conns {
		_ = unix.Close(fd)
	}
	clear(l.conns)
	for _, fd := range l.fds {
		_ = unix.Close(fd)
	}
	l.fds = nil
}

// run is the loop; it returns when stop is called, or on an error of the loop itself.
func (l *loop) run() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		n, err := unix.EpollWait(l.epfd, l.events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("refpool: epoll_wait: %w", err)
		}
		for _, ev := range l.events[:n] {
			fd := int(ev.Fd)
			switch {
			case fd == l.evfd:
				return nil
			case fd == l.lfd:
				if err := l.accept(); err != nil {
					return err
				}
			default:
				c := l.conns[fd]
				switch {
				case c == nil || c.closed:
				case c.server:
					if err := l.serverReadable(c); err != nil {
						return err
					}
				default:
					if err := l.clientReadable(c); err != nil {
						return err
					}
				}
			}
		}
	}
}

// accept takes every pending client. The error is the loop's own, as clientReadable's.
func (l *loop) accept() error {
	for {
		fd, _, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ECONNABORTED) || errors.Is(err, unix.EINTR):
			return nil
		case err != nil:
			// Out of descriptors, or worse: the level-triggered listener would only
			// spin, so the reference stops and says why.
			return fmt.Errorf("refpool: accept: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		if l.add(&conn{fd: fd, in: make([]byte, 0, 1024)}) != nil {
			continue
		}
		// Edge-triggered: the startup packet may be there already.
		if err := l.clientReadable(l.conns[fd]); err != nil {
			return err
		}
	}
}

func rawRead(fd int, b []byte) (int, unix.Errno) {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e != unix.EINTR {
			return int(n), e
		}
	}
}

// writeAll writes b to non-blocking fd, waiting (poll) while its socket is full.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			b = b[n:]
		case unix.EINTR:
		case unix.EAGAIN:
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			if n, err := unix.Poll(pfd, int(writeWait/time.Millisecond)); err != nil && !errors.Is(err, unix.EINTR) {
				return err
			} else if n == 0 {
				return unix.ETIMEDOUT
			}
		default:
			return e
		}
	}
	return nil
}

// clientReadable reads what c sent and forwards its whole frames. The error is the
// loop's own (no server connection could be reopened).
func (l *loop) clientReadable(c *conn) error {
	for !c.waiting && !c.closed {
		if cap(c.in)-len(c.in) < 512 {
			if cap(c.in) >= maxFrame {
				return l.dropClient(c)
			}
			c.in = append(make([]byte, 0, 2*cap(c.in)), c.in...)
		}
		n, e := rawRead(c.fd, c.in[len(c.in):cap(c.in)])
		if e == unix.EAGAIN {
			return nil
		}
		if e != 0 || n == 0 {
			return l.dropClient(c)
		}
		c.in = c.in[:len(c.in)+n]
		if err := l.clientBytes(c); err != nil {
			return err
		}
	}
	return nil
}

// clientBytes acts on c.in: the startup packet, or whole frames to forward.
func (l *loop) clientBytes(c *conn) error {
	for !c.started {
		if len(c.in) < 8 {
			return nil
		}
		size := int(binary.BigEndian.Uint32(c.in))
		if size < 8 || size > wire.MaxStartupLen {
			return l.dropClient(c)
		}
		if len(c.in) < size {
			return nil
		}
		code := binary.BigEndian.Uint32(c.in[4:])
		c.in = c.in[:copy(c.in, c.in[size:])]
		switch code {
		case wire.SSLRequestCode, wire.GSSENCRequest:
			if writeAll(c.fd, []byte{'N'}) != nil {
				return l.dropClient(c)
			}
		case wire.ProtocolV3:
			c.started = true
			if writeAll(c.fd, l.hello) != nil {
				return l.dropClient(c)
			}
		default: // CancelRequest, or garbage
			return l.dropClient(c)
		}
	}
	// Whole frames: up to a Terminate, which ends the client.
	whole, syncs, quit, open := 0, 0, false, false
	for whole+5 <= len(c.in) {
		typ, size := c.in[whole], int(binary.BigEndian.Uint32(c.in[whole+1:]))
		if size < 4 || size > maxFrame {
			return l.dropClient(c)
		}
		if typ == 'X' {
			quit = true
			break
		}
		if whole+1+size > len(c.in) {
			break
		}
		// Each Sync, Query and FunctionCall gets one ReadyForQuery; anything after the
		// last of them waits for a Sync of its own.
		open = !(typ == 'S' || typ == 'Q' || typ == 'F')
		if !open {
			syncs++
		}
		whole += 1 + size
	}
	if whole > 0 {
		if c.peer == nil {
			if len(l.idle) == 0 {
				c.waiting = true
				l.queue = append(l.queue, c)
				return nil
			}
			s := l.idle[len(l.idle)-1]
			l.idle = l.idle[:len(l.idle)-1]
			s.peer, c.peer = c, s
		}
		s := c.peer
		s.pending += syncs
		s.open = open
		if err := writeAll(s.fd, c.in[:whole]); err != nil {
			return l.dropServer(s)
		}
		c.in = c.in[:copy(c.in, c.in[whole:])]
	}
	if quit {
		return l.dropClient(c)
	}
	return nil
}

// serverReadable relays what s sent to its client and releases s when it is idle.
func (l *loop) serverReadable(s *conn) error {
	for !s.closed {
		n, e := rawRead(s.fd, l.scrap)
		if e == unix.EAGAIN {
			return nil
		}
		if e != 0 || n == 0 {
			return l.dropServer(s)
		}
		idle, answered := s.frames.feed(l.scrap[:n])
		s.pending -= answered
		c := s.peer
		if c != nil && writeAll(c.fd, l.scrap[:n]) != nil {
			if err := l.dropClient(c); err != nil {
				return err
			}
			continue
		}
		if idle && s.pending <= 0 && !s.open && c != nil {
			s.pending = 0
			s.peer, c.peer = nil, nil
			if err := l.release(s); err != nil {
				return err
			}
			// The client may have sent its next request already.
			if err := l.clientBytes(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// release gives s to the longest waiting client, or back to the idle list. The error
// is the loop's own, as clientReadable's.
func (l *loop) release(s *conn) error {
	for len(l.queue) > 0 {
		c := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		if c.closed {
			continue
		}
		c.waiting = false
		s.peer, c.peer = c, s
		if err := l.clientBytes(c); err != nil {
			return err
		}
		return l.clientReadable(c)
	}
	l.idle = append(l.idle, s)
	return nil
}

// forget closes c and drops it from the loop; false when that was done already.
func (l *loop) forget(c *conn) bool {
	if c.closed {
		return false
	}
	c.closed = true
	delete(l.conns, c.fd)
	_ = unix.Close(c.fd)
	return true
}

// dropClient closes c; a server connection it was using is closed and reopened.
func (l *loop) dropClient(c *conn) error {
	if !l.forget(c) {
		return nil
	}
	if s := c.peer; s != nil {
		// Attached means a request in flight or a transaction open: never reuse.
		return l.dropServer(s)
	}
	return nil
}

// dropServer closes s and its client, and opens a replacement.
func (l *loop) dropServer(s *conn) error {
	if !l.forget(s) {
		return nil
	}
	// An idle connection that died (its backend was terminated) leaves the idle list
	// before its descriptor number can come back with the replacement.
	l.idle = slices.DeleteFunc(l.idle, func(i *conn) bool { return i == s })
	if c := s.peer; c != nil {
		s.peer, c.peer = nil, nil
		_ = l.dropClient(c)
	}
	n, err := l.dial()
	if err != nil {
		return err
	}
	return l.release(n)
}

// frames follows message boundaries through a byte stream read in pieces.
type frames struct {
	hdr    [5]byte
	hdrN   int  // header bytes seen of the current frame
	left   int  // body bytes still to come
	zBody  bool // the current body is ReadyForQuery's
	idle   bool // the last whole frame was ReadyForQuery 'I'
	status byte
}

// feed takes the next piece of the stream. It reports whether the stream now ends on a
// frame boundary right after ReadyForQuery 'I', and how many ReadyForQuery frames the
// piece completed.
func (f *frames) feed(b []byte) (idle bool, readies int) {
	for len(b) > 0 {
		if f.left > 0 {
			k := min(f.left, len(b))
			if f.zBody {
				f.status = b[0]
			}
			f.left -= k
			b = b[k:]
			if f.left == 0 {
				f.frameDone(&readies)
			}
			continue
		}
		k := copy(f.hdr[f.hdrN:], b)
		f.hdrN += k
		b = b[k:]
		if f.hdrN < 5 {
			break
		}
		f.hdrN = 0
		f.left = int(binary.BigEndian.Uint32(f.hdr[1:])) - 4
		f.zBody = f.hdr[0] == 'Z' && f.left == 1
		f.status = 0
		if f.left <= 0 {
			f.left = 0
			f.frameDone(&readies)
		}
	}
	return f.idle && f.left == 0 && f.hdrN == 0, readies
}

func (f *frames) frameDone(readies *int) {
	f.idle = f.zBody && f.status == 'I'
	if f.hdr[0] == 'Z' {
		*readies++
	}
	f.zBody = false
}
