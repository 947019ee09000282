package wire

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// play feeds a script to a tracker: ">X" is a frontend message X, "+X" one the proxy
// injects, "<X" a backend message X ("<ZI", "<ZT", "<ZE": ReadyForQuery with status).
// It returns, per step, "ok", "drop" (a backend message not forwarded) or "err".
func play(t *Tracker, script string) []string {
	var out []string
	for _, step := range strings.Fields(script) {
		var err error
		forward := true
		switch step[0] {
		case '>':
			err = t.Frontend(step[1])
		case '+':
			err = t.Inject(step[1])
		case '<':
			var body []byte
			if len(step) > 2 {
				body = []byte(step[2:])
			}
			forward, err = t.Backend(step[1], body)
		}
		switch {
		case err != nil:
			out = append(out, "err")
		case !forward:
			out = append(out, "drop")
		default:
			out = append(out, "ok")
		}
	}
	return out
}

func TestTracker(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		idle   bool
		fails  bool // some step returns an error
		drops  int  // backend messages not forwarded
	}{
		{"simple query", ">Q <T <D <D <C <ZI", true, false, 0},
		{"query opens a transaction", ">Q <C <ZT", false, false, 0},
		{"query answered twice", ">Q <C <ZI <ZI", true, true, 0},
		{"answer before any request", "<C", true, true, 0},
		{"multi-statement query with an error", ">Q <C <E <ZI", true, false, 0},
		{"notice and parameter status any time", "<N <S >Q <N <C <S <ZI <A", true, false, 0},
		{"extended batch", ">P >B >D >E >S <1 <2 <T <D <C <ZI", true, false, 0},
		{"extended batch, describe statement", ">P >D >S <1 <t <T <ZI", true, false, 0},
		{"extended batch without Sync", ">P >B >E >H <1 <2 <C", false, false, 0},
		{"then its Sync", ">P >B >E >H <1 <2 <C >S <ZI", true, false, 0},
		{"pipeline of two batches", ">P >B >E >S >B >E >S <1 <2 <C <ZI <2 <C <ZI", true, false, 0},
		{"error skips to Sync", ">P >B >E >S >B >E >S <E <ZI <2 <C <ZI", true, false, 0},
		{"error before Sync is sent", ">P >B >E <E >B >E >S <ZI", true, false, 0},
		{"skipped message answered anyway", ">P >B >S <E <2 <ZI", true, true, 0},
		{"portal suspended", ">B >E >S <2 <D <s <ZI", true, false, 0},
		{"empty query", ">Q <I <ZI", true, false, 0},
		{"function call", ">F <V <ZI", true, false, 0},
		{"function call error", ">F <E <ZI", true, false, 0},
		{"function call answered twice", ">F <V <V <ZI", true, true, 0},
		{"function call then query", ">F >Q <V <ZI <C <ZI", true, false, 0},
		{"query inside an extended batch", ">P >Q", false, true, 0},
		{"function call inside an extended batch", ">B >F", false, true, 0},
		{"copy in", ">Q <G >d >d >c <C <ZI", true, false, 0},
		{"copy in failed by the client", ">Q <G >d >f <E <ZI", true, false, 0},
		{"copy in failed by the server", ">Q <G >d <E >d >c <ZI", true, false, 0},
		{"query during copy in", ">Q <G >Q", false, true, 0},
		{"query during copy in, pipelined", ">Q <G >P", false, true, 0},
		{"sync during copy in is ignored", ">Q <G >S >d >c <C <ZI", true, false, 0},
		{"copy data sent before the CopyInResponse", ">Q >d >d >c <G <C <ZI", true, false, 0},
		{"copy failed before the CopyInResponse", ">Q >d >f <G <E <ZI", true, false, 0},
		{"two copies pipelined", ">Q >d >c >Q >d >c <G <C <ZI <G <C <ZI", true, false, 0},
		{"stray copy end forgotten once idle", ">Q <G >d <E >c <ZI >Q <G >d >c <C <ZI", true, false, 0},
		// libpq's extended-protocol COPY: a Sync right behind the Execute, which the
		// server ignores during the COPY, then the data, then the Sync that counts.
		{"copy in via Execute", ">P >B >E >S <1 <2 <G >d >c >S <C <ZI", true, false, 0},
		{"copy in via Execute, all sent at once", ">P >B >D >E >S >d >c >S <1 <2 <n <G <C <ZI", true, false, 0},
		{"copy in via Execute, ignored Sync only", ">P >B >E >S <1 <2 <G >d >c <C", false, false, 0},
		{"copy out", ">Q <H <d <d <c <C <ZI", true, false, 0},
		{"copy out error", ">Q <H <d <E <ZI", true, false, 0},
		{"row during copy out", ">Q <H <T", false, true, 0},
		{"copy both is refused", ">Q <W", false, true, 0},
		{"stray copy data from the client", ">d >c", true, false, 0},
		{"injected parse is dropped", "+P >B >E >S <1 <2 <C <ZI", true, false, 1},
		{"injected parse error still reaches the client", "+P >B >E >S <E <ZI", true, false, 0},
		{"unknown client message", ">p", true, true, 0},
		{"unknown server message", ">Q <K", false, true, 0},
		{"malformed ReadyForQuery", ">Q <ZX", false, true, 0},
		{"broken stays broken", ">Q <K >Q <C <ZI", false, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker()
			got := play(tr, tc.script)
			fails, drops := false, 0
			for _, g := range got {
				fails = fails || g == "err"
				if g == "drop" {
					drops++
				}
			}
			if fails != tc.fails || drops != tc.drops {
				t.Errorf("%s: steps %v: fails %v drops %d, want fails %v drops %d", tc.script, got, fails, drops, tc.fails, tc.drops)
			}
			if !tc.fails {
				if tr.Idle() != tc.idle {
					t.Errorf("%s: Idle() = %v, want %v", tc.script, tr.Idle(), tc.idle)
				}
			} else {
				if tr.Idle() {
					t.Errorf("%s: a broken tracker reports idle", tc.script)
				}
				if !errors.Is(tr.Err(), ErrUnexpected) {
					t.Errorf("%s: Err() = %v", tc.script, tr.Err())
				}
			}
		})
	}
}

func TestTrackerStatus(t *testing.T) {
	tr := NewTracker()
	got := play(tr, ">Q <C <ZT >Q <E <ZE >Q <C <ZI")
	if d := cmp.Diff([]string{"ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok"}, got); d != "" {
		t.Fatal(d)
	}
	if tr.Status() != 'I' || !tr.Idle() {
		t.Fatalf("status %q idle %v", tr.Status(), tr.Idle())
	}
}

// FuzzTracker: no input makes the tracker panic, and it never reports idle while a
// request is unanswered or after an error.
func FuzzTracker(f *testing.F) {
	f.Add([]byte(">Q<C<ZI"))
	f.Add([]byte(">P>B>E>S<1<2<C<ZI"))
	f.Add([]byte(">Q<G>d>c<C<ZI"))
	f.Fuzz(func(t *testing.T, script []byte) {
		tr := NewTracker()
		for i := 0; i+1 < len(script); i += 2 {
			dir, typ := script[i], script[i+1]
			var err error
			switch dir % 3 {
			case 0:
				err = tr.Frontend(typ)
			case 1:
				err = tr.Inject(typ)
			default:
				body := []byte{"ITEX"[int(typ)%4]}
				_, err = tr.Backend(typ, body)
			}
			if err != nil && tr.Idle() {
				t.Fatal("idle after an error")
			}
			if tr.Idle() && tr.Outstanding() != 0 {
				t.Fatal("idle with requests outstanding")
			}
		}
	})
}
