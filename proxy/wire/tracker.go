package wire

import (
	"errors"
	"fmt"
)

// ErrUnexpected marks a message the Tracker did not expect at that point of the
// conversation: whoever sees it must destroy the server connection.
var ErrUnexpected = errors.New("unexpected message")

// Tracker follows one server connection's conversation, message by message, and says
// exactly when every request sent has been answered. It is fed each frontend message
// before it is sent (Frontend) and each backend message as it arrives (Backend); it does
// no I/O. Any message that does not fit the protocol at that point is an error, and
// the tracker stays broken: the connection must never be reused.
//
// What it models (PostgreSQL protocol 3.0):
//   - Query and FunctionCall are answered up to ReadyForQuery; Parse, Bind, Describe,
//     Execute and Close each by their own answer; Sync by ReadyForQuery; Flush by
//     nothing.
//   - An ErrorResponse to an extended-protocol message makes the server skip every
//     message up to the next Sync.
//   - COPY FROM STDIN (the client sends CopyData until CopyDone or CopyFail) and COPY TO
//     STDOUT (the server sends CopyData until CopyDone), from a Query or an Execute.
//   - NoticeResponse, ParameterStatus and NotificationResponse may come at any time.
//
// What it refuses, although the server might cope: a Query or FunctionCall inside an
// unfinished extended-protocol batch, any message but CopyData, CopyDone and CopyFail
// during COPY FROM STDIN, and CopyBoth (replication). CopyData, CopyDone and CopyFail
// outside COPY are let through unanswered: the server drops them (the tail of a COPY
// that failed before the client noticed).
type Tracker struct {
	queue    []expect
	unsynced bool // extended-protocol messages sent since the last Sync
	skipping bool // the server discards messages until the next Sync
	copyIn   bool // the client's COPY data is due
	copyOut  bool // the server's COPY data is flowing
	status   byte // the last ReadyForQuery's transaction status
	err      error
}

// copyEnd marks, among the requests, where a client ended COPY data it sent before the
// server's CopyInResponse; it expects no answer of its own.
const copyEnd = 'c'

// expect is one request awaiting its answer.
type expect struct {
	kind byte // the frontend message type
	// stage: for Describe, 1 after ParameterDescription; for Query and Execute, 1 once
	// the client's COPY data has ended (its CommandComplete or ErrorResponse is due).
	stage byte
	// Drop marks a request the proxy itself injected: its answer is not the client's.
	drop bool
}

// NewTracker is a tracker for a connection idle outside a transaction.
func NewTracker() *Tracker { return &Tracker{status: 'I'} }

// Reset makes t a fresh tracker for a connection idle outside a transaction.
func (t *Tracker) Reset() { *t = Tracker{queue: t.queue[:0], status: 'I'} }

// Err is the error that broke the tracker, or nil.
func (t *Tracker) Err() error { return t.err }

// Status is the transaction status of the last ReadyForQuery ('I', 'T' or 'E').
func (t *Tracker) Status() byte { return t.status }

// Idle reports whether everything sent has been answered and the session is outside a
// transaction block and any extended-protocol batch: the only point at which the
// connection may pass to another client.
func (t *Tracker) Idle() bool {
	return t.err == nil && len(t.queue) == 0 && !t.unsynced && !t.skipping && !t.copyIn && !t.copyOut && t.status == 'I'
}

// Outstanding is how many requests await their answers.
func (t *Tracker) Outstanding() int { return len(t.queue) }

// InCopyIn reports whether the client's COPY data is due.
func (t *Tracker) InCopyIn() bool { return t.copyIn }

func (t *Tracker) fail(format string, args ...any) error {
	if t.err == nil {
		t.err = fmt.Errorf("%w: "+format, append([]any{ErrUnexpected}, args...)...)
	}
	return t.err
}

// Frontend records a client message about to be sent. An error means the message must
// not be sent.
func (t *Tracker) Frontend(typ byte) error { return t.frontend(typ, false) }

