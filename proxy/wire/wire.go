package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Protocol codes of the startup packet.
const (
	ProtocolV3        = 196608   // 3.0
	SSLRequestCode    = 80877103 // 1234.5679
	GSSENCRequest     = 80877104 // 1234.5680
	CancelRequestCode = 80877102 // 1234.5678
	// MaxStartupLen is PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
	MaxStartupLen = 10000
)

// Startup is what a client sent first.
type Startup struct {
	// Code is ProtocolV3 (Params set), SSLRequestCode, GSSENCRequest or CancelRequestCode.
	Code uint32
	// Params are the StartupMessage parameters (user, database, options, ...).
	Params map[string]string
	// CancelPID and CancelKey are a CancelRequest's target.
	CancelPID uint32
	CancelKey []byte
}

// ErrProtocol marks input that breaks the protocol.
var ErrProtocol = errors.New("protocol violation")

// ReadStartup reads one startup packet.
func ReadStartup(r io.Reader) (Startup, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return Startup{}, fmt.Errorf("read startup packet: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 8 || n > MaxStartupLen {
		return Startup{}, fmt.Errorf("%w: startup packet length %d", ErrProtocol, n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return Startup{}, fmt.Errorf("read startup packet: %w", err)
	}
	s := Startup{Code: binary.BigEndian.Uint32(body[:4])}
	rest := body[4:]
	switch s.Code {
	case SSLRequestCode, GSSENCRequest:
		if len(rest) != 0 {
			return Startup{}, fmt.Errorf("%w: request code %d with a body", ErrProtocol, s.Code)
		}
	case CancelRequestCode:
		if len(rest) < 8 || len(rest) > 4+256 {
			return Startup{}, fmt.Errorf("%w: cancel request of %d bytes", ErrProtocol, len(rest))
		}
		s.CancelPID = binary.BigEndian.Uint32(rest[:4])
		s.CancelKey = append([]byte(nil), rest[4:]...)
	default:
		if s.Code>>16 != 3 {
			return Startup{}, fmt.Errorf("%w: unsupported protocol version %d.%d", ErrProtocol, s.Code>>16, s.Code&0xffff)
		}
		params, err := parseParams(rest)
		if err != nil {
			return Startup{}, err
		}
		s.Params = params
	}
	return s, nil
}

func parseParams(b []byte) (map[string]string, error) {
	params := map[string]string{}
	for {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return nil, fmt.Errorf("%w: startup parameters not terminated", ErrProtocol)
		}
		if i == 0 {
			if len(b) != 1 {
				return nil, fmt.Errorf("%w: data after the startup parameters", ErrProtocol)
			}
			break
		}
		key := string(b[:i])
		b = b[i+1:]
		j := bytes.IndexByte(b, 0)
		if j < 0 {
			return nil, fmt.Errorf("%w: startup parameter %q has no value", ErrProtocol, key)
		}
		params[key] = string(b[:j])
		b = b[j+1:]
	}
	if params["user"] == "" {
		return nil, fmt.Errorf("%w: no user in the startup message", ErrProtocol)
	}
	return params, nil
}

// Reader reads message frames.
type Reader struct {
	r   *bufio.Reader
	max int
	buf []byte
	hdr [5]byte
	out [5]byte // CopyBody's header, here so that it is not allocated per frame
}

// NewReader reads frames from r, refusing any message body over max bytes.
func NewReader(r *bufio.Reader, max int) *Reader { return &Reader{r: r, max: max} }

// Buffered is how many bytes are read but not yet returned.
func (r *Reader) Buffered() int { return r.r.Buffered() }

// SetMax changes the largest message body the reader accepts.
func (r *Reader) SetMax(max int) { r.max = max }

// HasMessage reports whether a whole frame is already buffered, so that reading it will
// not wait for its sender.
func (r *Reader) HasMessage() bool {
	b, err := r.r.Peek(min(5, r.r.Buffered()))
	if err != nil || len(b) < 5 {
		return false
	}
	return r.r.Buffered() >= 1+int(binary.BigEndian.Uint32(b[1:]))
}

// Header reads the next frame's type and body length.
func (r *Reader) Header() (typ byte, n int, err error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return 0, 0, err
	}
	l := int(binary.BigEndian.Uint32(r.hdr[1:]))
	if l < 4 {
		return 0, 0, fmt.Errorf("%w: message %q with length %d", ErrProtocol, r.hdr[0], l)
	}
	if l-4 > r.max {
		return 0, 0, fmt.Errorf("%w: message %q of %d bytes exceeds the limit of %d", ErrProtocol, r.hdr[0], l-4, r.max)
	}
	return r.hdr[0], l - 4, nil
}

// Body reads a body of n bytes (from Header); valid until the next read. Memory grows
// with the bytes that actually arrive, not with the length the header claims.
func (r *Reader) Body(n int) ([]byte, error) {
	const chunk = 64 << 10
	if cap(r.buf) < min(n, chunk) {
		r.buf = make([]byte, min(n, chunk))
	}
	b := r.buf[:0]
	for len(b) < n {
		if len(b) == cap(b) {
			b = append(b, make([]byte, min(n-len(b), max(len(b), chunk)))...)[:len(b)]
		}
		m, err := io.ReadFull(r.r, b[len(b):min(n, cap(b))])
		b = b[:len(b)+m]
		if err != nil {
			return nil, err
		}
	}
	r.buf = b
	// Do not keep a huge buffer alive for the rest of the session.
	if cap(r.buf) > 1<<20 {
		r.buf = nil
	}
	return b, nil
}

// Message reads a whole frame.
func (r *Reader) Message() (typ byte, body []byte, err error) {
	typ, n, err := r.Header()
	if err != nil {
		return 0, nil, err
	}
	body, err = r.Body(n)
	return typ, body, err
}

// Skip discards the n-byte body of the frame just read by Header.
func (r *Reader) Skip(n int) error {
	_, err := r.r.Discard(n)
	return err
}

// CopyBody forwards the n-byte body of the frame just read by Header to w, after
// writing its header, without buffering it whole.
func (r *Reader) CopyBody(w io.Writer, typ byte, n int) error {
	r.out[0] = typ
	binary.BigEndian.PutUint32(r.out[1:], uint32(n+4))
	if _, err := w.Write(r.out[:]); err != nil {
		return err
	}
	if n <= r.r.Size() {
		// The common, small frame: straight from the read buffer, nothing allocated.
		b, err := r.r.Peek(n)
		if err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		_, err = r.r.Discard(n)
		return err
	}
	_, err := io.CopyN(w, r.r, int64(n))
	return err
}

// AppendMessage appends a frame of type typ with body to dst.
func AppendMessage(dst []byte, typ byte, body []byte) []byte {
	dst = append(dst, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(body)+4))
	return append(dst, body...)
}

// QueryText returns the SQL of a Query ('Q') body or of a Parse ('P') body, or "".
func QueryText(typ byte, body []byte) string { return string(QueryBytes(typ, body)) }

// QueryBytes is QueryText without the copy: it aliases body.
func QueryBytes(typ byte, body []byte) []byte {
	switch typ {
	case 'Q':
		if i := bytes.IndexByte(body, 0); i >= 0 {
			return body[:i]
		}
	case 'P':
		// Parse: statement name, query string, ...
		if i := bytes.IndexByte(body, 0); i >= 0 {
			rest := body[i+1:]
			if j := bytes.IndexByte(rest, 0); j >= 0 {
				return rest[:j]
			}
		}
	}
	return nil
}
