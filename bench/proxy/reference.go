package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/sepgadm/sepgadm/bench/refpool"
	"github.com/sepgadm/sepgadm/internal/pgtest"
)

// serveReference is "benchproxy reference": the reference pooler in a process of its
// own, so that its CPU time is counted apart; it runs until killed.
func serveReference(args []string) error {
	fs := flag.NewFlagSet("reference", flag.ContinueOnError)
	var cfg refpool.Config
	fs.StringVar(&cfg.Listen, "listen", "", "host:port for clients")
	fs.StringVar(&cfg.Socket, "socket", "", "PostgreSQL's Unix socket (.s.PGSQL.PORT)")
	fs.StringVar(&cfg.User, "user", pgtest.Superuser, "role for the server connections")
	fs.StringVar(&cfg.Database, "dbname", "postgres", "database")
	fs.IntVar(&cfg.PoolSize, "pool", poolSize, "server connections")
	fs.IntVar(&cfg.Loops, "loops", 1, "event loops")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return refpool.Serve(ctx, cfg, nil)
}

// startReference starts the reference pooler with loops event loops in front of c.
func startReference(c *pgtest.Cluster, loops int) (int, *exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, nil, err
	}
	port := freePort()
	cmd := exec.Command(self, "reference", "-listen", "127.0.0.1:"+strconv.Itoa(port),
		"-socket", filepath.Join(c.SocketDir, fmt.Sprintf(".s.PGSQL.%d", c.Port)),
		"-pool", strconv.Itoa(poolSize), "-loops", strconv.Itoa(loops))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start the reference pooler: %w", err)
	}
	return port, cmd, nil
}