// Inject records a message the proxy itself adds to the client's stream (a Parse that
// re-prepares a statement); its answer is to be dropped, not forwarded.
func (t *Tracker) Inject(typ byte) error { return t.frontend(typ, true) }

func (t *Tracker) frontend(typ byte, drop bool) error {
	if t.err != nil {
		return t.err
	}
	if t.copyIn {
		switch typ {
		case 'd', 'H', 'S':
			// The server ignores Flush and Sync during COPY FROM STDIN (libpq sends a
			// Sync right behind an extended-protocol COPY).
			return nil
		case 'c', 'f':
			t.copyIn = false
			t.queue[0].stage = 1
			return nil
		}
		return t.fail("client message %q during COPY FROM STDIN", typ)
	}
	switch typ {
	case 'Q', 'F':
		if t.unsynced || t.skipping {
			return t.fail("client %q inside an unfinished extended-protocol batch", typ)
		}
		t.queue = append(t.queue, expect{kind: typ, drop: drop})
	case 'P', 'B', 'D', 'E', 'C':
		t.unsynced = true
		if !t.skipping {
			t.queue = append(t.queue, expect{kind: typ, drop: drop})
		}
	case 'H':
		// Flush asks for nothing of its own.
	case 'S':
		t.unsynced, t.skipping = false, false
		t.queue = append(t.queue, expect{kind: 'S', drop: drop})
	case 'd':
		// Outside COPY FROM STDIN: data sent before the CopyInResponse (pgx streams it
		// right behind the statement), or the rest of a COPY that failed before the
		// client noticed (the server drops it unanswered).
	case 'c', 'f':
		// Likewise; its place among the requests is kept (a copyEnd marker), for the
		// CopyInResponse that may still come to find the data already ended.
		if len(t.queue) > 0 {
			t.queue = append(t.queue, expect{kind: copyEnd})
		}
	default:
		return t.fail("client message %q", typ)
	}
	return nil
}

// Backend records a server message. forward says whether it belongs to the client (it
// is false for the answers to injected requests). An error means the connection is no
// longer understood and must be destroyed.
func (t *Tracker) Backend(typ byte, body []byte) (forward bool, err error) {
	if t.err != nil {
		return false, t.err
	}
	switch typ {
	case 'N', 'S', 'A':
		return true, nil // asynchronous: notice, parameter status, notification
	}
	if len(t.queue) == 0 {
		return false, t.fail("server message %q with no request outstanding", typ)
	}
	// Errors always reach the client, even for an injected request: its own request
	// that depended on it is skipped.
	forward = !t.queue[0].drop || typ == 'E'
	switch {
	case t.copyOut:
		err = t.copyOutMessage(typ)
	case t.copyIn:
		// The server may end COPY FROM STDIN early with an error; the client's data
		// that follows is then discarded by the server.
		if typ != 'E' {
			return false, t.fail("server message %q during COPY FROM STDIN", typ)
		}
		t.copyIn = false
		err = t.errorResponse()
	case typ == 'E':
		err = t.errorResponse()
	default:
		err = t.answer(typ, body)
	}
	if err != nil {
		return false, err
	}
	return forward, nil
}

// copyOutMessage follows the server's COPY TO STDOUT data.
func (t *Tracker) copyOutMessage(typ byte) error {
	switch typ {
	case 'd':
		return nil
	case 'c':
		t.copyOut = false
		return nil
	case 'E':
		t.copyOut = false
		return t.errorResponse()
	}
	return t.fail("server message %q during COPY TO STDOUT", typ)
}

