package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/urfave/cli/v2"

	"github.com/sepgadm/sepgadm/labels"
)

func restoreconCommand() *cli.Command {
	return &cli.Command{
		Name:  "restorecon",
		Usage: "run sepgsql_restorecon in the server, or dry-run it and print what it would relabel",
		Description: "sepgsql_restorecon relabels every database of the cluster and, in each target\n" +
			"database, its schemas, tables, sequences, views, columns and functions from a spec\n" +
			"file (default: the server's /etc/selinux/<policy>/contexts/sepgsql_contexts).\n" +
			"--specfile is a path on the *server*, opened by the PostgreSQL server process\n" +
			"(postgresql_t): keep it under /var/lib/postgresql, not in /tmp.\n\n" +
			"--dry-run runs it inside BEGIN ... ROLLBACK and prints every label it would change\n" +
			"in the \"Would relabel\" lines of labels plan; -v prints them for a real run too.\n" +
			"The server's \"no initial label assigned\" warnings are shown and counted.",
		Flags: []cli.Flag{
			dsnFlag(), dbFlag(), allDBsFlag(),
			&cli.StringFlag{Name: "specfile", Usage: "spec file `PATH` on the server (default: the system's sepgsql_contexts)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "roll back and print what would change"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print every relabel"},
			&cli.BoolFlag{Name: "quiet-warnings", Usage: "count the server's skip warnings without printing each"},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			dbs, cfg, err := labelDatabases(c)
			if err != nil {
				return err
			}
			var mu sync.Mutex
			var skipped, otherNotices int
			cfg = cfg.Copy()
			cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
				mu.Lock()
				defer mu.Unlock()
				if _, ok := labels.SkipWarningKey(n.Message); ok {
					skipped++
					if c.Bool("quiet-warnings") {
						return
					}
				} else {
					otherNotices++
				}
				fmt.Fprintf(c.App.ErrWriter, "%s: %s\n", n.Severity, n.Message)
			}
			seen := dedupe{}
			total := 0
			dry := c.Bool("dry-run")
			err = eachDatabase(c.Context, cfg, dbs, func(ctx context.Context, db string, conn *pgx.Conn) error {
				if err := labels.CheckEnabled(ctx, conn); err != nil {
					return err
				}
				changes, err := labels.Restorecon(ctx, conn, c.String("specfile"), dry)
				if err != nil {
					return err
				}
				changes = seen.changes(changes)
				total += len(changes)
				for _, ch := range changes {
					switch {
					case dry:
						fmt.Fprintln(c.App.Writer, ch.String())
					case c.Bool("verbose"):
						fmt.Fprintf(c.App.Writer, "Relabeled %s %s from %s to %s\n", ch.Object.Class, ch.Object.Key, ch.Object.DisplayLabel(), ch.To)
					}
				}
				return nil
			})
			verb := "relabeled"
			if dry {
				verb = "would be relabeled (rolled back)"
			}
			mu.Lock()
			fmt.Fprintf(c.App.ErrWriter, "restorecon: %d objects %s; %d skipped with no initial label assigned\n", total, verb, skipped)
			mu.Unlock()
			return err
		},
	}
}
