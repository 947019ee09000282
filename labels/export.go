package labels

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
)

// CurrentDatabaseKey is the key of the connected database (quote_ident of its name).
func CurrentDatabaseKey(ctx context.Context, conn *pgx.Conn) (string, error) {
	var k string
	if err := conn.QueryRow(ctx, "SELECT quote_ident(current_database())").Scan(&k); err != nil {
		return "", fmt.Errorf("read current database: %w", err)
	}
	return k, nil
}

// exportable keeps the labelled objects of the current database: its own db_database
// entry and everything inside it.
func exportable(objs []Object, dbKey string) []Object {
	var out []Object
	for _, o := range objs {
		if o.Label == "" || (o.Class == ClassDatabase && o.Key != dbKey) {
			continue
		}
		out = append(out, o)
	}
	return out
}

// EscapePattern turns a key into a spec pattern that matches exactly that key: fnmatch
// metacharacters get a backslash. ok is false when the key holds a character the spec
// format cannot carry (whitespace splits fields, '#' starts a comment); those become '?'.
func EscapePattern(key string) (pattern string, ok bool) {
	var b strings.Builder
	ok = true
	for _, r := range key {
		switch {
		case r == '*' || r == '?' || r == '[' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '#' || isCSpace(r) || r == 0:
			b.WriteByte('?')
			ok = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String(), ok
}

// ExportSpec writes the current labels of the database whose key is dbKey as a spec
// file. With anyDB the database part of every key becomes '*' (for applying to a copy
// under another name) and the db_database line is left out. It returns warnings for what
// the format cannot say exactly: overloaded functions with different labels (one key
// for all), and names with whitespace or '#'.
func ExportSpec(w io.Writer, objs []Object, dbKey string, anyDB bool) (warnings []string, err error) {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# sepgadm labels export of database %s (sepgsql_contexts format)\n", dbKey)
	seen := map[string]string{} // class+key → label written
	for _, o := range exportable(objs, dbKey) {
		key := o.Key
		if anyDB {
			if o.Class == ClassDatabase {
				continue
			}
			key = strings.TrimPrefix(key, dbKey)
		}
		id := o.Class + " " + o.Key
		if prev, dup := seen[id]; dup {
			if prev != o.Label {
				warnings = append(warnings, fmt.Sprintf("%s %s: overloads carry different labels (%s kept, %s on %s lost); use -o sql for an exact export", o.Class, o.Key, prev, o.Label, o.Target))
			}
			continue
		}
		seen[id] = o.Label
		pat, ok := EscapePattern(key)
		if !ok {
			warnings = append(warnings, fmt.Sprintf("%s %s: whitespace or '#' in the name written as '?'", o.Class, o.Key))
		}
		if anyDB {
			pat = "*" + pat
		}
		fmt.Fprintf(bw, "%-12s %s %s\n", o.Class, pat, o.Label)
	}
	if err := bw.Flush(); err != nil {
		return warnings, fmt.Errorf("write spec export: %w", err)
	}
	return warnings, nil
}

// ExportSQL writes the current labels of the database whose key is dbKey as one
// transaction of SECURITY LABEL statements, exact for every object (overloads
// included).
func ExportSQL(w io.Writer, objs []Object, dbKey string) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "-- sepgadm labels export of database %s\nBEGIN;\n", dbKey)
	for _, o := range exportable(objs, dbKey) {
		fmt.Fprintf(bw, "%s;\n", SetLabelSQL(o, o.Label))
	}
	bw.WriteString("COMMIT;\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write SQL export: %w", err)
	}
	return nil
}
