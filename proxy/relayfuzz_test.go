//go:build !lab

package proxy_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// FuzzRelay is a model-based fuzz test of the relay: 2 to 4 clients of two labels
// share a pool of one or two server connections in transaction mode, each running a
// script the fuzzer chose (simple and extended queries, pipelines, Flush, FunctionCall,
// transactions, errors, COPY aborts, disconnects, unknown messages). Every row a query
// returns carries the label it ran under and the number of the request it answers; the
// invariant, checked at every answer: a client receives only its own label and only
// the answer to the request it sent, in order.
//
// `go test` runs the seeds; `make fuzz` runs the fuzzer.
func FuzzRelay(f *testing.F) {
	for _, seed := range []string{
		"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c",
		"\x05\x15\x00\x10\x06\x16\x01\x11",
		"\x03\x13\x23\x33\x04\x14\x24\x34",
		"\x08\x18\x00\x10\x0b\x1b\x01\x11\x09\x19",
		"\xff\xfe\x05\x15\x03\x13\x06\x16\x07\x17",
	} {
		f.Add(uint8(0), []byte(seed))
		f.Add(uint8(7), []byte(seed))
	}
	// One proxy per pool size, for the whole run.
	var harnesses [2]*harness
	for i := range harnesses {
		harnesses[i] = startProxy(f, fmt.Sprintf("pool_mode = \"transaction\"\nquery_wait_timeout = \"10s\"\nmax_client_conn = 1000\n[users.app]\npool_size = %d", i+1))
	}
	f.Fuzz(func(t *testing.T, shape uint8, script []byte) {
		if len(script) > 64 {
			script = script[:64]
		}
		h := harnesses[shape%2]
		nClients := 2 + int(shape/2%3)
		scripts := make([][]byte, nClients)
		for _, b := range script {
			i := int(b) % nClients
			scripts[i] = append(scripts[i], b/byte(nClients))
		}
		var wg sync.WaitGroup
		errs := make(chan error, nClients)
		for i := range nClients {
			app, want := "tenant-a", ctxA
			if i%2 == 1 {
				app, want = "tenant-b", ctxB
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := runModelClient(h, app, want, i, scripts[i]); err != nil {
					errs <- fmt.Errorf("client %d (%s): %w", i, app, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// modelClient is one fuzzed client: a raw protocol connection and its request counter.
type modelClient struct {
	h        *harness
	app      string
	label    string
	id       int
	conn     net.Conn
	fe       *pgproto3.Frontend
	req      int
	prepared bool
}

func (m *modelClient) dial() error {
	conn, err := net.Dial("tcp", m.h.tcp)
	if err != nil {
		return err
	}
	m.conn, m.fe, m.prepared = conn, pgproto3.NewFrontend(conn, conn), false
	m.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "app", "database": "postgres", "application_name": m.app}})
	if err := m.fe.Flush(); err != nil {
		return err
	}
	got, err := m.read(1)
	if err != nil || len(got) == 0 || got[len(got)-1] != "Z:I" {
		return fmt.Errorf("login: %v %v", got, err)
	}
	return nil
}

// read collects n ReadyForQuery-terminated answers (spelled as rawClient.until does),
// and checks every row against the label and the current request.
func (m *modelClient) read(n int) ([]string, error) {
	_ = m.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var out []string
	for n != 0 { // n == -1: up to the first CommandComplete (after a Flush)
		msg, err := m.fe.Receive()
		if err != nil {
			return append(out, "EOF"), nil
		}
		switch msg := msg.(type) {
		case *pgproto3.DataRow:
			v := string(msg.Values[0])
			if want := fmt.Sprintf("%s|%d", m.label, m.req); v != want {
				return out, fmt.Errorf("request %d got row %q, want %q", m.req, v, want)
			}
			out = append(out, "D")
		case *pgproto3.ReadyForQuery:
			out = append(out, "Z:"+string(msg.TxStatus))
			n--
		case *pgproto3.ErrorResponse:
			out = append(out, "E:"+msg.Code)
		case *pgproto3.CopyInResponse:
			return append(out, "G"), nil
		case *pgproto3.ParseComplete:
			out = append(out, "1")
		case *pgproto3.BindComplete:
			out = append(out, "2")
		case *pgproto3.CommandComplete:
			out = append(out, "C")
		case *pgproto3.FunctionCallResponse:
			out = append(out, "V")
		}
		if n == -1 && len(out) > 0 && out[len(out)-1] == "C" {
			return out, nil // Flush: the answer up to CommandComplete
		}
	}
	return out, nil
}

func (m *modelClient) send(msgs ...pgproto3.FrontendMessage) {
	for _, msg := range msgs {
		m.fe.Send(msg)
	}
	_ = m.fe.Flush()
}

func rowSQL(req int) string {
	return fmt.Sprintf("SELECT coalesce(current_setting('sepgadm_test.label', true), '') || '|%d'", req)
}

// expect compares an answer with what the protocol owes the request, allowing the
// proxy to end the client instead (a pool wait that timed out).
func expect(got []string, want string) error {
	s := strings.Join(got, " ")
	if s == want || strings.HasSuffix(s, "EOF") {
		return nil
	}
	return fmt.Errorf("answer %q, want %q", s, want)
}

func runModelClient(h *harness, app, label string, id int, script []byte) error {
	m := &modelClient{h: h, app: app, label: label, id: id}
	if err := m.dial(); err != nil {
		return err
	}
	defer func() { m.conn.Close() }()
	inTx := false
	z := func() string {
		if inTx {
			return "Z:T"
		}
		return "Z:I"
	}
	for _, op := range script {
		m.req++
		var err error
		var got []string
		switch op % 13 {
		case 0: // simple query
			m.send(&pgproto3.Query{String: rowSQL(m.req)})
			got, err = m.read(1)
			if err == nil {
				err = expect(got, "D C "+z())
			}
		case 1: // extended, unnamed
			m.send(&pgproto3.Parse{Query: rowSQL(m.req)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			got, err = m.read(1)
			if err == nil {
				err = expect(got, "1 2 D C "+z())
			}
		case 2: // named statement with a parameter, prepared once per connection
			q := "SELECT coalesce(current_setting('sepgadm_test.label', true), '') || '|' || $1::text"
			if !m.prepared {
				m.send(&pgproto3.Parse{Name: "st", Query: q}, &pgproto3.Sync{})
				if got, err = m.read(1); err == nil {
					err = expect(got, "1 "+z())
				}
				m.prepared = true
			}
			if err == nil {
				m.send(&pgproto3.Bind{PreparedStatement: "st", Parameters: [][]byte{[]byte(fmt.Sprint(m.req))}}, &pgproto3.Execute{}, &pgproto3.Sync{})
				if got, err = m.read(1); err == nil {
					err = expect(got, "2 D C "+z())
				}
			}
		case 3: // Flush, then Sync
			m.send(&pgproto3.Parse{Query: rowSQL(m.req)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
			if got, err = m.read(-1); err == nil {
				if err = expect(got, "1 2 D C"); err == nil && !strings.HasSuffix(strings.Join(got, " "), "EOF") {
					m.send(&pgproto3.Sync{})
					if got, err = m.read(1); err == nil {
						err = expect(got, z())
					}
				}
			}
		case 4: // FunctionCall (pg_backend_pid)
			m.send(&pgproto3.FunctionCall{Function: 2026})
			if got, err = m.read(1); err == nil {
				err = expect(got, "V "+z())
			}
		case 5: // BEGIN
			if inTx {
				continue
			}
			m.send(&pgproto3.Query{String: "BEGIN"})
			inTx = true
			if got, err = m.read(1); err == nil {
				err = expect(got, "C Z:T")
			}
		case 6: // COMMIT
			m.send(&pgproto3.Query{String: "COMMIT"})
			inTx = false
			if got, err = m.read(1); err == nil {
				err = expect(got, "C Z:I")
			}
		case 7: // an error, which also ends a transaction block's usefulness: roll back
			m.send(&pgproto3.Query{String: "SELECT 1/0"})
			if got, err = m.read(1); err == nil {
				want := "E:22012 Z:I"
				if inTx {
					want = "E:22012 Z:E"
				}
				err = expect(got, want)
			}
			if inTx && err == nil {
				m.send(&pgproto3.Query{String: "ROLLBACK"})
				inTx = false
				if got, err = m.read(1); err == nil {
					err = expect(got, "C Z:I")
				}
			}
		case 8: // COPY abandoned by CopyFail
			if inTx {
				continue
			}
			m.send(&pgproto3.Query{String: "COPY (SELECT 1) TO STDOUT; CREATE TEMP TABLE IF NOT EXISTS cp(v int); COPY cp FROM STDIN"})
			if got, err = m.read(1); err == nil && !strings.HasSuffix(strings.Join(got, " "), "EOF") {
				m.send(&pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyFail{Message: "no"})
				if got, err = m.read(1); err == nil {
					err = expect(got, "E:57014 Z:I")
				}
			}
		case 9: // disconnect, reconnect
			m.conn.Close()
			inTx = false
			err = m.dial()
		case 10: // two statements in one query
			m.send(&pgproto3.Query{String: rowSQL(m.req) + "; " + rowSQL(m.req)})
			if got, err = m.read(1); err == nil {
				err = expect(got, "D C D C "+z())
			}
		case 11: // an unknown message: the client is ended
			_, _ = m.conn.Write([]byte{'p', 0, 0, 0, 5, 'x'})
			if got, err = m.read(1); err == nil {
				err = expect(got, "E:08P01 EOF")
			}
			m.conn.Close()
			inTx = false
			if err == nil {
				err = m.dial()
			}
		case 12: // two batches in one pipeline
			m.send(&pgproto3.Parse{Query: rowSQL(m.req)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
				&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			if got, err = m.read(2); err == nil {
				err = expect(got, "1 2 D C "+z()+" 2 D C "+z())
			}
		}
		if err != nil {
			return fmt.Errorf("op %d (request %d): %w", op%13, m.req, err)
		}
		if len(got) > 0 && got[len(got)-1] == "EOF" {
			inTx = false
			if err := m.dial(); err != nil {
				return err
			}
		}
	}
	return nil
}
