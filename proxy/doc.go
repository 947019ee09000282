// Package proxy is sepgadm's connection pooler: it speaks the PostgreSQL wire protocol
// to clients and to the server, and runs every client's work under the client's own
// SELinux context by switching the server session through the trusted procedure (see
// package trusted) before anything of the client's is sent.
//
// Use: ParseConfig or LoadConfig reads sepgadm.toml, New prepares a Proxy, Run serves
// until its context ends; Reload, Drain and Shutdown are what the CLI maps SIGHUP and
// SIGTERM to.
//
// A client's context comes, in order, from its Unix-socket peer label (SO_PEERSEC),
// from the first matching [[context]] rule, or from default_context; a client with none
// is refused (28000).
//
// The pieces, by file:
//   - proxy.go: listeners, lifecycle, reload, cancel keys; config.go: the configuration.
//   - client.go: a client's login (TLS, authentication, context) and the switch; auth.go:
//     SCRAM secrets and auth_query.
//   - server.go: server connections, the proxy's own exactly-checked calls
//     (exchange), and the pool of each (database, user).
//   - relay.go: one relay for session and transaction mode; txn.go: what transaction
//     pooling adds (checkout with label affinity and reset, statement renaming,
//     settings replay); sqlscan.go: the lexer that finds session-only SQL.
//   - wire (subpackage): frames, the startup packet, and the Tracker that follows a
//     server conversation message by message.
//   - admin.go: the admin console; observe.go: metrics and the session log.
//
// Session pooling: a server connection serves one client for its whole session and is
// then reset (server_reset_query, then the switch back to the proxy's own label, in one
// write) or, if anything about it is in doubt, closed. Transaction pooling: a server
// connection is attached at a client's first message and released when the tracker says
// everything is answered at ReadyForQuery 'I'; idle connections keep their label and
// checkout prefers one already labelled for the client, so a switch (and the reset
// before it) is paid only when the label must change.
//
// Sharp edges:
//   - The invariant is: no client statement runs under a context other than the
//     client's, and no client receives anything of another's. Every failure of the
//     switch, and every message the tracker does not expect, closes the server
//     connection; docs/security.md lists what holds and which test shows it.
//   - The refusal of statements that name the switch function is a courtesy: dynamic
//     SQL, search_path tricks or wrapper functions escape it. What protects the switch
//     is the credential, which only the proxy holds and the server never logs.
//   - Reload replaces rules, users, credential and timeouts; listeners and the server
//     address need a restart.
//
// The history of the relay's performance measurements is in docs/performance.md.
package proxy
