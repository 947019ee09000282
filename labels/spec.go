package labels

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Object classes sepgsql labels. sepgsql_restorecon looks up the first seven; the rest
// are valid in a spec file (libselinux knows them) but name nothing sepgsql labels.
const (
	ClassDatabase  = "db_database"
	ClassSchema    = "db_schema"
	ClassTable     = "db_table"
	ClassSequence  = "db_sequence"
	ClassView      = "db_view"
	ClassColumn    = "db_column"
	ClassProcedure = "db_procedure"
)

// Classes are the classes of labelable objects, in the order sepgsql_restorecon visits
// them (databases, schemas, relations, columns, functions).
var Classes = []string{ClassDatabase, ClassSchema, ClassTable, ClassSequence, ClassView, ClassColumn, ClassProcedure}

// specOnlyClasses are accepted in spec files for compatibility and never match anything.
var specOnlyClasses = []string{"db_blob", "db_tuple", "db_language", "db_exception", "db_datatype"}

// ValidClass reports whether class names a labelable object class.
func ValidClass(class string) bool { return classRank(class) >= 0 }

func classRank(class string) int {
	for i, c := range Classes {
		if c == class {
			return i
		}
	}
	return -1
}

// Rule is one line of a spec file: objects of Class whose key matches Pattern get
// Context (kept exactly as written: the server stores it so).
type Rule struct {
	Class   string
	Pattern string
	Context string
	Line    int
}

// Spec is a parsed spec file; Rules keep file order, which decides matches.
type Spec struct {
	Name  string
	Rules []Rule
}

// SpecError is a syntax error in a spec file, at File:Line.
type SpecError struct {
	File string
	Line int
	Msg  string
}

func (e *SpecError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// maxSpecErrors bounds how many syntax errors ParseSpec reports at once.
const maxSpecErrors = 10

// ReadSpecFile parses the spec file at path.
func ReadSpecFile(path string) (*Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read spec file: %w", err)
	}
	defer f.Close()
	return ParseSpec(f, path)
}

// ParseSpec parses a spec file in the sepgsql_contexts format: one
// "CLASS PATTERN CONTEXT" per line, blank lines, and '#' comments (everything after a
// '#' on a line, as libselinux cuts it). name is used in errors. Every bad line is an
// error naming name:line (up to ten are reported, joined).
func ParseSpec(r io.Reader, name string) (*Spec, error) {
	spec := &Spec{Name: name}
	br := bufio.NewReader(r)
	var errs []error
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadString('\n')
		if line == "" && err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("read spec %s: %w", name, err)
		}
		if rule, msg := parseSpecLine(line); msg != "" {
			errs = append(errs, &SpecError{File: name, Line: lineNo, Msg: msg})
			if len(errs) == maxSpecErrors {
				break
			}
		} else if rule != nil {
			rule.Line = lineNo
			spec.Rules = append(spec.Rules, *rule)
		}
		if err != nil {
			break
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return spec, nil
}

// isCSpace is isspace() in the C locale, which sscanf's %s uses to split tokens.
func isCSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r'
}

func parseSpecLine(line string) (*Rule, string) {
	if strings.IndexByte(line, 0) >= 0 {
		return nil, "NUL byte in line"
	}
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	f := strings.FieldsFunc(line, isCSpace)
	switch {
	case len(f) == 0:
		return nil, ""
	case len(f) != 3:
		return nil, fmt.Sprintf("want CLASS PATTERN CONTEXT, got %d fields", len(f))
	}
	class := f[0]
	if !ValidClass(class) && !contains(specOnlyClasses, class) {
		return nil, fmt.Sprintf("unknown object class %q (want one of %s)", class, strings.Join(Classes, ", "))
	}
	if _, err := ParseContext(f[2]); err != nil {
		return nil, err.Error()
	}
	return &Rule{Class: class, Pattern: f[1], Context: f[2]}, ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Lookup returns the rule that labels an object of class with key: the first rule of
// that class whose pattern matches, as selabel_lookup does. ok is false when none does
// (sepgsql_restorecon then warns "no initial label assigned" and skips the object).
func (s *Spec) Lookup(class, key string) (rule Rule, ok bool) {
	for _, r := range s.Rules {
		if r.Class == class && fnmatch(r.Pattern, key) {
			return r, true
		}
	}
	return Rule{}, false
}

// compiledRule is a rule with its pattern made ready for matching many keys.
type compiledRule struct {
	Rule
	pattern pattern
}

// matcher looks keys up as Spec.Lookup does, with the rules grouped by class and their
// patterns compiled once: Plan matches hundreds of thousands of keys.
type matcher map[string][]compiledRule

func (s *Spec) matcher() matcher {
	m := matcher{}
	for _, r := range s.Rules {
		m[r.Class] = append(m[r.Class], compiledRule{Rule: r, pattern: compilePattern(r.Pattern)})
	}
	return m
}

func (m matcher) lookup(class, key string) (rule Rule, ok bool) {
	for _, r := range m[class] {
		if r.pattern.match(key) {
			return r.Rule, true
		}
	}
	return Rule{}, false
}
