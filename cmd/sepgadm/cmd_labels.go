package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/sepgadm/sepgadm/labels"
)

func labelsCommand() *cli.Command {
	return &cli.Command{
		Name:  "labels",
		Usage: "list, set, plan, apply, check and export sepgsql object labels",
		Description: "Spec files use the sepgsql_contexts format that sepgsql_restorecon reads:\n" +
			"one \"CLASS OBJECT-PATTERN CONTEXT\" per line, '*' and '?' wildcards, '#' comments;\n" +
			"the first matching line wins. Object keys are the server's: database, db.schema,\n" +
			"db.schema.table, db.schema.table.column, db.schema.function (no argument list),\n" +
			"each part quoted as quote_ident() quotes it.",
		Subcommands: []*cli.Command{
			labelsLsCommand(), labelsSetCommand(), labelsPlanCommand(), labelsApplyCommand(),
			labelsCheckCommand(), labelsExportCommand(), labelsTranslateCommand(),
		},
	}
}

func dbFlag() cli.Flag {
	return &cli.StringFlag{Name: "db", Usage: "act on database `NAME` (default: the connection's database)"}
}

func specFlag() cli.Flag {
	return &cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "spec `FILE` in the sepgsql_contexts format", Required: true}
}

// labelDatabases resolves --db / --all-dbs / the DSN's database.
func labelDatabases(c *cli.Context) ([]string, *pgx.ConnConfig, error) {
	db, all := c.String("db"), c.Bool("all-dbs")
	if db != "" && all {
		return nil, nil, usageErrorf("--db and --all-dbs exclude each other")
	}
	dbs, cfg, err := targetDatabases(c.Context, c.String("dsn"), all)
	if err != nil {
		return nil, nil, err
	}
	if db != "" {
		dbs = []string{db}
	}
	return dbs, cfg, nil
}

func readSpec(c *cli.Context) (*labels.Spec, error) {
	spec, err := labels.ReadSpecFile(c.String("file"))
	if err != nil {
		return nil, usageError{err}
	}
	return spec, nil
}

// dedupeDatabases drops db_database entries already seen in an earlier database (every
// database's catalog view lists all of them).
type dedupe map[string]bool

func (d dedupe) objects(objs []labels.Object) []labels.Object {
	out := objs[:0:0]
	for _, o := range objs {
		if o.Class == labels.ClassDatabase {
			if d[o.Key] {
				continue
			}
			d[o.Key] = true
		}
		out = append(out, o)
	}
	return out
}

func (d dedupe) changes(cs []labels.Change) []labels.Change {
	out := cs[:0:0]
	for _, ch := range cs {
		if ch.Object.Class == labels.ClassDatabase {
			if d[ch.Object.Key] {
				continue
			}
			d[ch.Object.Key] = true
		}
		out = append(out, ch)
	}
	return out
}

type lsRow struct {
	Database string `json:"database"`
	labels.Object
}

func labelsLsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "list every labelable object with its selinux label (or unlabeled)",
		Flags: []cli.Flag{
			dsnFlag(), dbFlag(), allDBsFlag(),
			&cli.StringFlag{Name: "class", Usage: "only these classes, comma-separated (db_table,db_column,...)"},
			&cli.StringFlag{Name: "type", Usage: "only objects whose label has SELinux type `T`"},
			&cli.BoolFlag{Name: "unlabeled", Usage: "only objects without a label"},
			&cli.BoolFlag{Name: "system-columns", Usage: "include system columns (ctid, xmin, ...)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table, json or csv"},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			format := c.String("output")
			if format != "table" && format != "json" && format != "csv" {
				return usageErrorf("--output %q: want table, json or csv", format)
			}
			classes := map[string]bool{}
			if s := c.String("class"); s != "" {
				for _, cl := range strings.Split(s, ",") {
					cl = strings.TrimSpace(cl)
					if !labels.ValidClass(cl) {
						return usageErrorf("--class: unknown class %q (want %s)", cl, strings.Join(labels.Classes, ", "))
					}
					classes[cl] = true
				}
			}
			dbs, cfg, err := labelDatabases(c)
			if err != nil {
				return err
			}
			seen := dedupe{}
			var rows []lsRow
			err = eachDatabase(c.Context, cfg, dbs, func(ctx context.Context, db string, conn *pgx.Conn) error {
				objs, err := labels.Objects(ctx, conn)
				if err != nil {
					return err
				}
				for _, o := range seen.objects(objs) {
					if keepInLs(c, classes, o) {
						rows = append(rows, lsRow{Database: db, Object: o})
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			return writeLs(c.App.Writer, format, rows)
		},
	}
}

func keepInLs(c *cli.Context, classes map[string]bool, o labels.Object) bool {
	if len(classes) > 0 && !classes[o.Class] {
		return false
	}
	if o.System && !c.Bool("system-columns") {
		return false
	}
	if c.Bool("unlabeled") && o.Labeled() {
		return false
	}
	if t := c.String("type"); t != "" {
		ctx, err := labels.ParseContext(o.Label)
		if err != nil || ctx.Type != t {
			return false
		}
	}
	return true
}

func writeLs(w io.Writer, format string, rows []lsRow) error {
	switch format {
	case "json":
		if rows == nil {
			rows = []lsRow{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write([]string{"database", "class", "key", "object", "label"})
		for _, r := range rows {
			cw.Write([]string{r.Database, r.Class, r.Key, r.Kind + " " + r.Target, r.Label})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tOBJECT\tLABEL")
	for _, r := range rows {
		name := r.Key
		if r.Class == labels.ClassProcedure {
			name = r.Database + "." + r.Target
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Class, name, r.DisplayLabel())
	}
	return tw.Flush()
}

func labelsSetCommand() *cli.Command {
	return &cli.Command{
		Name:      "set",
		Usage:     "label one object: labels set CLASS OBJECT CONTEXT",
		ArgsUsage: "CLASS OBJECT CONTEXT",
		Description: "OBJECT is written as in SQL, schema-qualified: public.t1, public.\"T1\".\"Col\",\n" +
			"public.f(integer) (the argument list may be left out when the name is not\n" +
			"overloaded), or the database name for db_database. The restorecon key\n" +
			"(db.schema.table) is accepted too.",
		Flags: []cli.Flag{
			dsnFlag(), dbFlag(),
			&cli.BoolFlag{Name: "dry-run", Usage: "print the SQL instead of running it"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 3 {
				return usageErrorf("labels set takes CLASS OBJECT CONTEXT, got %d arguments", c.NArg())
			}
			class, name, label := c.Args().Get(0), c.Args().Get(1), c.Args().Get(2)
			if !labels.ValidClass(class) {
				return usageErrorf("unknown class %q (want %s)", class, strings.Join(labels.Classes, ", "))
			}
			if _, err := labels.ParseContext(label); err != nil {
				return usageError{err}
			}
			dbs, cfg, err := labelDatabases(c)
			if err != nil {
				return err
			}
			return eachDatabase(c.Context, cfg, dbs, func(ctx context.Context, db string, conn *pgx.Conn) error {
				objs, err := labels.Objects(ctx, conn)
				if err != nil {
					return err
				}
				o, err := findObject(objs, class, name)
				if err != nil {
					return err
				}
				ch := labels.Change{Object: o, To: label}
				if c.Bool("dry-run") {
					fmt.Fprintf(c.App.Writer, "%s;\n", labels.SetLabelSQL(o, label))
					return nil
				}
				if err := labels.CheckEnabled(ctx, conn); err != nil {
					return err
				}
				if err := labels.Apply(ctx, conn, []labels.Change{ch}, labels.ApplyOptions{}); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "Relabeled %s %s from %s to %s\n", class, o.Key, o.DisplayLabel(), label)
				return nil
			})
		},
	}
}

// findObject finds the object of class named by its SQL target or its restorecon key;
// a function name without arguments must not be overloaded.
func findObject(objs []labels.Object, class, name string) (labels.Object, error) {
	var hits []labels.Object
	for _, o := range objs {
		if o.Class != class {
			continue
		}
		base, _, _ := strings.Cut(o.Target, "(")
		if o.Target == name || o.Key == name || (class == labels.ClassProcedure && !strings.Contains(name, "(") && base == name) {
			hits = append(hits, o)
		}
	}
	switch len(hits) {
	case 0:
		return labels.Object{}, usageErrorf("no %s named %s in this database (write it as in SQL, e.g. public.t1 or public.\"T1\")", class, name)
	case 1:
		return hits[0], nil
	}
	var sigs []string
	for _, h := range hits {
		sigs = append(sigs, h.Target)
	}
	return labels.Object{}, usageErrorf("%s %s is ambiguous: name one of %s", class, name, strings.Join(sigs, ", "))
}

// planAll reads the objects of every target database and plans spec against them.
func planAll(c *cli.Context, spec *labels.Spec, fn func(ctx context.Context, db string, conn *pgx.Conn, changes []labels.Change, unmatched int) error) error {
	dbs, cfg, err := labelDatabases(c)
	if err != nil {
		return err
	}
	seen := dedupe{}
	return eachDatabase(c.Context, cfg, dbs, func(ctx context.Context, db string, conn *pgx.Conn) error {
		t0 := time.Now()
		objs, err := labels.Objects(ctx, conn)
		if err != nil {
			return err
		}
		t1 := time.Now()
		changes, unmatched := labels.Plan(seen.objects(objs), spec)
		if c.Bool("verbose") {
			for _, o := range unmatched {
				fmt.Fprintf(c.App.ErrWriter, "no rule for %s %s: left as %s\n", o.Class, o.Key, o.DisplayLabel())
			}
			fmt.Fprintf(c.App.ErrWriter, "database %s: read %d objects in %v, planned %d changes in %v\n",
				db, len(objs), t1.Sub(t0).Round(time.Millisecond), len(changes), time.Since(t1).Round(time.Millisecond))
		}
		return fn(ctx, db, conn, changes, len(unmatched))
	})
}

func verboseFlag() cli.Flag {
	return &cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "also list the objects no rule matches, and say where the time went"}
}

func labelsPlanCommand() *cli.Command {
	return &cli.Command{
		Name:        "plan",
		Usage:       "print what a spec would relabel, one \"Would relabel\" line per object",
		Description: "The lines are those of sepgadm restorecon --dry-run with the same spec file.",
		Flags:       []cli.Flag{dsnFlag(), dbFlag(), allDBsFlag(), specFlag(), verboseFlag()},
		Before:      noArgs,
		Action: func(c *cli.Context) error {
			total, unmatched, err := printPlan(c)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "%d objects would be relabeled; %d match no rule and would be skipped\n", total, unmatched)
			return nil
		},
	}
}

// printPlan prints the "Would relabel" lines of the --file spec over the target
// databases (labels plan and labels check) and counts them and the unmatched objects.
func printPlan(c *cli.Context) (total, unmatched int, err error) {
	spec, err := readSpec(c)
	if err != nil {
		return 0, 0, err
	}
	err = planAll(c, spec, func(_ context.Context, _ string, _ *pgx.Conn, changes []labels.Change, nUnmatched int) error {
		for _, ch := range changes {
			fmt.Fprintln(c.App.Writer, ch.String())
		}
		total += len(changes)
		unmatched += nUnmatched
		return nil
	})
	return total, unmatched, err
}

func labelsCheckCommand() *cli.Command {
	return &cli.Command{
		Name:        "check",
		Usage:       "exit 1 when labels drift from a spec (for cron and CI)",
		Description: "Prints the drifting objects as \"Would relabel\" lines, as labels plan.",
		Flags:       []cli.Flag{dsnFlag(), dbFlag(), allDBsFlag(), specFlag(), verboseFlag()},
		Before:      noArgs,
		Action: func(c *cli.Context) error {
			total, _, err := printPlan(c)
			if err != nil {
				return err
			}
			if total > 0 {
				return checkFailed{fmt.Sprintf("%d labels drift from %s", total, c.String("file"))}
			}
			return nil
		},
	}
}

func labelsApplyCommand() *cli.Command {
	return &cli.Command{
		Name:  "apply",
		Usage: "relabel what a spec says, in one transaction per database",
		Description: "Each database is relabeled all or nothing, with SECURITY LABEL statements sent in\n" +
			"batches. With --dry-run the statements are printed instead.",
		Flags: []cli.Flag{
			dsnFlag(), dbFlag(), allDBsFlag(), specFlag(), verboseFlag(),
			&cli.BoolFlag{Name: "dry-run", Usage: "print the SQL instead of running it"},
			&cli.IntFlag{Name: "batch", Value: labels.DefaultBatchSize, Usage: "statements per round trip"},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			spec, err := readSpec(c)
			if err != nil {
				return err
			}
			if c.Int("batch") < 1 {
				return usageErrorf("--batch must be at least 1")
			}
			total := 0
			err = planAll(c, spec, func(ctx context.Context, db string, conn *pgx.Conn, changes []labels.Change, unmatched int) error {
				if c.Bool("dry-run") {
					fmt.Fprintf(c.App.Writer, "-- database %s\nBEGIN;\n", db)
					for _, ch := range changes {
						fmt.Fprintf(c.App.Writer, "%s;\n", labels.SetLabelSQL(ch.Object, ch.To))
					}
					fmt.Fprintln(c.App.Writer, "COMMIT;")
					return nil
				}
				if len(changes) == 0 {
					fmt.Fprintf(c.App.Writer, "database %s: nothing to relabel (%d objects match no rule)\n", db, unmatched)
					return nil
				}
				if err := labels.CheckEnabled(ctx, conn); err != nil {
					return err
				}
				bar := newProgress(c.App.ErrWriter, len(changes), "relabel "+db)
				var stats labels.ApplyStats
				opts := labels.ApplyOptions{BatchSize: c.Int("batch"), Stats: &stats}
				if bar != nil {
					opts.Progress = func(done int) { bar.Set(done) }
				}
				t0 := time.Now()
				err := labels.Apply(ctx, conn, changes, opts)
				if bar != nil {
					bar.Finish()
					fmt.Fprintln(c.App.ErrWriter)
				}
				if err != nil {
					return err
				}
				if c.Bool("verbose") {
					fmt.Fprintf(c.App.ErrWriter, "database %s: applied in %v: %d batches took %v in the server, commit %v\n", db,
						time.Since(t0).Round(time.Millisecond), stats.Batches, stats.Exec.Round(time.Millisecond), stats.Commit.Round(time.Millisecond))
				}
				total += len(changes)
				fmt.Fprintf(c.App.Writer, "database %s: relabeled %d objects (%d match no rule)\n", db, len(changes), unmatched)
				return nil
			})
			return err
		},
	}
}

// newProgress returns a progress bar on w when w is a terminal and the work is large
// enough to want one, else nil.
func newProgress(w io.Writer, total int, what string) *progressbar.ProgressBar {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) || total < 1000 {
		return nil
	}
	return progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionThrottle(100_000_000))
}

func labelsExportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write the current labels as a spec file or SQL",
		Description: "-o spec (default) writes a spec file that labels apply turns back into the same\n" +
			"labels; -o sql writes SECURITY LABEL statements, exact even for overloaded\n" +
			"functions with different labels (one spec key covers all overloads). With\n" +
			"--any-db the database part of every key is '*', to apply it to a copy of the\n" +
			"database under another name.",
		Flags: []cli.Flag{
			dsnFlag(), dbFlag(),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "spec", Usage: "spec or sql"},
			&cli.BoolFlag{Name: "any-db", Usage: "write '*' for the database in every key (spec only)"},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			format := c.String("output")
			if format != "spec" && format != "sql" {
				return usageErrorf("--output %q: want spec or sql", format)
			}
			dbs, cfg, err := labelDatabases(c)
			if err != nil {
				return err
			}
			return eachDatabase(c.Context, cfg, dbs, func(ctx context.Context, _ string, conn *pgx.Conn) error {
				objs, err := labels.Objects(ctx, conn)
				if err != nil {
					return err
				}
				dbKey, err := labels.CurrentDatabaseKey(ctx, conn)
				if err != nil {
					return err
				}
				if format == "sql" {
					return labels.ExportSQL(c.App.Writer, objs, dbKey)
				}
				warnings, err := labels.ExportSpec(c.App.Writer, objs, dbKey, c.Bool("any-db"))
				for _, w := range warnings {
					fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", w)
				}
				return err
			})
		},
	}
}

func labelsTranslateCommand() *cli.Command {
	return &cli.Command{
		Name:      "translate",
		Usage:     "translate levels or contexts between raw and human (mcstrans) form, in the server",
		ArgsUsage: "LEVEL-OR-CONTEXT...",
		Flags: []cli.Flag{
			dsnFlag(),
			&cli.BoolFlag{Name: "to-raw", Usage: "human → raw (sepgsql_mcstrans_in); default raw → human (sepgsql_mcstrans_out)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageErrorf("labels translate needs at least one level or context")
			}
			conn, err := connect(c.Context, c.String("dsn"))
			if err != nil {
				return err
			}
			defer conn.Close(c.Context)
			for _, s := range c.Args().Slice() {
				out, err := labels.Translate(c.Context, conn, s, c.Bool("to-raw"))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s\t%s\n", s, out)
			}
			return nil
		},
	}
}
