package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sepgadm/sepgadm/audit"
)

// auditInputFlags name the logs to read; shared by audit, audit review and audit2allow.
func auditInputFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "pglog", Usage: "PostgreSQL log `FILE` (stderr, csvlog or jsonlog; - for stdin; gzip ok); repeatable"},
		&cli.StringSliceFlag{Name: "auditlog", Usage: "Linux audit log `FILE` (- for stdin; gzip ok); repeatable"},
		&cli.StringFlag{Name: "log-line-prefix", Usage: "log_line_prefix of stderr PostgreSQL logs (default: detected)"},
		&cli.StringFlag{Name: "pg-timezone", Usage: "IANA `ZONE` for PostgreSQL timestamps whose zone is an abbreviation (default UTC)"},
		&cli.StringFlag{Name: "db-node", Usage: "node `NAME` given to database events (the audit log names its own)"},
		&cli.BoolFlag{Name: "strict", Usage: "stop at the first malformed line (exit 2)"},
	}
}

func auditFilterFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "since", Usage: "events at or after `TIME` (RFC 3339 or " + strings.Join(audit.TimeKeywords, ", ") + ")"},
		&cli.StringFlag{Name: "until", Usage: "events at or before `TIME` (as --since)"},
		&cli.StringSliceFlag{Name: "result", Usage: "denied, allowed or granted; repeatable or comma-separated"},
		&cli.StringFlag{Name: "scontext", Usage: "source context or type (substring unless --exact)"},
		&cli.StringFlag{Name: "tcontext", Usage: "target context or type (substring unless --exact)"},
		&cli.BoolFlag{Name: "exact", Usage: "--scontext/--tcontext must equal the context or its type"},
		&cli.StringSliceFlag{Name: "class", Usage: "object class (db_table, file, ...); repeatable"},
		&cli.StringSliceFlag{Name: "perm", Usage: "permission (any of); repeatable"},
		&cli.StringFlag{Name: "source", Usage: "db or os"},
		&cli.StringFlag{Name: "node", Usage: "node name"},
	}
}

func auditCommand() *cli.Command {
	return &cli.Command{
		Name:      "audit",
		Usage:     "read sepgsql's denials and the OS audit log together; filter like ausearch",
		ArgsUsage: "[FILES…]",
		Description: "Reads sepgsql's audit lines from PostgreSQL logs (stderr with any log_line_prefix,\n" +
			"csvlog, jsonlog) and SELinux records from Linux audit logs (raw or ENRICHED; AVC,\n" +
			"USER_AVC, SELINUX_ERR, MAC_POLICY_LOAD, MAC_STATUS, MAC_CONFIG_CHANGE, with SYSCALL\n" +
			"joined for exe/comm). FILES are detected by content; gzip is read; - is stdin. The\n" +
			"inputs are merged in time order. Output -o: text, json (JSON lines), csv (with a\n" +
			"header), summary (counts as aureport --avc), timeline (db and os merged, with policy\n" +
			"loads, enforce toggles and boolean changes shown between the decisions).\n" +
			"Malformed lines are counted and reported on stderr; --strict makes them fatal.",
		Flags: slices.Concat(auditInputFlags(), auditFilterFlags(), []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: strings.Join(audit.OutputFormats, ", ")},
		}),
		Action: func(c *cli.Context) error {
			out, err := audit.NewOutput(c.String("output"), c.App.Writer)
			if err != nil {
				return usageError{err}
			}
			// Records that are no SELinux decision pass through only in JSON.
			keepOther := c.String("output") == "json"
			return runAudit(c, keepOther, func(e *audit.Event) error { return out.Write(e) }, out.Close)
		},
		Subcommands: []*cli.Command{auditReviewCommand()},
	}
}

