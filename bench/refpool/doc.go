// Package refpool is the reference pooler that make bench-proxy races next to PgBouncer
// and sepgadm: the least work any transaction pooler must do, written the way PgBouncer
// is written (one epoll loop per thread, raw non-blocking sockets that Go's netpoller
// never sees), so that a benchmark run shows how fast a pooler can be on the machine it
// runs on, not only how fast two real ones are.
//
// It accepts TCP clients without authentication, answers the startup packet itself,
// forwards each client's whole frames to a server connection taken from a fixed pool
// (opened at start, logged in by trust over PostgreSQL's Unix socket) and gives the
// connection back at ReadyForQuery 'I' once every Sync, Query and FunctionCall it
// forwarded is answered and nothing was forwarded after the last of them. It does nothing else: no SELinux context, no switch, no checks of query
// texts, no settings replay, no cancel, no TLS, no admin console. It is a measuring
// instrument, never a pooler to run: it trusts every client and lets a session setting
// of one client leak to the next.
//
// Sharp edges:
//   - A write that finds the peer's socket full waits for it (poll, up to writeWait):
//     the whole loop stalls meanwhile. pgbench reads its answers at once, so this never
//     happens in the benchmark; a real pooler must not do it.
//   - A client that leaves with a request in flight closes its server connection, which
//     is reopened at once on the loop's thread.
package refpool
