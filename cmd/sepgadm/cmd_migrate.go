package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/sepgadm/sepgadm/migrations"
)

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "show or apply sepgadm's schema migrations (schema sepgadm, tern version table)",
		Subcommands: []*cli.Command{
			{
				Name:   "status",
				Usage:  "show each database's migration version; exit 1 when any is behind",
				Flags:  []cli.Flag{dsnFlag(), allDBsFlag()},
				Before: noArgs,
				Action: func(c *cli.Context) error {
					behind := 0
					err := forEachDatabase(c.Context, c.String("dsn"), c.Bool("all-dbs"), func(ctx context.Context, db string, conn *pgx.Conn) error {
						st, err := migrations.Check(ctx, conn)
						if err != nil {
							return err
						}
						state := "up to date"
						if !st.UpToDate() {
							behind++
							state = fmt.Sprintf("pending %v", st.Pending)
						}
						_, err = fmt.Fprintf(c.App.Writer, "%s: version %d of %d, %s\n", db, st.Current, st.Latest, state)
						return err
					})
					if err != nil {
						return err
					}
					if behind > 0 {
						return checkFailed{fmt.Sprintf("%d database(s) have pending migrations; run sepgadm migrate up", behind)}
					}
					return nil
				},
			},
			{
				Name:   "up",
				Usage:  "apply pending migrations, all of them or none, in one transaction per database",
				Flags:  []cli.Flag{dsnFlag(), allDBsFlag()},
				Before: noArgs,
				Action: func(c *cli.Context) error {
					return forEachDatabase(c.Context, c.String("dsn"), c.Bool("all-dbs"), func(ctx context.Context, db string, conn *pgx.Conn) error {
						return migrateUp(ctx, c, db, conn)
					})
				},
			},
		},
	}
}

func migrateUp(ctx context.Context, c *cli.Context, db string, conn *pgx.Conn) error {
	applied, err := migrations.Up(ctx, conn)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		_, err = fmt.Fprintf(c.App.Writer, "%s: migrations up to date\n", db)
	} else {
		_, err = fmt.Fprintf(c.App.Writer, "%s: applied %v\n", db, applied)
	}
	return err
}