func audit2allowCommand() *cli.Command {
	return &cli.Command{
		Name:      "audit2allow",
		Usage:     "turn denials (db and os) into SELinux policy rules",
		ArgsUsage: "[FILES…]",
		Description: "Like audit2allow, from the denials the filters select in PostgreSQL and audit logs:\n" +
			"permissions merged per (source type, target type, class), self when source = target,\n" +
			"grouped by source type. -m NAME prints a module (module NAME 1.0; and its require\n" +
			"block) that checkmodule -M -m and semodule_package compile. --explain runs the\n" +
			"system's audit2why on the denials, database ones rewritten into the kernel's AVC form.",
		Flags: slices.Concat(auditInputFlags(), auditFilterFlags(), []cli.Flag{
			&cli.StringFlag{Name: "module", Aliases: []string{"m"}, Usage: "print a policy module `NAME`"},
			&cli.BoolFlag{Name: "dontaudit", Aliases: []string{"D"}, Usage: "write dontaudit rules instead of allow rules"},
			&cli.BoolFlag{Name: "explain", Usage: "explain each denial with audit2why"},
		}),
		Action: func(c *cli.Context) error {
			mod := c.String("module")
			if mod != "" && !moduleName.MatchString(mod) {
				return usageErrorf("--module %q: a module name is letters, digits and _ and starts with a letter", mod)
			}
			allow := audit.NewAllow()
			var denials []*audit.Event
			explain := c.Bool("explain")
			err := runAudit(c, false, func(e *audit.Event) error {
				if allow.Add(e) && explain {
					denials = append(denials, e)
				}
				return nil
			}, nil)
			if err != nil {
				return err
			}
			if explain {
				if err := audit.Explain(c.Context, denials, c.App.Writer); err != nil {
					if errors.Is(err, audit.ErrNoAudit2Why) {
						fmt.Fprintf(c.App.ErrWriter, "sepgadm: %v\n", err)
					} else {
						return err
					}
				}
			}
			if allow.Len() == 0 {
				fmt.Fprintln(c.App.ErrWriter, "sepgadm: no denials selected; no rules to write")
				return nil
			}
			return allow.Write(c.App.Writer, mod, c.Bool("dontaudit"))
		},
	}
}

var moduleName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// auditInput is one log to read.
type auditInput struct {
	path   string
	format audit.Format
}

func auditInputs(c *cli.Context) ([]auditInput, error) {
	var in []auditInput
	for _, p := range c.Args().Slice() {
		in = append(in, auditInput{p, audit.FormatAuto})
	}
	for _, p := range c.StringSlice("pglog") {
		in = append(in, auditInput{p, audit.FormatAuto})
	}
	for _, p := range c.StringSlice("auditlog") {
		in = append(in, auditInput{p, audit.FormatAudit})
	}
	if len(in) == 0 {
		return nil, usageErrorf("no input: give log FILES, --pglog FILE or --auditlog FILE (- reads stdin)")
	}
	stdin := 0
	for _, i := range in {
		if i.path == "-" {
			stdin++
		}
	}
	if stdin > 1 {
		return nil, usageErrorf("stdin (-) can be read only once")
	}
	return in, nil
}

func auditFilter(c *cli.Context, now time.Time) (*audit.Filter, error) {
	f := &audit.Filter{
		SContext: c.String("scontext"),
		TContext: c.String("tcontext"),
		Exact:    c.Bool("exact"),
		Classes:  splitList(c.StringSlice("class")),
		Perms:    splitList(c.StringSlice("perm")),
		Source:   c.String("source"),
		Node:     c.String("node"),
		Results:  splitList(c.StringSlice("result")),
	}
	for _, r := range f.Results {
		if r != audit.ResultDenied && r != audit.ResultAllowed && r != audit.ResultGranted {
			return nil, usageErrorf("--result %q: want denied, allowed or granted", r)
		}
	}
	if f.Source != "" && f.Source != audit.SourceDB && f.Source != audit.SourceOS {
		return nil, usageErrorf("--source %q: want db or os", f.Source)
	}
	for _, t := range []struct {
		flag string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := c.String(t.flag); v != "" {
			tm, err := audit.ParseTime(v, now)
			if err != nil {
				return nil, usageErrorf("--%s: %v", t.flag, err)
			}
			*t.dst = tm
		}
	}
	return f, nil
}

func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func auditOptions(c *cli.Context, f *audit.Filter, keepOther bool) (audit.Options, error) {
	opts := audit.Options{Node: c.String("db-node"), Strict: c.Bool("strict"), KeepOther: keepOther && !f.AccessOnly()}
	if p := c.String("log-line-prefix"); p != "" {
		pfx, err := audit.CompilePrefix(p)
		if err != nil {
			return opts, usageErrorf("--log-line-prefix: %v", err)
		}
		opts.Prefix = pfx
	}
	if z := c.String("pg-timezone"); z != "" {
		loc, err := time.LoadLocation(z)
		if err != nil {
			return opts, usageErrorf("--pg-timezone %q: %v", z, err)
		}
		opts.PGLocation = loc
	}
	return opts, nil
}

