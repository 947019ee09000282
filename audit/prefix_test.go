package audit

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// renderPrefix writes prefix as PostgreSQL would for a client backend (session) or a
// background process (%q stops the prefix there).
func renderPrefix(p string, session bool, pid int) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		i++
		pad := ""
		for p[i] == '-' || p[i] >= '0' && p[i] <= '9' {
			pad += string(p[i])
			i++
		}
		v := ""
		switch p[i] {
		case 'a':
			v = "psql"
		case 'u':
			v = "alice"
		case 'd':
			v = "app_db"
		case 'r':
			v = "[local]"
		case 'h':
			v = "10.0.0.7"
		case 'b':
			v = "client backend"
		case 'p':
			v = fmt.Sprint(pid)
		case 'P':
			v = ""
		case 't':
			v = "2026-11-23 19:49:35 UTC"
		case 'm':
			v = "2026-11-23 19:49:35.281 UTC"
		case 'n':
			v = "1795463375.281"
		case 'i':
			v = "SELECT"
		case 'e':
			v = "42501"
		case 'c':
			v = "6b0498cf.1b5"
		case 'l':
			v = "3"
		case 's':
			v = "2026-11-23 19:49:30 UTC"
		case 'v':
			v = "3/25"
		case 'x':
			v = "0"
		case 'Q':
			v = "0"
		case '%':
			v = "%"
		case 'q':
			if !session {
				return b.String()
			}
			continue
		}
		if !session && strings.ContainsRune("udarhc", rune(p[i])) {
			v = ""
		}
		if pad != "" {
			v = fmt.Sprintf("%"+pad+"s", v)
		}
		b.WriteString(v)
	}
	return b.String()
}

