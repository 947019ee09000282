// Command sepgadm is a SELinux-aware connection pooler, label manager and auditor for
// PostgreSQL clusters that run sepgsql. Everything but process wiring lives in run.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
