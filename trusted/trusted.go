package trusted

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Objects installed by the migrations, as SECURITY LABEL and to_regprocedure name them.
const (
	TagFunction     = "sepgadm.tag(text,text)"
	SwitchFunction  = "sepgadm.tag_switch(text,text)"
	CredentialTable = "sepgadm.credential"
)

// The functions' names, as SQL calls them: the default name of the tagging function
// (the proxy's tag_function), and the trusted procedure's own name, which no client
// statement should name.
const (
	TagFunctionName    = "sepgadm.tag"
	SwitchFunctionName = "tag_switch"
)

// TagSQL is the switch statement. $1 is the token, $2 the context (NULL: peer label);
// send it with the extended protocol so the token never appears in SQL text.
const TagSQL = "SELECT " + TagFunctionName + "($1, $2)"

// TagSQLFor is TagSQL with another (schema-qualified) tagging function, for a proxy
// configured with tag_function.
func TagSQLFor(fn string) string { return "SELECT " + fn + "($1, $2)" }

// SQLSTATEs of the tagging call.
const (
	CodeInvalidCredential = "28000" // wrong or unset token
	CodeNotEnabled        = "55000" // sepgsql off (no SELinux, or not installed)
	CodeInvalidLabel      = "42602" // sepgsql: the policy rejects the context
	CodeDenied            = "42501" // sepgsql: the transition is not allowed
)

// Labels are the SELinux labels the installed objects must carry.
type Labels struct {
	// Switch labels the trusted procedure sepgadm.tag_switch.
	Switch string
	// Secret labels the credential table and each of its columns.
	Secret string
}

// DefaultLabels are the labels that match the policy module in policy/.
func DefaultLabels() Labels {
	return Labels{
		Switch: "system_u:object_r:sepgadm_switch_exec_t:s0",
		Secret: "system_u:object_r:sepgadm_secret_t:s0",
	}
}

// Tag switches the session on conn to context (nil: back to the peer label) and
// returns the label sepgsql now reports for the session. Run it outside any
// transaction. Errors never contain the token.
func Tag(ctx context.Context, conn *pgx.Conn, token string, context *string) (string, error) {
	var got *string
	err := conn.QueryRow(ctx, TagSQL, token, context).Scan(&got)
	if err != nil {
		return "", fmt.Errorf("switch session label: %w", err)
	}
	if got == nil {
		return "", errors.New("switch session label: sepgsql reported no label")
	}
	return *got, nil
}

// TokenBytes is the number of random bytes in a credential token.
const TokenBytes = 32