// openAudit opens every input and merges them in time order.
func openAudit(c *cli.Context, keepOther bool) (audit.Reader, *audit.Filter, error) {
	inputs, err := auditInputs(c)
	if err != nil {
		return nil, nil, err
	}
	f, err := auditFilter(c, time.Now())
	if err != nil {
		return nil, nil, err
	}
	opts, err := auditOptions(c, f, keepOther)
	if err != nil {
		return nil, nil, err
	}
	var rs []audit.Reader
	closeAll := func() {
		for _, r := range rs {
			r.Close()
		}
	}
	for _, in := range inputs {
		// A source filter skips whole files of the other kind.
		if f.Source != "" && in.format != audit.FormatAuto {
			if (f.Source == audit.SourceDB) != (in.format != audit.FormatAudit) {
				continue
			}
		}
		r, _, err := audit.OpenReader(c.Context, in.path, in.format, c.App.Reader, opts)
		if err != nil {
			closeAll()
			if errors.Is(err, os.ErrNotExist) {
				return nil, nil, usageErrorf("%v", err)
			}
			return nil, nil, err
		}
		rs = append(rs, r)
	}
	return audit.Merge(rs...), f, nil
}

// runAudit feeds every selected event to each, then closes with done and reports
// malformed input.
func runAudit(c *cli.Context, keepOther bool, each func(*audit.Event) error, done func() error) error {
	r, f, err := openAudit(c, keepOther)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		if err := c.Context.Err(); err != nil {
			return err
		}
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, audit.ErrMalformed) {
				return usageError{err}
			}
			return err
		}
		if f.Match(e) {
			if err := each(e); err != nil {
				return fmt.Errorf("write events: %w", err)
			}
		}
	}
	if done != nil {
		if err := done(); err != nil {
			return fmt.Errorf("write events: %w", err)
		}
	}
	reportMalformed(c.App.ErrWriter, r.Stats())
	return nil
}

func reportMalformed(w io.Writer, s audit.Stats) {
	if s.Malformed == 0 {
		return
	}
	fmt.Fprintf(w, "sepgadm: %d malformed line(s) skipped of %d read; first:\n", s.Malformed, s.Lines)
	for _, ex := range s.Examples {
		fmt.Fprintf(w, "  %s\n", ex)
	}
}

func auditReviewCommand() *cli.Command {
	return &cli.Command{
		Name:      "review",
		Usage:     "joint review: attribute database events to the proxy's client sessions, relate OS events, note policy changes",
		ArgsUsage: "[FILES…]",
		Description: "Reads the logs as sepgadm audit does, plus the proxy's session log (--sessions), and\n" +
			"for each access decision prints: for database events the client session behind the\n" +
			"pooler (client address, OS peer pid and label, database user, context); the events\n" +
			"of the same subject on the other side within --window; and the policy load, enforce\n" +
			"toggle or boolean change that preceded it. --html FILE also writes one self-contained\n" +
			"HTML report (a timeline chart of denials by source and domain, and the tables).",
		Flags: slices.Concat(auditInputFlags(), auditFilterFlags(), []cli.Flag{
			&cli.StringFlag{Name: "sessions", Usage: "the proxy's session log `FILE` (JSON lines)"},
			&cli.DurationFlag{Name: "window", Value: 5 * time.Second, Usage: "how near in time OS and database events of one subject are related"},
			&cli.StringFlag{Name: "html", Usage: "also write an HTML report to `FILE`"},
		}),
		Action: func(c *cli.Context) error {
			var sr *audit.SessionReader
			if p := c.String("sessions"); p != "" {
				rc, err := audit.Open(c.Context, p, c.App.Reader)
				if err != nil {
					if errors.Is(err, os.ErrNotExist) {
						return usageErrorf("--sessions: %v", err)
					}
					return err
				}
				defer rc.Close()
				sr = audit.NewSessionReader(rc, p)
			}
			if c.Duration("window") < 0 {
				return usageErrorf("--window must not be negative")
			}
			rev := audit.NewReview(sr, c.Duration("window"))
			if err := runAudit(c, false, rev.Add, nil); err != nil {
				if errors.Is(err, audit.ErrReviewTooLarge) {
					return usageError{err}
				}
				return err
			}
			if sr != nil {
				reportMalformed(c.App.ErrWriter, sr.Stats())
			}
			if err := rev.WriteText(c.App.Writer); err != nil {
				return fmt.Errorf("write review: %w", err)
			}
			if p := c.String("html"); p != "" {
				f, err := os.Create(p)
				if err != nil {
					return fmt.Errorf("write html review: %w", err)
				}
				if err := rev.WriteHTML(f, time.Now()); err != nil {
					f.Close()
					return fmt.Errorf("write html review: %w", err)
				}
				if err := f.Close(); err != nil {
					return fmt.Errorf("write html review: %w", err)
				}
			}
			return nil
		},
	}
}
