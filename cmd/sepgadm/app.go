package main

import (
	"context"
	"io"

	"github.com/urfave/cli/v2"
)

// run is sepgadm's one entry point: it parses args (args[0] is the program name), runs
// the command with the given streams and returns the exit status. Tests call it in
// process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	return exitCode(app.RunContext(ctx, args), stderr)
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "sepgadm",
		Usage: "SELinux-aware pooling, label management and auditing for PostgreSQL with sepgsql",
		Description: "sepgadm runs PostgreSQL clients under their own SELinux context behind a pooler,\n" +
			"manages sepgsql object labels, and reads sepgsql and kernel denials together.\n\n" +
			"Commands that talk to PostgreSQL take -d/--dsn (a libpq connection string or URL);\n" +
			"without it the standard PG* environment variables apply, as with psql.\n\n" +
			exitStatusHelp(),
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors are printed and mapped to exit statuses by run, never by os.Exit here.
		ExitErrHandler:       func(*cli.Context, error) {},
		HideHelpCommand:      true,
		EnableBashCompletion: false,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErrorf("unknown command %q; see sepgadm --help", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands: []*cli.Command{
			proxyCommand(),
			installCommand(),
			migrateCommand(),
			credentialCommand(),
			statusCommand(),
			auditCommand(),
			audit2allowCommand(),
			labelsCommand(),
			restoreconCommand(),
			versionCommand(),
		},
	}
	for _, cmd := range app.Commands {
		prepareCommand(cmd)
	}
	return app
}

// prepareCommand makes flag errors of every (sub)command exit with status 2 and ends
// every command's help with the EXIT STATUS section.
func prepareCommand(cmd *cli.Command) {
	cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return usageError{err}
	}
	if cmd.Description != "" {
		cmd.Description += "\n\n"
	}
	cmd.Description += exitStatusHelp()
	for _, sub := range cmd.Subcommands {
		prepareCommand(sub)
	}
}

// noArgs rejects stray positional arguments.
func noArgs(c *cli.Context) error {
	if c.Args().Present() {
		return usageErrorf("%s takes no arguments, got %q", c.Command.FullName(), c.Args().Slice())
	}
	return nil
}
