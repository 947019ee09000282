package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/sepgadm/sepgadm/proxy"
)

func proxyCommand() *cli.Command {
	return &cli.Command{
		Name:  "proxy",
		Usage: "run the SELinux-aware connection pooler",
		Description: "Runs until stopped. Signals: SIGHUP reloads the configuration, rules, userlist and\n" +
			"credential without dropping clients; SIGTERM drains (stops accepting, lets clients\n" +
			"finish up to shutdown_timeout); SIGINT stops now. See examples/sepgadm.toml.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "configuration file (TOML)", Required: true},
			&cli.BoolFlag{Name: "check", Usage: "validate the configuration and exit"},
		},
		Before: noArgs,
		Action: runProxy,
	}
}

func runProxy(c *cli.Context) error {
	cfg, err := proxy.LoadConfig(c.String("config"))
	if err != nil {
		return usageError{err}
	}
	if c.Bool("check") {
		_, err := c.App.Writer.Write([]byte("configuration ok: " + c.String("config") + "\n"))
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return usageErrorf("%s: log_level: %w", c.String("config"), err)
	}
	logger := slog.New(slog.NewJSONHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
	p, err := proxy.New(cfg, logger)
	if err != nil {
		return usageError{err}
	}
	ctx, stop := context.WithCancel(c.Context)
	defer stop()
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sig:
				switch s {
				case syscall.SIGHUP:
					if err := p.Reload(); err != nil {
						logger.Error("reload failed; keeping the running configuration", "error", err)
					}
				case syscall.SIGTERM:
					go p.Drain(cfg.ShutdownTimeout.Duration)
				}
			}
		}
	}()
	return p.Run(ctx)
}
