// Package parity holds the tests that run peers' own suites through sepgadm and
// compare them with a direct run: PostgreSQL's core regression suite (fetched from
// Debian's postgresql-15 source package by parity/fetch.sh, which make setup runs).
// It has no code of its own.
package parity