// answer checks a server message against the request at the head of the queue.
func (t *Tracker) answer(typ byte, body []byte) error {
	head := &t.queue[0]
	ok := false
	switch head.kind {
	case 'Q':
		switch typ {
		case 'T', 'D', 'C', 'I':
			ok = true
		case 'G':
			t.copyInResponse()
			ok = true
		case 'H':
			t.copyOut, ok = true, true
		case 'Z':
			return t.ready(body)
		}
	case 'F':
		switch {
		case typ == 'V' && head.stage == 0:
			head.stage, ok = 1, true
		case typ == 'Z':
			return t.ready(body)
		}
	case 'S':
		if typ == 'Z' {
			return t.ready(body)
		}
	case 'P', 'B', 'C':
		// ParseComplete, BindComplete, CloseComplete.
		if typ == completion(head.kind) {
			t.pop()
			ok = true
		}
	case 'D':
		switch {
		case typ == 't' && head.stage == 0:
			head.stage, ok = 1, true
		case typ == 'T' || typ == 'n':
			t.pop()
			ok = true
		}
	case 'E':
		switch typ {
		case 'D':
			ok = true
		case 'C', 'I', 's':
			t.pop()
			ok = true
		case 'G':
			t.copyInResponse()
			ok = true
		case 'H':
			t.copyOut, ok = true, true
		}
	}
	if !ok {
		return t.fail("server message %q in answer to %q", typ, head.kind)
	}
	return nil
}

// completion is the message that completes a Parse, Bind or Close.
func completion(kind byte) byte {
	switch kind {
	case 'P':
		return '1'
	case 'B':
		return '2'
	}
	return '3'
}

// copyInResponse starts COPY FROM STDIN. The Syncs the client sent since its request
// reached the server during the COPY, which ignores them; and if the client already
// ended its data (a copyEnd marker), the COPY is over as far as the client goes.
func (t *Tracker) copyInResponse() {
	t.queue[0].stage = 0
	ended := false
	for i := 1; i < len(t.queue) && !ended; {
		switch t.queue[i].kind {
		case 'S':
			t.queue = append(t.queue[:i], t.queue[i+1:]...)
		case copyEnd:
			t.queue = append(t.queue[:i], t.queue[i+1:]...)
			ended = true
		default:
			i++
		}
	}
	if ended {
		t.queue[0].stage = 1
	} else {
		t.copyIn = true
	}
	if t.queue[0].kind == 'E' {
		// The batch stays open until a Sync the server does not ignore.
		t.unsynced = true
		for _, e := range t.queue[1:] {
			if e.kind == 'S' {
				t.unsynced = false
			}
		}
	}
}

func (t *Tracker) pop() {
	copy(t.queue, t.queue[1:])
	t.queue = t.queue[:len(t.queue)-1]
	// A copyEnd no COPY claimed is the tail of one that failed: the server dropped it.
	for len(t.queue) > 0 && t.queue[0].kind == copyEnd {
		t.queue = t.queue[1:]
	}
}

// ready ends a Query, FunctionCall or Sync with ReadyForQuery.
func (t *Tracker) ready(body []byte) error {
	if len(body) != 1 || (body[0] != 'I' && body[0] != 'T' && body[0] != 'E') {
		return t.fail("malformed ReadyForQuery")
	}
	t.status = body[0]
	t.pop()
	return nil
}

// errorResponse handles an ErrorResponse to the request at the head of the queue.
func (t *Tracker) errorResponse() error {
	head := t.queue[0]
	switch head.kind {
	case 'Q', 'F', 'S':
		// Answered up to ReadyForQuery, which still comes.
		head.stage = 1
		t.queue[0] = head
		return nil
	}
	// An extended-protocol message failed: the server skips to the next Sync, so
	// everything queued before it goes unanswered.
	i := 0
	for i < len(t.queue) && t.queue[i].kind != 'S' {
		if t.queue[i].kind == 'Q' || t.queue[i].kind == 'F' {
			return t.fail("simple request inside an extended-protocol batch")
		}
		i++
	}
	t.queue = append(t.queue[:0], t.queue[i:]...)
	if len(t.queue) == 0 {
		t.skipping = true
	}
	return nil
}
