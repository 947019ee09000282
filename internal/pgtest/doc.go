// Package pgtest starts throwaway PostgreSQL 15 clusters for tests, from Debian's server
// binaries (/usr/lib/postgresql/15/bin, or $SEPGADM_PG_BIN).
//
// A cluster lives in a temporary directory with a private Unix-socket directory and a
// free TCP port on 127.0.0.1, trusts every local client, and runs with fsync off. When
// the test process is root, initdb and postgres run as the "postgres" OS user, because
// initdb refuses root.
//
// Sharp edges:
//   - A package shares one cluster through Shared (start once, not per test); tests that
//     need isolation make their own database with CreateDatabase.
//   - When SEPGADM_REQUIRE_ALL=1 a cluster that cannot start fails the test; otherwise the
//     test is skipped with the reason. CI always sets it.
//   - Options.Sepgsql only preloads the module. On a host without SELinux it registers no
//     label provider and sepgsql_getcon() is NULL; MAC behaviour is proven in the lab.
package pgtest
