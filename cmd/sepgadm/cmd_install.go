package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/sepgadm/sepgadm/trusted"
)

func installCommand() *cli.Command {
	return &cli.Command{
		Name:  "install",
		Usage: "install sepgadm's schema and tagging functions, and label them when sepgsql is on",
		Description: "Applies pending migrations (one transaction per database), then, when sepgsql is\n" +
			"enabled, labels sepgadm.tag_switch as the trusted procedure and the credential\n" +
			"table and its columns as secret. Load the policy module (trusted/policy) first.\n" +
			"Without sepgsql it installs the SQL only and says so. Set the credential next\n" +
			"with sepgadm credential rotate.\n\n" +
			"--proxy-role ROLE (repeatable) sets log_parameter_max_length and\n" +
			"log_parameter_max_length_on_error to 0 for each role the proxy logs in to\n" +
			"PostgreSQL as: the switch call carries the credential as a bind parameter, and the\n" +
			"proxy refuses to send it on a session that could log one.\n\n" +
			"Example:\n  sepgadm install -d \"dbname=app\" --proxy-role app --proxy-role reporting",
		Flags: []cli.Flag{dsnFlag(), allDBsFlag(), &cli.StringSliceFlag{
			Name:  "proxy-role",
			Usage: "a role the proxy logs in as: never log its bind parameters (repeatable)",
		}},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			protected := false
			return forEachDatabase(c.Context, c.String("dsn"), c.Bool("all-dbs"), func(ctx context.Context, db string, conn *pgx.Conn) error {
				if err := migrateUp(ctx, c, db, conn); err != nil {
					return err
				}
				if !protected { // role settings are cluster-wide: once is enough
					for _, role := range c.StringSlice("proxy-role") {
						if err := trusted.ProtectRole(ctx, conn, role); err != nil {
							return err
						}
						if _, err := fmt.Fprintf(c.App.Writer, "role %s: bind parameters are never logged (log_parameter_max_length = 0)\n", role); err != nil {
							return err
						}
					}
					protected = true
				}
				sg, err := trusted.InspectSepgsql(ctx, conn)
				if err != nil {
					return err
				}
				if !sg.Enabled() {
					_, err := fmt.Fprintf(c.App.Writer, "%s: sepgsql is not enabled on this server (%s): installed the SQL only, no labels applied\n", db, sepgsqlOffReason(sg))
					return err
				}
				labels := trusted.DefaultLabels()
				if err := trusted.ApplyLabels(ctx, conn, labels); err != nil {
					return fmt.Errorf("%w (is the sepgadm policy module loaded? semodule -l | grep sepgadm)", err)
				}
				_, err = fmt.Fprintf(c.App.Writer, "%s: labelled %s as %s and %s with its columns as %s\n",
					db, trusted.SwitchFunction, labels.Switch, trusted.CredentialTable, labels.Secret)
				return err
			})
		},
	}
}

// sepgsqlOffReason says in a few words why sepgsql makes no decisions.
func sepgsqlOffReason(s trusted.Sepgsql) string {
	switch {
	case !s.Preloaded:
		return "sepgsql is not in shared_preload_libraries"
	case !s.Installed:
		return "sepgsql.sql is not installed in this database"
	case s.Label == nil:
		return "SELinux is disabled on the server's host: sepgsql_getcon() is NULL"
	default:
		return "enabled"
	}
}
