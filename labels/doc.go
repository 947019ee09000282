// Package labels owns sepgsql object labels: the SELinux context model (parse, print,
// normalise, dominance), spec files in the selabel_db / sepgsql_contexts format that
// sepgsql_restorecon reads, the catalog reads that list every labelable object with the
// key sepgsql_restorecon looks it up by, plans (what a spec would change), applying them
// with SECURITY LABEL in one transaction, exporting the current labels, and running
// sepgsql_restorecon itself, with a true dry run (BEGIN … ROLLBACK and a catalog diff).
//
// Sharp edges:
//   - Keys are the server's: quote_ident() of each part joined by ".", computed in SQL so
//     mixed-case names, keywords and embedded quotes match exactly what
//     sepgsql_restorecon passes to selabel_lookup. Functions have no argument list, so
//     overloads share one key and one spec line labels them all.
//   - Matching follows libselinux's label_db: the first line of the right class whose
//     pattern fnmatch()es the key wins, in file order; '*' also matches '.', and "[...]"
//     and backslash escapes work as in fnmatch(3). Characters are matched as UTF-8 runes,
//     as glibc does in a UTF-8 locale.
//   - The server skips lines it cannot parse; ParseSpec rejects them (with file:line), so
//     a file ParseSpec accepts means the same to both.
//   - Drift is decided on the exact label strings in pg_seclabel, as the server stores
//     them: "s0:c1,c0" and "s0:c0,c1" are the same level but different strings, and
//     sepgsql_restorecon would rewrite one to the other.
//   - Dropped columns are left out of Objects, so of plans, applies and the restorecon
//     dry run's diff alike: SECURITY LABEL cannot name them ("column does not exist")
//     and no access check reads their label. sepgsql_restorecon does relabel them (lab:
//     DROP COLUMN deletes the label, restorecon writes a new one under the key
//     db.schema.table."........pg.dropped.N........", and warns when no line matches).
//   - The spec path given to Restorecon is opened by the server process (postgresql_t):
//     a file it may not read fails with "failed to initialize labeling handle"; files
//     under /var/lib/postgresql work.
//   - SECURITY LABEL locks every object it labels (a column: its table) until commit, so
//     one all-or-nothing transaction over tens of thousands of tables needs a larger
//     max_locks_per_transaction; Apply refuses up front, before changing anything, when
//     the lock table cannot hold it. sepgsql_restorecon takes no such per-object locks.
//   - On a host without SELinux sepgsql registers no label provider: every write fails
//     with 22023, and ErrNotEnabled is returned before trying.
package labels