// NewToken makes a credential token: TokenBytes random bytes, base64url without padding.
func NewToken() (string, error) {
	b := make([]byte, TokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make credential token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Digest is what the database stores of a token: SHA-256 of its UTF-8 bytes, in hex.
func Digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// StoreDigest sets the credential digest in the database of tx (one row, replaced).
func StoreDigest(ctx context.Context, tx pgx.Tx, digest string) error {
	_, err := tx.Exec(ctx, `INSERT INTO sepgadm.credential (singleton, digest, rotated_at)
		VALUES (true, $1, now())
		ON CONFLICT (singleton) DO UPDATE SET digest = EXCLUDED.digest, rotated_at = EXCLUDED.rotated_at`, digest)
	if err != nil {
		return fmt.Errorf("store credential digest: %w", err)
	}
	return nil
}

// Sepgsql describes sepgsql on a server, as seen by the connected session.
type Sepgsql struct {
	// Preloaded: sepgsql is in shared_preload_libraries.
	Preloaded bool
	// Installed: sepgsql.sql's functions exist in this database.
	Installed bool
	// Label is sepgsql_getcon() (nil when SELinux is off or sepgsql is not installed).
	Label *string
	// PermissiveGUC is sepgsql.permissive (on: this session only logs denials).
	PermissiveGUC bool
}

// Enabled reports whether sepgsql is making decisions for this session.
func (s Sepgsql) Enabled() bool { return s.Preloaded && s.Installed && s.Label != nil }

// InspectSepgsql reads sepgsql's state from the connected session.
func InspectSepgsql(ctx context.Context, conn *pgx.Conn) (Sepgsql, error) {
	var s Sepgsql
	var libs, permissive *string
	err := conn.QueryRow(ctx, `SELECT current_setting('shared_preload_libraries'),
		to_regprocedure('pg_catalog.sepgsql_getcon()') IS NOT NULL,
		current_setting('sepgsql.permissive', true)`).Scan(&libs, &s.Installed, &permissive)
	if err != nil {
		return s, fmt.Errorf("inspect sepgsql: %w", err)
	}
	if libs != nil {
		for _, l := range strings.Split(*libs, ",") {
			if strings.Trim(strings.TrimSpace(l), `"`) == "sepgsql" {
				s.Preloaded = true
			}
		}
	}
	s.PermissiveGUC = permissive != nil && *permissive == "on"
	if s.Preloaded && s.Installed {
		if err := conn.QueryRow(ctx, "SELECT pg_catalog.sepgsql_getcon()").Scan(&s.Label); err != nil {
			return s, fmt.Errorf("sepgsql_getcon(): %w", err)
		}
	}
	return s, nil
}

// LabelCheck is one installed object's label, wanted and found.
type LabelCheck struct {
	Object string // as SECURITY LABEL names it, e.g. "COLUMN sepgadm.credential.digest"
	Want   string
	Got    string // "" when unlabelled
}

// OK reports whether the object carries the wanted label.
func (c LabelCheck) OK() bool { return c.Got == c.Want }

// CheckLabels reads the labels of the trusted procedure, the credential table and its
// user columns.
func CheckLabels(ctx context.Context, conn *pgx.Conn, want Labels) ([]LabelCheck, error) {
	targets, err := labelTargets(ctx, conn, want)
	if err != nil {
		return nil, err
	}
	checks := make([]LabelCheck, 0, len(targets))
	for _, tg := range targets {
		var got *string
		err := conn.QueryRow(ctx, `SELECT label FROM pg_catalog.pg_seclabel
			WHERE provider = 'selinux' AND classoid = $1::regclass AND objoid = $2 AND objsubid = $3`,
			tg.catalog, tg.oid, tg.subid).Scan(&got)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("read label of %s: %w", tg.object, err)
		}
		c := LabelCheck{Object: tg.object, Want: tg.label}
		if got != nil {
			c.Got = *got
		}
		checks = append(checks, c)
	}
	return checks, nil
}

// ApplyLabels labels the installed objects in one transaction. It needs sepgsql on.
func ApplyLabels(ctx context.Context, conn *pgx.Conn, want Labels) error {
	targets, err := labelTargets(ctx, conn, want)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, tg := range targets {
			sql := "SECURITY LABEL FOR selinux ON " + tg.object + " IS " + quoteLiteral(tg.label)
			if _, err := tx.Exec(ctx, sql); err != nil {
				return fmt.Errorf("label %s %s: %w", tg.object, tg.label, err)
			}
		}
		return nil
	})
}

type labelTarget struct {
	object  string // SECURITY LABEL's object clause
	label   string
	catalog string // pg_seclabel.classoid as regclass text
	oid     uint32
	subid   int32
}

func labelTargets(ctx context.Context, conn *pgx.Conn, want Labels) ([]labelTarget, error) {
	var fn, table *uint32
	if err := conn.QueryRow(ctx, "SELECT to_regprocedure($1)::oid, to_regclass($2)::oid",
		SwitchFunction, CredentialTable).Scan(&fn, &table); err != nil {
		return nil, fmt.Errorf("find installed objects: %w", err)
	}
	if fn == nil || table == nil {
		return nil, errors.New("sepgadm's objects are not installed in this database: run sepgadm install")
	}
	targets := []labelTarget{
		{object: "FUNCTION " + SwitchFunction, label: want.Switch, catalog: "pg_proc", oid: *fn},
		{object: "TABLE " + CredentialTable, label: want.Secret, catalog: "pg_class", oid: *table},
	}
	rows, err := conn.Query(ctx, `SELECT quote_ident(attname), attnum FROM pg_catalog.pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, *table)
	if err != nil {
		return nil, fmt.Errorf("list credential columns: %w", err)
	}
	var name string
	var num int32
	_, err = pgx.ForEachRow(rows, []any{&name, &num}, func() error {
		targets = append(targets, labelTarget{
			object:  "COLUMN " + CredentialTable + "." + name,
			label:   want.Secret,
			catalog: "pg_class", oid: *table, subid: num,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list credential columns: %w", err)
	}
	return targets, nil
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings on).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// SQLState returns the SQLSTATE carried by err, or "".
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// ProtectRole makes the server never log the bind parameters of role's sessions, so
// that the credential, which the proxy sends as one, never reaches the server log
// whatever log_statement, log_min_duration_statement or the sampling settings say. Only
// a superuser can set or override these settings; the proxy refuses to tag on a session
// where they are not 0. Run it for every role the proxy logs in to PostgreSQL as.
func ProtectRole(ctx context.Context, conn *pgx.Conn, role string) error {
	ident := pgx.Identifier{role}.Sanitize()
	for _, setting := range []string{"log_parameter_max_length", "log_parameter_max_length_on_error"} {
		if _, err := conn.Exec(ctx, "ALTER ROLE "+ident+" SET "+setting+" = 0"); err != nil {
			return fmt.Errorf("protect role %s from logging its bind parameters: %w", role, err)
		}
	}
	return nil
}
