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

// targetDatabases resolves the databases a command acts on: the DSN's own database or,
// with allDBs, every connectable one. cfg connects to any of them with connectTo.
func targetDatabases(ctx context.Context, dsn string, allDBs bool) (dbs []string, cfg *pgx.ConnConfig, err error) {
	conn, err := connect(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close(ctx)
	cfg = conn.Config().Copy()
	if !allDBs {
		return []string{cfg.Database}, cfg, nil
	}
	dbs, err = connectableDatabases(ctx, conn)
	return dbs, cfg, err
}

// connectTo connects to database db with the server, user and options of cfg.
func connectTo(ctx context.Context, cfg *pgx.ConnConfig, db string) (*pgx.Conn, error) {
	c := cfg.Copy()
	c.Database = db
	conn, err := pgx.ConnectConfig(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("connect to database %s: %w", db, err)
	}
	return conn, nil
}

// forEachDatabase calls fn with a connection to each target database in turn (see
// targetDatabases); an error stops the walk and names the database.
func forEachDatabase(ctx context.Context, dsn string, allDBs bool, fn func(ctx context.Context, db string, conn *pgx.Conn) error) error {
	dbs, cfg, err := targetDatabases(ctx, dsn, allDBs)
	if err != nil {
		return err
	}
	return eachDatabase(ctx, cfg, dbs, fn)
}

// eachDatabase calls fn with a connection to each of dbs in turn, made from cfg; an
// error stops the walk and names the database.
func eachDatabase(ctx context.Context, cfg *pgx.ConnConfig, dbs []string, fn func(ctx context.Context, db string, conn *pgx.Conn) error) error {
	for _, db := range dbs {
		conn, err := connectTo(ctx, cfg, db)
		if err != nil {
			return err
		}
		err = fn(ctx, db, conn)
		conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("database %s: %w", db, err)
		}
	}
	return nil
}
