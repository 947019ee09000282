// Package sessionlog is the contract between the proxy, which writes its session log,
// and the auditor, which reads it to attribute a database denial to the client behind
// the pooler: one JSON object per line, one Record each.
package sessionlog

import (
	"errors"
	"fmt"
	"time"
)

// Event is what a record reports.
type Event string

// The events of a session.
const (
	Connect    Event = "connect"    // the client logged in; its context was resolved
	Tag        Event = "tag"        // a server session was switched to the client's context
	Disconnect Event = "disconnect" // the client left
)

// Record is one line of the session log.
type Record struct {
	Time            time.Time `json:"time"`
	Event           Event     `json:"event"`
	SessionID       string    `json:"session_id"`
	ClientAddr      string    `json:"client_addr,omitempty"` // ip:port, or "unix"
	PeerPID         int       `json:"peer_pid,omitempty"`    // Unix-socket peer
	PeerUID         *int      `json:"peer_uid,omitempty"`
	PeerLabel       string    `json:"peer_label,omitempty"`
	OSUser          string    `json:"os_user,omitempty"`
	DBUser          string    `json:"db_user,omitempty"`
	Database        string    `json:"database,omitempty"`
	Context         string    `json:"context,omitempty"`
	ContextSource   string    `json:"context_source,omitempty"` // peer, rule or default
	BackendPID      int       `json:"backend_pid,omitempty"`    // the server session (tag)
	ApplicationName string    `json:"application_name,omitempty"`
}

// Check reports what makes r unusable to a reader, or nil.
func (r *Record) Check() error {
	if r.Time.IsZero() || r.SessionID == "" {
		return errors.New("session record without time or session_id")
	}
	switch r.Event {
	case Connect, Tag, Disconnect:
		return nil
	}
	return fmt.Errorf("unknown session event %q", r.Event)
}
