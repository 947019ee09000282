package audit

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Allow gathers denials into policy rules as audit2allow does: permissions merged per
// (source type, target type, class), self when source = target, grouped by source.
type Allow struct {
	rules map[allowKey]map[string]bool
}

type allowKey struct{ src, tgt, class string }

// NewAllow returns an empty rule set.
func NewAllow() *Allow { return &Allow{rules: map[allowKey]map[string]bool{}} }

// Add takes a denial into the rules; other events are ignored. It reports whether e
// was used.
func (a *Allow) Add(e *Event) bool {
	if e.Result != ResultDenied || e.SContext == "" || e.TContext == "" || e.TClass == "" || len(e.Perms) == 0 {
		return false
	}
	k := allowKey{ContextType(e.SContext), ContextType(e.TContext), e.TClass}
	if !validIdent(k.src) || !validIdent(k.tgt) || !validIdent(k.class) {
		return false
	}
	m := a.rules[k]
	if m == nil {
		m = map[string]bool{}
		a.rules[k] = m
	}
	for _, p := range e.Perms {
		if validIdent(p) {
			m[p] = true
		}
	}
	return true
}

// Len is the number of rules.
func (a *Allow) Len() int { return len(a.rules) }

// validIdent keeps text that is not a policy identifier out of the module.
func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func setString(m map[string]bool) string {
	ps := make([]string, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	if len(ps) == 1 {
		return ps[0]
	}
	return "{ " + strings.Join(ps, " ") + " }"
}

// Write prints the rules; with module != "" as a module (module NAME 1.0; and a
// require block), with dontaudit as dontaudit rules.
func (a *Allow) Write(w io.Writer, module string, dontaudit bool) error {
	var b bytes.Buffer
	keys := make([]allowKey, 0, len(a.rules))
	for k := range a.rules {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y allowKey) int {
		return cmp.Or(cmp.Compare(x.src, y.src), cmp.Compare(x.tgt, y.tgt), cmp.Compare(x.class, y.class))
	})
	if module != "" {
		fmt.Fprintf(&b, "\nmodule %s 1.0;\n\nrequire {\n", module)
		types := map[string]bool{}
		classes := map[string]map[string]bool{}
		for _, k := range keys {
			types[k.src], types[k.tgt] = true, true
			if classes[k.class] == nil {
				classes[k.class] = map[string]bool{}
			}
			for p := range a.rules[k] {
				classes[k.class][p] = true
			}
		}
		for _, t := range sortedKeys(types) {
			fmt.Fprintf(&b, "\ttype %s;\n", t)
		}
		for _, c := range sortedKeys(classes) {
			fmt.Fprintf(&b, "\tclass %s %s;\n", c, setString(classes[c]))
		}
		b.WriteString("}\n")
	}
	verb := "allow"
	if dontaudit {
		verb = "dontaudit"
	}
	last := ""
	for _, k := range keys {
		if k.src != last {
			fmt.Fprintf(&b, "\n#============= %s ==============\n", k.src)
			last = k.src
		}
		tgt := k.tgt
		if tgt == k.src {
			tgt = "self"
		}
		fmt.Fprintf(&b, "%s %s %s:%s %s;\n", verb, k.src, tgt, k.class, setString(a.rules[k]))
	}
	_, err := w.Write(b.Bytes())
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// KernelAVC rewrites a denial into the kernel's AVC record form, which audit2allow and
// audit2why understand (they ignore sepgsql's own lines).
func KernelAVC(e *Event) string {
	var b strings.Builder
	b.WriteString("type=AVC msg=audit(")
	b.WriteString(strconv.FormatInt(e.Time.Unix(), 10))
	b.WriteByte('.')
	fmt.Fprintf(&b, "%03d", e.Time.Nanosecond()/1e6)
	b.WriteByte(':')
	b.WriteString(strconv.FormatUint(e.Serial, 10))
	b.WriteString("): avc:  ")
	b.WriteString(e.Result)
	b.WriteString("  { ")
	b.WriteString(strings.Join(e.Perms, " "))
	b.WriteString(" } for  pid=")
	b.WriteString(strconv.Itoa(e.PID))
	if e.Comm != "" {
		b.WriteString(" comm=" + strconv.Quote(e.Comm))
	} else if e.Source == SourceDB {
		b.WriteString(` comm="postgres"`)
	}
	if e.Name != "" && !strings.ContainsAny(e.Name, "\"\n") {
		b.WriteString(" name=" + strconv.Quote(e.Name))
	}
	b.WriteString(" scontext=" + e.SContext + " tcontext=" + e.TContext + " tclass=" + e.TClass)
	if e.Permissive {
		b.WriteString(" permissive=1")
	} else {
		b.WriteString(" permissive=0")
	}
	return b.String()
}

// ErrNoAudit2Why is returned by Explain when audit2why is not installed.
var ErrNoAudit2Why = errors.New("cannot explain: audit2why is not installed (Debian: policycoreutils-python-utils)")

// Explain feeds the denials, in kernel AVC form, to the system's audit2why and copies
// its verdicts to w.
func Explain(ctx context.Context, denials []*Event, w io.Writer) error {
	path, err := exec.LookPath("audit2why")
	if err != nil {
		return ErrNoAudit2Why
	}
	var in bytes.Buffer
	for i, e := range denials {
		c := *e
		if c.Serial == 0 {
			c.Serial = uint64(i + 1)
		}
		in.WriteString(KernelAVC(&c))
		in.WriteByte('\n')
	}
	cmd := exec.CommandContext(ctx, path)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("run audit2why: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
