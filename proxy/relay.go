package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/sepgadm/sepgadm/proxy/wire"
)

// relay forwards frames between c and s until the client leaves or a side fails. Frames
// are forwarded by header: only Query and Parse bodies are read whole (to refuse calls
// of the switch function) and ReadyForQuery's status byte is tracked. It reports
// whether s ended idle and in sync, so that it can be reset and reused.
func (c *client) relay(s *serverConn) (clean bool) {
	p := c.p
	var (
		pending  atomic.Int64 // Query/Sync sent minus ReadyForQuery received
		status   atomic.Int32 // last ReadyForQuery status
		midFrame atomic.Bool  // server→client stopped inside a frame
	)
	status.Store('I')
	s2cDone := make(chan error, 1)
	go func() {
		var err error
		defer func() { s2cDone <- err }()
		for {
			var typ byte
			var n int
			typ, n, err = s.r.Header()
			if err != nil {
				return
			}
			midFrame.Store(true)
			c.wmu.Lock()
			if typ == 'Z' {
				var body []byte
				if body, err = s.r.Body(n); err == nil && len(body) == 1 {
					status.Store(int32(body[0]))
					pending.Add(-1)
					p.metrics.nQueries.Add(1)
					_, err = c.w.Write([]byte{'Z', 0, 0, 0, 5, body[0]})
				}
			} else {
				err = s.r.CopyBody(c.w, typ, n)
			}
			if err == nil && s.r.Buffered() == 0 {
				err = c.w.Flush()
			}
			c.wmu.Unlock()
			p.metrics.nBytesOut.Add(int64(n + 5))
			if err != nil {
				return
			}
			midFrame.Store(false)
		}
	}()

	c2sErr := func() error {
		for {
			typ, n, err := c.r.Header()
			if err != nil {
				return err
			}
			p.metrics.nBytesIn.Add(int64(n + 5))
			switch typ {
			case 'X':
				return errTerminate
			case 'Q', 'P':
				body, err := c.r.Body(n)
				if err != nil {
					return err
				}
				if p.forbidden(wire.QueryText(typ, body)) {
					p.metrics.refusedCalls.Inc()
					p.log.Warn("client statement calls the switch function; session closed", "session", c.id, "client", c.addr, "user", c.user)
					return errForbidden
				}
				if typ == 'Q' {
					pending.Add(1)
				}
				if err := frameHeader(s.w, typ, n); err != nil {
					return err
				}
				if _, err := s.w.Write(body); err != nil {
					return err
				}
			case 'S':
				pending.Add(1)
				fallthrough
			default:
				if err := c.r.CopyBody(s.w, typ, n); err != nil {
					return err
				}
			}
			if c.r.Buffered() == 0 {
				if err := s.w.Flush(); err != nil {
					return err
				}
			}
		}
	}()

	select {
	case err := <-s2cDone:
		// The server side failed first: the client cannot go on.
		c.fatal("08006", "sepgadm: server connection lost")
		p.log.Info("server connection ended", "session", c.id, "backend_pid", s.pid, "error", err)
		return false
	default:
	}
	if errors.Is(c2sErr, errForbidden) {
		c.fatal("42501", "sepgadm: statements that call the switch function are refused")
	}
	// Stop the server reader; the connection is reusable only if it stopped between
	// frames, with nothing in flight and outside a transaction.
	_ = s.conn.SetReadDeadline(time.Now())
	err := <-s2cDone
	_ = s.conn.SetReadDeadline(time.Time{})
	timedOut := errors.Is(err, os.ErrDeadlineExceeded)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		timedOut = true
	}
	return errors.Is(c2sErr, errTerminate) && timedOut && !midFrame.Load() &&
		pending.Load() == 0 && status.Load() == 'I' && !c.killed.Load()
}

var (
	errTerminate = errors.New("client sent Terminate")
	errForbidden = errors.New("client statement calls the switch function")
)

// frameHeader writes the 5-byte header of a frame of type typ with an n-byte body.
func frameHeader(w *bufio.Writer, typ byte, n int) error {
	if w.Available() < 5 {
		l := uint32(n + 4)
		_, err := w.Write([]byte{typ, byte(l >> 24), byte(l >> 16), byte(l >> 8), byte(l)})
		return err
	}
	// In place in the buffer: one bounds check instead of five WriteByte calls.
	b := w.AvailableBuffer()[:5]
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(n+4))
	_, err := w.Write(b)
	return err
}
