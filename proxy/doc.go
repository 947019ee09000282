// Package proxy is sepgadm's connection pooler: it speaks the PostgreSQL wire protocol
// to clients and to the server, and runs every client's work under the client's own
// SELinux context by switching the server session through the trusted procedure (see
// package trusted) before anything of the client's is sent, and back afterwards.
//
// A client's context comes, in order, from its Unix-socket peer label (SO_PEERSEC),
// from the first matching [[context]] rule, or from default_context; a client with none
// is refused (28000). Session pooling: a server connection serves one client for the
// client's whole session; at the end it is reset (DISCARD ALL, switch back to the proxy's
// own label) or, if anything about it is in doubt, closed.
//
// Sharp edges:
//   - The invariant is: no client statement runs under a context other than the
//     client's. Every failure of the switch (server error, unexpected label, broken
//     connection) closes the server connection and refuses the client with the server's
//     SQLSTATE and a message starting "sepgadm:".
//   - The relay forwards frames without decoding them; only Query and Parse bodies are
//     read, to refuse statements that name the switch function. That check is a courtesy:
//     dynamic SQL, search_path tricks or wrapper functions escape it. What protects the
//     switch is the credential, which only the proxy holds.
//   - Reload replaces rules, users, credential and timeouts; listeners and the server
//     address need a restart.
package proxy
