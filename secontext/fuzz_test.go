package secontext

import "testing"

// Contexts come from spec files, the command line and the catalog: the parser must not
// panic, and what it accepts must print to a canonical form that parses to itself.
func FuzzParseContext(f *testing.F) {
	for _, s := range []string{"system_u:object_r:sepgsql_table_t:s0", "u:r:t:s0-s0:c0.c1023", "u:r:t:s1:c1,c3.c5", "u:r:t", "u:r:t:s0:c5,c1-s2:c0.c9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			if _, ok := err.(*ContextError); !ok {
				t.Fatalf("error %T is not a *ContextError", err)
			}
			return
		}
		canon := c.String()
		c2, err := Parse(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, s, err)
		}
		if c2.String() != canon {
			t.Fatalf("canonical form not stable: %q -> %q", canon, c2.String())
		}
		if c.Range != nil && !c.Range.High.Dominates(c.Range.Low) {
			t.Fatalf("accepted range %s whose high does not dominate its low", c.Range)
		}
	})
}
