package proxy

import (
	"io"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawIO reads and writes a socket with raw system calls, inside the descriptor's own
// RawConn callbacks (which hold its lock, so a concurrent Close cannot hand the
// descriptor number to another connection mid-call).
//
// Why: the relay makes a few short non-blocking read/write calls per round trip. Through
// net.Conn each is a runtime "syscall" that releases the P; when the kernel preempts the
// writer to run the woken peer, Go's sysmon hands the P to another thread and the writer
// must find a P again on return: thread wake-ups and context switches that pprof and
// perf showed as a large part of the relay's CPU. A raw call keeps its P; it never
// blocks (the socket is non-blocking: EAGAIN waits in the netpoller as usual).
type rawIO struct {
	raw syscall.RawConn
	// What the callbacks (bound once, so a call allocates nothing) work on: reads and
	// writes each come from one goroutine at a time.
	rbuf, wbuf []byte
	rn, wn     int
	rerr, werr syscall.Errno
	readFn     func(uintptr) bool
	writeFn    func(uintptr) bool
}

// newRawIO wraps conn when it is a plain TCP or Unix socket; otherwise (TLS) it returns
// conn itself.
func newRawIO(conn net.Conn) io.ReadWriter {
	if r := newRaw(conn); r != nil {
		return r
	}
	return conn
}

// newRaw is newRawIO's rawIO, or nil when conn has no descriptor of its own (TLS).
func newRaw(conn net.Conn) *rawIO {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawIO{raw: raw}
	r.readFn, r.writeFn = r.readCall, r.writeCall
	return r
}

// readCall and writeCall retry EINTR at once: returning false would wait for the next
// readiness edge, and one already consumed (data waiting, room to write) never comes
// again.
func (r *rawIO) readCall(fd uintptr) bool {
	n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&r.rbuf[0])), uintptr(len(r.rbuf)))
	for e == unix.EINTR {
		n, _, e = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&r.rbuf[0])), uintptr(len(r.rbuf)))
	}
	if e == unix.EAGAIN {
		return false
	}
	r.rn, r.rerr = int(n), e
	return true
}

func (r *rawIO) writeCall(fd uintptr) bool {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&r.wbuf[0])), uintptr(len(r.wbuf)))
	for e == unix.EINTR {
		n, _, e = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&r.wbuf[0])), uintptr(len(r.wbuf)))
	}
	if e == unix.EAGAIN {
		return false
	}
	if e != 0 {
		r.werr = e
		return true
	}
	r.wn += int(n)
	r.wbuf = r.wbuf[n:]
	return len(r.wbuf) == 0
}

func (r *rawIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rbuf, r.rn, r.rerr = p, 0, 0
	err := r.raw.Read(r.readFn)
	r.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case r.rerr != 0:
		return 0, r.rerr
	case r.rn == 0:
		return 0, io.EOF
	}
	return r.rn, nil
}

func (r *rawIO) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.wbuf, r.wn, r.werr = p, 0, 0
	err := r.raw.Write(r.writeFn)
	r.wbuf = nil
	switch {
	case err != nil:
		return r.wn, err
	case r.werr != 0:
		return r.wn, r.werr
	}
	return r.wn, nil
}
