// Command sepgadm is a SELinux-aware connection pooler, label manager and auditor for
// PostgreSQL clusters that run sepgsql. Everything but process wiring lives in run.
package main

import (
	"context"
	"os"
	"os/signal"
)

func main() {
	// SIGINT cancels whatever runs; the proxy handles SIGTERM (drain) and SIGHUP itself.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