func TestPrefixes(t *testing.T) {
	const deny = `SELinux: denied { select } scontext=u:r:c_t:s0 tcontext=u:object_r:t_t:s0 tclass=db_table name="public.ta" permissive=0`
	prefixes := append([]string{
		"%a %u %d %r %h %b %p %P %t %m %n %i %e %c %l %s %v %x %q %Q %% ",
		"[%-10u] %5p| %m ",
		"%n %p ",
		"<%t|%c|%u|%d> ",
		"%m [%p] %u@%d: ",
		"%m: %p: ",
		"%m [%p] %q%u@%d/%a ",
	}, CommonPrefixes...)
	for _, pfx := range prefixes {
		t.Run(pfx, func(t *testing.T) {
			var log strings.Builder
			bg := renderPrefix(pfx, false, 99)
			log.WriteString(bg + "LOG:  checkpoint starting: time\n")
			p1, p2 := renderPrefix(pfx, true, 437), renderPrefix(pfx, true, 438)
			log.WriteString(p1 + "LOG:  " + deny + "\n")
			log.WriteString(p2 + "LOG:  " + strings.Replace(deny, "denied", "allowed", 1) + " at character 15\n")
			log.WriteString(p1 + "STATEMENT:  SELECT *\n\t  FROM ta\n")
			log.WriteString(p1 + "ERROR:  SELinux: security policy violation\n")
			log.WriteString(p1 + "STATEMENT:  SELECT *\n\t  FROM ta\n")
			log.WriteString(p2 + "STATEMENT:  SELECT 2\n")
			hasPID := strings.Contains(pfx, "%p") || strings.Contains(pfx, "%5p")
			for _, detect := range []bool{false, true} {
				if detect && !contains(CommonPrefixes, pfx) {
					continue
				}
				opts := Options{}
				if !detect {
					cp, err := CompilePrefix(pfx)
					if err != nil {
						t.Fatal(err)
					}
					opts.Prefix = cp
				}
				r, err := NewStderrReader(strings.NewReader(log.String()), nil, "t", opts)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for {
					e, err := r.Next()
					if err != nil {
						break
					}
					got = append(got, fmt.Sprintf("%s pid=%d user=%q db=%q %q", e.Result, e.PID, e.DBUser, e.Database, e.Statement))
				}
				user, db := "", ""
				if strings.Contains(pfx, "%u") || strings.Contains(pfx, "u]") {
					user = "alice"
				}
				if strings.Contains(pfx, "%d") {
					db = "app_db"
				}
				pid1, pid2 := 437, 438
				st2 := "SELECT 2"
				if !hasPID {
					pid1, pid2 = 0, 0
					st2 = "SELECT *\n  FROM ta" // joined by adjacency only
				}
				want := []string{
					fmt.Sprintf("denied pid=%d user=%q db=%q %q", pid1, user, db, "SELECT *\n  FROM ta"),
					fmt.Sprintf("allowed pid=%d user=%q db=%q %q", pid2, user, db, st2),
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("detect=%v events (-want +got):\n%s", detect, diff)
				}
				if st := r.Stats(); st.Malformed != 0 {
					t.Errorf("malformed: %v", st.Examples)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestPrefixTimes(t *testing.T) {
	tests := []struct {
		pfx, line string
		want      time.Time
	}{
		{"%m ", "2026-11-23 19:49:35.281 UTC LOG:  x", time.Date(2026, 11, 23, 19, 49, 35, 281e6, time.UTC)},
		{"%t ", "2026-11-23 19:49:35 CET LOG:  x", time.Date(2026, 11, 23, 19, 49, 35, 0, time.UTC)},
		{"%m ", "2026-11-23 19:49:35.281 +0130 LOG:  x", time.Date(2026, 11, 23, 18, 19, 35, 281e6, time.UTC)},
		{"%m ", "2026-11-23 19:49:35.281 -05 LOG:  x", time.Date(2026, 11, 24, 0, 49, 35, 281e6, time.UTC)},
		{"%n ", "1795463375.5 LOG:  x", time.Unix(1795463375, 5e8)},
	}
	for _, tt := range tests {
		p, err := CompilePrefix(tt.pfx)
		if err != nil {
			t.Fatal(err)
		}
		f, level, _, ok := p.Match(tt.line, nil)
		if !ok || level != "LOG" || !f.time.Equal(tt.want) {
			t.Errorf("%q: ok=%v level=%q time=%v, want %v", tt.line, ok, level, f.time, tt.want)
		}
	}
	for _, bad := range []string{"%", "%z", "abc %-"} {
		if _, err := CompilePrefix(bad); err == nil {
			t.Errorf("CompilePrefix(%q) succeeded", bad)
		}
	}
}

// TestPGClock reads a sequence of timestamps with one clock, as a reader does, and
// checks each against parsePGTimeOK: what it remembers must never change a result.
func TestPGClock(t *testing.T) {
	loc := time.FixedZone("CET", 3600)
	seq := []string{
		"2026-11-28 11:06:40.015 UTC",
		"2026-11-28 11:06:40.015 UTC", // the same again
		"2026-11-28 11:06:40.9 UTC",   // same second
		"2026-11-28 11:06:40 UTC",     // same second, no fraction
		"2026-11-28 11:06:40.015 CET", // same second, another zone
		"2026-11-28 11:06:40.015 +02",
		"2026-11-28 11:06:40.0x UTC", // bad fraction in a known second
		"2026-11-28 11:06:41.001",    // no zone
		"2026-13-28 11:06:41.001",    // bad month
		"2026-11-28 11:06:41.001",
		"2026-11-28 11:06:41.001 UTC",
		"",
	}
	for _, l := range []*time.Location{nil, loc} {
		clk := &pgClock{loc: l}
		for _, s := range seq {
			want, wantOK := parsePGTimeOK(s, l)
			got, ok := clk.parse(s)
			if ok != wantOK || !got.Equal(want) || got.Location().String() != want.Location().String() {
				t.Errorf("loc %v: parse(%q) = %v, %v; want %v, %v", l, s, got, ok, want, wantOK)
			}
		}
	}
}
