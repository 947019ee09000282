package secontext

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseContextNormalises(t *testing.T) {
	tests := []struct{ in, want string }{
		{"system_u:object_r:sepgsql_table_t", "system_u:object_r:sepgsql_table_t"},
		{"system_u:object_r:sepgsql_table_t:s0", "system_u:object_r:sepgsql_table_t:s0"},
		{"system_u:object_r:sepgsql_table_t:s0-s0", "system_u:object_r:sepgsql_table_t:s0"},
		{"system_u:system_r:initrc_t:s0-s0:c0.c1023", "system_u:system_r:initrc_t:s0-s0:c0.c1023"},
		{"u:r:t:s1:c1,c3.c5", "u:r:t:s1:c1,c3.c5"},
		{"u:r:t:s1:c5,c4,c3,c1", "u:r:t:s1:c1,c3.c5"},
		{"u:r:t:s0:c0,c1", "u:r:t:s0:c0,c1"},
		{"u:r:t:s0:c1,c0,c0", "u:r:t:s0:c0,c1"},
		{"u:r:t:s0:c0.c2,c3", "u:r:t:s0:c0.c3"},
		{"u:r:t:s0:c0.c5,c2.c3", "u:r:t:s0:c0.c5"},
		{"u:r:t:s0-s15:c0.c1023", "u:r:t:s0-s15:c0.c1023"},
		{"u.x-y:r:my-type.t:s2:c7", "u.x-y:r:my-type.t:s2:c7"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			again, err := Parse(c.String())
			if err != nil || again.String() != c.String() {
				t.Errorf("reparse of %q = %v, %v", c.String(), again, err)
			}
		})
	}
}

func TestParseContextErrorsPointAtTheBadPart(t *testing.T) {
	tests := []struct {
		in       string
		wantPart string
		wantOff  int
		wantMsg  string
	}{
		{"", "", 0, "missing user"},
		{"system_u", "", 8, `missing role after "system_u"`},
		{"system_u:object_r", "", 17, `missing type after "object_r"`},
		{"system_u::t", "", 9, "role is empty"},
		{"system_u:object_r:9t", "9t", 18, "type has a bad character '9' at position 0"},
		{"system_u:object_r:t t", "t t", 18, "type has a bad character ' ' at position 1"},
		{"u:r:t:", "", 6, "sensitivity must be s0, s1, …"},
		{"u:r:t:x0", "x0", 6, "sensitivity must be s0, s1, …"},
		{"u:r:t:s01", "s01", 6, "sensitivity must be s0, s1, …"},
		{"u:r:t:s0:", "", 9, "empty category set after ':'"},
		{"u:r:t:s0:c1,,c2", "", 12, "category must be c0, c1, … or a span cN.cM"},
		{"u:r:t:s0:c1,k2", "k2", 12, "category must be c0, c1, … or a span cN.cM"},
		{"u:r:t:s0:c5.c1", "c5.c1", 9, "category span must go upwards"},
		{"u:r:t:s0:c1.x", "x", 12, "category span must end in c0, c1, …"},
		{"u:r:t:s1-s0", "s0", 9, "high level does not dominate low level s1"},
		{"u:r:t:s0:c1-s0", "s0", 12, "high level does not dominate low level s0:c1"},
		{"u:r:t:s0-s0-s1", "s0-s1", 9, "sensitivity must be s0, s1, …"},
		{"u:r:t:s0:c99999999", "c99999999", 9, "category must be c0, c1, … or a span cN.cM"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := Parse(tt.in)
			var ce *ContextError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ContextError", err)
			}
			got := struct {
				Part string
				Off  int
				Msg  string
			}{ce.Part, ce.Offset, ce.Msg}
			want := struct {
				Part string
				Off  int
				Msg  string
			}{tt.wantPart, tt.wantOff, tt.wantMsg}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("error %q (-want +got):\n%s", err, diff)
			}
		})
	}
}

func TestDominance(t *testing.T) {
	lv := func(s string) Level {
		l, err := ParseLevel(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	tests := []struct {
		a, b string
		want bool
	}{
		{"s0", "s0", true},
		{"s1", "s0", true},
		{"s0", "s1", false},
		{"s0:c0.c1023", "s0:c5", true},
		{"s0:c5", "s0:c0.c1023", false},
		{"s0:c1,c3.c5", "s0:c3,c5", true},
		{"s0:c1,c3.c5", "s0:c2", false},
		{"s0:c1,c3.c5", "s0:c1.c3", false},
		{"s2:c0.c10", "s1:c4.c6,c9", true},
		{"s2:c0.c10", "s1:c4.c11", false},
		{"s0", "s0:c0", false},
	}
	for _, tt := range tests {
		if got := lv(tt.a).Dominates(lv(tt.b)); got != tt.want {
			t.Errorf("%s dominates %s = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	r, _ := ParseRange("s0-s0:c0.c1023")
	inner, _ := ParseRange("s0:c1-s0:c1,c2")
	if !r.Contains(inner) || inner.Contains(r) {
		t.Errorf("range containment wrong for %s and %s", r, inner)
	}
}
