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
// Transaction pooling (txn.go): a server connection is attached at a client's first
// message after ReadyForQuery 'I' and released at the next 'I' with nothing in flight;
// idle connections keep their label and checkout prefers one already labelled for the
// client, so a switch is paid only when the label must change.
//
// Where the time goes (perf, strace and /proc on make bench-proxy, select-only, 50
// clients, pool 20, 2 cores shared with PostgreSQL and pgbench): both poolers spend
// most of their CPU in the kernel, and the same way: the two writes per round trip
// (to the server, to the client) wake the peer, which preempts the writer (about 57% of
// samples, for PgBouncer as for sepgadm, land in the context switch and wake-up
// paths); system time per transaction is about equal (11-12.6 µs). The difference is
// user time: PgBouncer's single epoll loop serves about twenty events per epoll_wait,
// while here each transaction parks the client's goroutine three times when clients
// outnumber connections (for the request, for a connection, for the answer). What the
// relay does to keep its own share small, each measured:
//
//   - one goroutine per client does the whole round trip (read the request, send it,
//     read the answer up to ReadyForQuery); a reader goroutine takes over the server's
//     side only for pipelined requests, Flush, COPY FROM STDIN, or an answer slower
//     than 200 ms (so a client that leaves during a long statement is still noticed);
//
//   - a coarse clock (clock.go, moved every 50 ms) serves wait deadlines, lifetimes and
//     idle times: a system clock read costs about a tenth of a microsecond in this VM;
//
//   - sockets are read and written with raw non-blocking calls inside RawConn callbacks
//     (rawio.go): a plain net.Conn call releases the P, and when the kernel preempts the
//     writer, Go's sysmon hands the P to another thread: this alone took pooler CPU per
//     select-only transaction from about 30 to 23 µs;
//
//   - frames are forwarded from the read buffer without decoding (5-byte header, body
//     copied), with no allocation per frame; a client's repeated query texts are checked
//     once; traffic counters are summed per transaction, not per message, into one
//     atomic each (also the Prometheus counters);
//
//   - a released connection is handed straight to the longest waiter, and not peeked
//     (it was never idle); a wait makes no timer (the pool has one, for the earliest
//     deadline) and reuses the client's waiter. These took 22.2 to 20.4 µs.
//
//   - a server connection whose tracked settings equal the client's is recognised by
//     one string comparison (settingsKey), not a map lookup per setting; Bind is
//     renamed without allocating; frame headers are written in place.
//
// PgBouncer still spends less CPU per transaction (about 12-14 µs against 18-20); make
// bench-proxy prints both. GOMAXPROCS=1 (bench-proxy -targets pgbouncer,untagged,1p races
// it in the same run) helps only at low concurrency: on 2026-12-03, medians of 3, 10 s
// points, select-only at 10 clients 23.5k TPS against 16.6k on two Ps (18.9 against 28.1
// µs pooler CPU per transaction; PgBouncer 24.2k), but at 50 and 100 clients 14.2k and
// 14.4k against 15.0k and 15.3k (PgBouncer 15.5k, 15.9k), and tpcb-like 1.9-2.5k TPS
// for all three, one P no better than two. With one P, a thread the kernel preempts in a
// write stalls every client, and a busy P polls the network late; so the default stays.
// perf on a later day (the machine twice as slow, PgBouncer 25-40 µs) split it: kernel
// time per transaction about equal (PgBouncer 28, sepgadm 29.7 µs), user time 3.2
// against 9.1 µs. An event loop on PgBouncer's model (loop.go, event_loop = "on") cut
// the wake-ups but not the CPU; it stays experimental until its sockets leave Go's
// netpoller (see loop.go).
//
// On 2026-12-04 bench-proxy printed user and system time apart (10 s points, medians
// of 3, 50 and 100 clients): select-only PgBouncer 20.0 and 34.7 µs per transaction (3.2
// and 5.7 user), sepgadm 24.0 and 28.8 (7.4 and 8.9 user), TPS 0.96x and 1.05x of
// PgBouncer; tpcb-like PgBouncer 135.5 and 135.6 (22.5 and 19.4 user), sepgadm 184.6 and
// 189.0 (54.4 and 56.2 user), 0.99x and 0.92x. So per round trip sepgadm spends 3-5 µs
// more in user space, and in the kernel from 9 µs less to 2.5 µs more, while the
// machine's context switches per transaction were about equal (select-only 2.5-4.0 for
// both, tpcb-like 19-23). pprof the same day (select-only, 50 clients, 15 s): writes 47%
// of the samples, reads 12%, Go's scheduler 20%, most of it epoll_wait from netpoll
// (12.7%, about 4 µs per transaction: a P that runs out of goroutines polls the network
// itself, where PgBouncer's loop makes 0.05 epoll_wait calls per transaction), thread
// wake-ups (wakep, futex) 3%. That share is the goroutine-per-client model's, not the
// relay's; GOMAXPROCS=1 and the event loop on one P (-targets 1p,loop1p) did not remove
// it (select-only at 50 clients 17.4k and 15.8k TPS against 20.3k on two Ps; within the
// runs' spread at 100).
//
// System calls counted with perf stat (syscall tracepoints, 8 s of a 50-client run,
// per transaction): select-only PgBouncer 7.6 (2.9 recvfrom, 2.0 sendto, 1.8 epoll_ctl,
// 0.9 epoll_wait), sepgadm 6.5 (3.5 read, 2.0 write, 0.7 epoll_pwait, 0.2 futex), and
// 1.06 against 0.99 context switches of the pooler's own; tpcb-like PgBouncer 30.7 (14.1
// recvfrom, 13.2 sendto), sepgadm 40.7 (24.2 read, 13.8 write, 2.4 epoll_pwait). The
// extra reads are the tries that find nothing yet (EAGAIN) before a goroutine waits in
// the netpoller: about one per statement. Sending the request and waiting for its
// answer inside one read callback (readiness armed before the request leaves, so
// nothing is missed) took tpcb-like from 24.2 to 17.1 reads per transaction, but not
// the pooler's CPU: raced in one run against the kept relay (10 s points, medians of 3,
// 50 and 100 clients), tpcb-like 187.9 and 199.3 µs per transaction against 177.7 and
// 197.1, select-only 22.8 and 24.0 against 27.9 and 25.1, TPS within 6% either way; the
// waits it saved came back as epoll_pwait and futex calls (5.8 and 1.5 per tpcb-like
// transaction), so it was not kept. More Ps than CPUs (a thread the kernel preempts
// inside a raw write keeps its P) did not help either: GOMAXPROCS=4 against the default
// 2, same run, 10 s points, medians of 3, 50 and 100 clients: select-only 20.3k and
// 20.7k TPS against 20.8k and 19.7k, tpcb-like 2,613 and 2,518 against 2,458 and
// 2,499, with 8-20 µs more pooler CPU per tpcb-like transaction.
//
// The default against both variants once more on 2026-12-04 (-targets
// pgbouncer,untagged,loop,1p, 15 s points, medians of 3, 50 and 100 clients): select-only
// 20.8k and 19.4k TPS, event loop 20.4k and 18.1k, GOMAXPROCS=1 20.1k and 17.1k
// (PgBouncer 21.3k and 21.8k); tpcb-like 2,584 and 2,428, loop 2,126 and 2,150, one P
// 1,968 and 2,182 (PgBouncer 2,429 and 2,400). The loop makes 22-23 context switches per
// tpcb-like transaction against 19 for the default and for PgBouncer.
//
// An idea left open on 2026-12-04, counted out rather than built: the goroutine that
// releases a connection could send the longest waiter's already-read request on it and
// relay the answer, so that the waiter never waits on the server socket. Counted per
// waiting transaction it moves a wait and removes none: the waiter still waits for its
// client's request (netpoller) and is woken when its transaction is served (now at the
// end, not the start), and the releaser now waits on the server socket in its place:
// three waits either way, and the releaser's own client waits behind the one it serves.
// Fewer wake-ups per transaction need one goroutine to serve many ready sockets per
// wake-up, which is the event loop above.
//
// pprof on a slower machine the same evening (select-only, 100 clients, 25 s, about
// 271k transactions, 42 µs of pooler CPU each): the two writes per transaction 23.6 µs
// (in the kernel: the write wakes the reader), reads 5.9 µs, epoll_wait 0.5 µs; user
// time 12.1 µs, with no part over 1.3% of samples: Go's park and wake paths 2.2 µs, the
// hand-over of a connection to a waiter (channel send, select) 1.6 µs, the inline wait's
// two SetReadDeadline calls 1.1 µs. PgBouncer spent 7.8 µs user and 31.1 µs system per
// transaction in that day's bench-proxy; sepgadm 13.3 and 26.6.
//
// On 2026-12-06 bench-proxy gained two controls, to tell what a pooler's design can
// still gain on this machine from the machine's own spread. The reference pooler
// (package refpool) does strictly less than PgBouncer, the way PgBouncer does it: raw
// epoll loops on locked threads, sockets Go's netpoller never sees, no auth, no checks,
// 3-5 µs of user CPU per select-only transaction (medians) against PgBouncer's 5-7 and
// sepgadm's 10-13. A second PgBouncer, identical but for its port, races the first
// (an A/A control). Medians of 5 rounds of 15 s, ratios to PgBouncer, select-only at 50
// and 100 clients, then tpcb-like: PgBouncer again 1.03x, 1.00x, 1.08x, 0.96x; the
// reference pooler (a loop per CPU) 1.04x, 1.03x, 1.11x, 0.91x; sepgadm untagged
// 1.07x, 1.05x, 1.01x, 1.00x; sepgadm with one context 1.04x, 0.98x, 1.03x, 0.91x.
// Leaving out one round that disturbed every target (0.56-0.74), the rounds' own ratios
// ranged 0.79-1.31 for the reference pooler, 0.90-1.14 for PgBouncer against itself
// and 0.92-1.18 for sepgadm untagged. Two
// earlier runs that day (a prototype, medians of 6, then refpool, medians of 3) put it
// at 0.90-1.20x, and its one-loop form (PgBouncer's model exactly) at 0.86-1.01x with
// the machine 82-98% busy against sepgadm's 96-99% (select-only). So at 50 and 100 clients on 2 cores shared
// with PostgreSQL and pgbench, TPS is set by the kernel's work for the extra hop (each
// write wakes its reader) and by PostgreSQL, which every pooler pays alike; a pooler's
// own user time, about 3% of the machine, is below the spread between two identical
// PgBouncers. The A/A control also showed a target's place in a round moving its TPS
// by up to 8% the same way in every round (tpcb-like grows the tables), so each round
// now starts one target later.
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
