// Package migrations owns sepgadm's versioned SQL: the schema "sepgadm" that every
// target database carries (the credential table and the tagging functions). The files
// in sql/ are embedded and applied with github.com/jackc/tern/v2, whose version table
// is sepgadm.schema_version.
//
// Sharp edges:
//   - Up applies every pending migration, and creates the schema and the version table,
//     in one transaction per database: a failure leaves the database as it was.
//   - Status only reads: it never creates the schema or the version table.
//   - tern runs each file through text/template, so "{{" must not appear in the SQL.
//   - Labels are not migrations: they depend on the loaded SELinux policy and are
//     applied by package trusted after Up, only when sepgsql is on.
package migrations
