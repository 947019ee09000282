package labels

import "github.com/sepgadm/sepgadm/secontext"

// The label manager's contexts are package secontext's.
type (
	// Context is an SELinux security context user:role:type[:range].
	Context = secontext.Context
	// Range is an MLS/MCS range low[-high].
	Range = secontext.Range
	// Level is a sensitivity with its categories.
	Level = secontext.Level
	// ContextError says what is wrong with a context and where.
	ContextError = secontext.ContextError
)

// ParseContext parses a raw context such as system_u:object_r:sepgsql_table_t:s0:c1,c3.c5.
func ParseContext(s string) (Context, error) { return secontext.Parse(s) }
