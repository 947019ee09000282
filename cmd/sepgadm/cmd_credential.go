package main

import (
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/sepgadm/sepgadm/trusted"
)

func credentialCommand() *cli.Command {
	return &cli.Command{
		Name:  "credential",
		Usage: "manage the tagging credential that only the proxy holds",
		Subcommands: []*cli.Command{{
			Name:  "rotate",
			Usage: "make a new random token, write it to --out (mode 0600), store its digest",
			Description: "Makes a " + fmt.Sprint(trusted.TokenBytes) + "-byte random token and stores only its SHA-256 digest in\n" +
				"sepgadm.credential of every target database. The token goes to the --out file\n" +
				"and nowhere else: it is never printed, logged or put on a command line.\n" +
				"Every database is updated in its own transaction; all are prepared before the\n" +
				"file is written and committed after, so a failure before that changes nothing.",
			Flags: []cli.Flag{
				dsnFlag(), allDBsFlag(),
				&cli.StringFlag{Name: "out", Usage: "file to write the token to (mode 0600; an existing file readable by others is refused)", Required: true},
			},
			Before: noArgs,
			Action: rotateCredential,
		}},
	}
}

func rotateCredential(c *cli.Context) error {
	ctx := c.Context
	out := c.String("out")
	token, err := trusted.NewToken()
	if err != nil {
		return err
	}
	digest := trusted.Digest(token)

	type pending struct {
		db   string
		conn *pgx.Conn
		tx   pgx.Tx
	}
	var txs []pending
	defer func() {
		for _, p := range txs {
			_ = p.tx.Rollback(ctx) // no-op after commit
			p.conn.Close(ctx)
		}
	}()
	dbs, cfg, err := targetDatabases(ctx, c.String("dsn"), c.Bool("all-dbs"))
	if err != nil {
		return err
	}
	for _, db := range dbs {
		conn, err := connectTo(ctx, cfg, db)
		if err != nil {
			return err
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			conn.Close(ctx)
			return fmt.Errorf("database %s: begin: %w", db, err)
		}
		txs = append(txs, pending{db, conn, tx})
		var installed bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", trusted.CredentialTable).Scan(&installed); err != nil {
			return fmt.Errorf("database %s: %w", db, err)
		}
		if !installed {
			return usageErrorf("database %s: sepgadm is not installed there (no %s): run sepgadm install first; nothing was changed", db, trusted.CredentialTable)
		}
		if err := trusted.StoreDigest(ctx, tx, digest); err != nil {
			return fmt.Errorf("database %s: %w; nothing was changed", db, err)
		}
	}
	if err := trusted.WriteTokenFile(out, token); err != nil {
		return usageErrorf("%w; nothing was changed", err)
	}
	var committed []string
	for _, p := range txs {
		if err := p.tx.Commit(ctx); err != nil {
			return fmt.Errorf("database %s: commit: %w (the new token is in %s; committed so far: %v; run rotate again)", p.db, err, out, committed)
		}
		committed = append(committed, p.db)
	}
	_, err = fmt.Fprintf(c.App.Writer, "credential rotated in %d database(s) %v; token written to %s (mode 0600)\n", len(committed), committed, out)
	return err
}
