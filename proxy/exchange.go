package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sepgadm/sepgadm/trusted"
)

// serverError is an ErrorResponse from the server during a call the proxy made itself.
type serverError struct{ *pgproto3.ErrorResponse }

func (e serverError) Error() string {
	return e.Severity + ": " + e.Message + " (SQLSTATE " + e.Code + ")"
}

// command runs sql, a simple Query whose statements return no rows (SET, DISCARD), and
// checks the exact answer: a CommandComplete per statement, then ReadyForQuery 'I'.
func (s *serverConn) command(ctx context.Context, sql string) error {
	msg, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	_, err := s.exchange(ctx, msg, strings.Repeat("C", max(1, len(scanSQL(sql))))+"Z")
	return err
}

// queryValue runs a one-row, one-column query and returns its value (nil: NULL).
func (s *serverConn) queryValue(ctx context.Context, sql string) (*string, error) {
	msg, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	return s.exchange(ctx, msg, "TDCZ")
}

// appendCall appends SELECT fn($1, $2) with text parameters over the extended protocol,
// so the arguments never appear in SQL text (nor, therefore, in the statement log). Its
// answer is callAnswer.
func appendCall(buf []byte, fn string, a string, b *string) []byte {
	buf, _ = (&pgproto3.Parse{Query: trusted.TagSQLFor(fn), ParameterOIDs: []uint32{25, 25}}).Encode(buf)
	params := [][]byte{[]byte(a), nil}
	if b != nil {
		params[1] = []byte(*b)
	}
	buf, _ = (&pgproto3.Bind{Parameters: params}).Encode(buf)
	buf, _ = (&pgproto3.Execute{}).Encode(buf)
	buf, _ = (&pgproto3.Sync{}).Encode(buf)
	return buf
}

// callAnswer is the exact answer to appendCall: ParseComplete, BindComplete, one
// DataRow, CommandComplete, ReadyForQuery.
const callAnswer = "12DCZ"

// exchange sends msg and reads the answer, which must be exactly want: message types in
// order, where '*' stands for any number of RowDescription, DataRow, CommandComplete and
// EmptyQueryResponse. NoticeResponse, ParameterStatus (recorded) and
// NotificationResponse may come anywhere. Every ReadyForQuery must report 'I'. A
// server error ends the exchange as a serverError; any other departure as an error
// naming it. Either way the caller must destroy the connection. first is the first
// column of the first DataRow.
func (s *serverConn) exchange(ctx context.Context, msg []byte, want string) (first *string, err error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = s.conn.SetDeadline(dl)
		defer s.conn.SetDeadline(time.Time{})
	}
	if _, err := s.w.Write(msg); err != nil {
		return nil, fmt.Errorf("write to server: %w", err)
	}
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("write to server: %w", err)
	}
	gotRow := false
	for i := 0; i < len(want); {
		typ, body, err := s.r.Message()
		if err != nil {
			return nil, fmt.Errorf("read from server: %w", err)
		}
		switch typ {
		case 'N', 'A':
			continue
		case 'S':
			var ps pgproto3.ParameterStatus
			if ps.Decode(body) == nil {
				s.setParam(ps.Name, ps.Value)
			}
			continue
		case 'E':
			var e pgproto3.ErrorResponse
			if err := e.Decode(body); err != nil {
				return nil, fmt.Errorf("decode server error: %w", err)
			}
			return nil, serverError{&e}
		}
		if want[i] == '*' {
			if strings.IndexByte("TDCI", typ) >= 0 {
				continue
			}
			i++
		}
		if i >= len(want) || want[i] != typ {
			return nil, fmt.Errorf("unexpected server message %q in answer to the proxy's own call", typ)
		}
		switch typ {
		case 'D':
			if !gotRow {
				first, gotRow = firstColumn(body), true
			}
		case 'Z':
			if len(body) != 1 || body[0] != 'I' {
				return nil, errors.New("the proxy's own call left the session inside a transaction")
			}
		}
		i++
	}
	return first, nil
}

// firstColumn extracts column 0 of a DataRow body; nil for SQL NULL or no column.
func firstColumn(body []byte) *string {
	if len(body) < 6 || binary.BigEndian.Uint16(body) == 0 {
		return nil
	}
	n := int32(binary.BigEndian.Uint32(body[2:]))
	if n < 0 || int(n) > len(body)-6 {
		return nil
	}
	v := string(body[6 : 6+n])
	return &v
}

// setConfig gives each setting in keys its value from values, as the server reads a
// startup parameter (set_config, so that a list such as search_path is parsed, not
// quoted), in one statement whose arguments are bind parameters.
func (s *serverConn) setConfig(ctx context.Context, keys []string, values map[string]string) error {
	var q strings.Builder
	params := make([][]byte, 0, 2*len(keys))
	q.WriteString("SELECT ")
	for i, k := range keys {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "pg_catalog.set_config($%d, $%d, false)", 2*i+1, 2*i+2)
		params = append(params, []byte(k), []byte(values[k]))
	}
	if len(keys) == 0 {
		return nil
	}
	var buf []byte
	buf, _ = (&pgproto3.Parse{Query: q.String()}).Encode(buf)
	buf, _ = (&pgproto3.Bind{Parameters: params}).Encode(buf)
	buf, _ = (&pgproto3.Execute{}).Encode(buf)
	buf, _ = (&pgproto3.Sync{}).Encode(buf)
	_, err := s.exchange(ctx, buf, callAnswer)
	return err
}
