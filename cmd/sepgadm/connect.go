package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"
)

// dsnFlag is the -d/--dsn flag every command that talks to PostgreSQL takes.
func dsnFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "dsn",
		Aliases: []string{"d"},
		Usage:   "libpq connection string or URL (default: the PG* environment variables, as psql)",
	}
}

// allDBsFlag is --all-dbs: run against every database that accepts connections.
func allDBsFlag() cli.Flag {
	return &cli.BoolFlag{
		Name:  "all-dbs",
		Usage: "every database of the cluster that the user may connect to",
	}
}

// connect opens a connection from a DSN; empty means the PG* environment, as libpq.
// Errors never carry the password: pgx redacts it from connection-string errors.
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, usageErrorf("parse connection string: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return conn, nil
}

// connectableDatabases lists the databases that accept connections and that the
// connected user holds CONNECT on, in name order (template0 never qualifies).
func connectableDatabases(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_catalog.pg_database
		WHERE datallowconn AND has_database_privilege(oid, 'CONNECT') ORDER BY datname`)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return names, nil
}

// forEachDatabase calls fn with a connection to the DSN's database or, with allDBs,
// to every connectable database in turn (same server, user and options).
func forEachDatabase(ctx context.Context, dsn string, allDBs bool, fn func(ctx context.Context, db string, conn *pgx.Conn) error) error {
	conn, err := connect(ctx, dsn)
	if err != nil {
		return err
	}
	if !allDBs {
		defer conn.Close(ctx)
		return fn(ctx, conn.Config().Database, conn)
	}
	dbs, err := connectableDatabases(ctx, conn)
	base := conn.Config().Copy()
	conn.Close(ctx)
	if err != nil {
		return err
	}
	for _, db := range dbs {
		cfg := base.Copy()
		cfg.Database = db
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return fmt.Errorf("connect to database %s: %w", db, err)
		}
		err = fn(ctx, db, c)
		c.Close(ctx)
		if err != nil {
			return fmt.Errorf("database %s: %w", db, err)
		}
	}
	return nil
}
