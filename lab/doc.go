// Package lab holds what Go tests need inside the SELinux lab guest: the guest's facts
// (enforcing mode, PostgreSQL's socket and logs) and ways to act as another SELinux
// domain (psql under runcon). The guest itself is built and booted by the scripts next
// to this file: lab/build (the cached image), lab/boot (one qemu boot), lab/run (run a
// script in the enforcing guest) and lab/tests.sh (run the lab test binaries).
//
// Lab tests carry the build tag "lab" and are compiled on the host with
// `go test -tags lab -c` (CGO off), so a plain `go test ./...` on the host never sees
// them. Inside the guest they call Require, which fails (never skips) outside the lab.
//
// Sharp edges:
//   - Tests run as system_u:system_r:initrc_t:s0, which sepgsql treats as unconfined.
//     Act as a confined client with PSQL and a domain from the lab policy module
//     (lab/guest/policy), e.g. ClientDomain.
//   - psql is exec'd as /usr/lib/postgresql/15/bin/psql (bin_t): Debian's /usr/bin/psql
//     is pg_wrapper (usr_t) and is not an entrypoint of any test domain.
//   - The server log is written by PostgreSQL's logging collector; a line may appear a
//     moment after the statement that caused it (ServerLogContains polls).
package lab
