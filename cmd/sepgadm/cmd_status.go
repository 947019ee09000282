package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/selinux/go-selinux"
	"github.com/urfave/cli/v2"

	"github.com/sepgadm/sepgadm/migrations"
	"github.com/sepgadm/sepgadm/trusted"
)

// check is one line of `sepgadm status`.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

type dbStatus struct {
	Database string  `json:"database"`
	Ready    bool    `json:"ready"`
	Checks   []check `json:"checks"`
}

type statusReport struct {
	Ready     bool       `json:"ready"`
	Databases []dbStatus `json:"databases"`
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "report whether sepgsql and sepgadm's tagging are ready on a server; exit 0 only when they are",
		Description: "Checks, per database: sepgsql preloaded; sepgsql.sql installed; SELinux on and\n" +
			"enforcing for this session (the kernel's mode is read when the server is on this\n" +
			"host, over its Unix socket, and sepgsql.permissive is honoured); sepgadm's\n" +
			"migrations applied; the credential set; the trusted procedure and the credential\n" +
			"table and its columns labelled as the policy module expects.",
		Flags: []cli.Flag{
			dsnFlag(), allDBsFlag(),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table or json"},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			format := c.String("output")
			if format != "table" && format != "json" {
				return usageErrorf("--output %q: want table or json", format)
			}
			report := statusReport{Ready: true}
			err := forEachDatabase(c.Context, c.String("dsn"), c.Bool("all-dbs"), func(ctx context.Context, db string, conn *pgx.Conn) error {
				st, err := databaseStatus(ctx, db, conn)
				if err != nil {
					return err
				}
				report.Ready = report.Ready && st.Ready
				report.Databases = append(report.Databases, st)
				return nil
			})
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				err = enc.Encode(report)
			} else {
				err = writeStatusTable(c, report)
			}
			if err != nil {
				return err
			}
			if !report.Ready {
				return checkFailed{"not ready"}
			}
			return nil
		},
	}
}

func databaseStatus(ctx context.Context, db string, conn *pgx.Conn) (dbStatus, error) {
	st := dbStatus{Database: db}
	add := func(name string, ok bool, detail string) {
		st.Checks = append(st.Checks, check{Name: name, OK: ok, Detail: detail})
	}
	sg, err := trusted.InspectSepgsql(ctx, conn)
	if err != nil {
		return st, err
	}
	add("sepgsql preloaded", sg.Preloaded, map[bool]string{true: "in shared_preload_libraries", false: "add sepgsql to shared_preload_libraries and restart"}[sg.Preloaded])
	add("sepgsql.sql installed", sg.Installed, map[bool]string{true: "sepgsql functions present", false: "run sepgsql.sql in single-user mode for this database"}[sg.Installed])
	switch {
	case !sg.Enabled():
		add("SELinux enforcing", false, sepgsqlOffReason(sg))
	case sg.PermissiveGUC:
		add("SELinux enforcing", false, "sepgsql.permissive is on: denials are only logged; session label "+*sg.Label)
	default:
		mode, detail := hostEnforceMode(conn)
		add("SELinux enforcing", mode != "Permissive", detail+"; session label "+*sg.Label)
	}

	ms, err := migrations.Check(ctx, conn)
	if err != nil {
		return st, err
	}
	if ms.UpToDate() {
		add("migrations", true, fmt.Sprintf("version %d of %d", ms.Current, ms.Latest))
	} else {
		add("migrations", false, fmt.Sprintf("version %d of %d: run sepgadm install", ms.Current, ms.Latest))
	}

	if ms.Current == 0 {
		add("credential", false, "not installed")
		add("labels", false, "not installed")
	} else {
		set, detail := credentialSet(ctx, conn)
		add("credential", set, detail)
		checks, err := trusted.CheckLabels(ctx, conn, trusted.DefaultLabels())
		if err != nil {
			return st, err
		}
		for _, lc := range checks {
			got := lc.Got
			if got == "" {
				got = "unlabelled"
			}
			detail := got
			if !lc.OK() {
				detail = got + ", want " + lc.Want + ": run sepgadm install with the policy module loaded"
			}
			add("label "+strings.ToLower(lc.Object), lc.OK(), detail)
		}
	}
	st.Ready = true
	for _, c := range st.Checks {
		st.Ready = st.Ready && c.OK
	}
	return st, nil
}

// hostEnforceMode reads the kernel's SELinux mode when the server is on this host (a
// Unix-socket connection); sepgsql takes the mode from the same kernel at login.
func hostEnforceMode(conn *pgx.Conn) (mode, detail string) {
	if !strings.HasPrefix(conn.Config().Host, "/") {
		return "Unknown", "server is remote: its host's SELinux mode cannot be read from here"
	}
	switch selinux.EnforceMode() {
	case selinux.Enforcing:
		return "Enforcing", "enforcing (this host's kernel)"
	case selinux.Permissive:
		return "Permissive", "permissive (this host's kernel): denials are only logged"
	default:
		return "Unknown", "this host's SELinux mode is unreadable, yet the server reports a label"
	}
}

func credentialSet(ctx context.Context, conn *pgx.Conn) (bool, string) {
	var rotated *string
	err := conn.QueryRow(ctx, "SELECT max(rotated_at)::text FROM "+trusted.CredentialTable).Scan(&rotated)
	switch {
	case trusted.SQLState(err) == trusted.CodeDenied:
		return false, "cannot tell: reading " + trusted.CredentialTable + " is denied to this session"
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return false, "cannot tell: " + err.Error()
	case rotated == nil:
		return false, "not set: run sepgadm credential rotate"
	default:
		return true, "set, rotated " + *rotated
	}
}

func writeStatusTable(c *cli.Context, r statusReport) error {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tCHECK\tSTATE\tDETAIL")
	for _, db := range r.Databases {
		for _, ch := range db.Checks {
			state := "ok"
			if !ch.OK {
				state = "FAIL"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", db.Database, ch.Name, state, ch.Detail)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "ready"
	if !r.Ready {
		verdict = "NOT READY"
	}
	_, err := fmt.Fprintln(c.App.Writer, verdict)
	return err
}
