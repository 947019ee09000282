package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func labReview(t *testing.T) *Review {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "sessions-synthetic.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	sr := NewSessionReader(f, "sessions")
	rev := NewReview(sr, 5*time.Second)
	var rs []Reader
	for _, p := range []string{"postgresql.csv", "audit.log"} {
		r, _, err := OpenReader(context.Background(), filepath.Join("..", "testdata", "lab", "run2", p), FormatAuto, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	m := Merge(rs...)
	defer m.Close()
	for {
		e, err := m.Next()
		if err != nil {
			break
		}
		if err := rev.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	if st := sr.Stats(); st.Malformed != 1 {
		t.Errorf("session log: %d malformed, want 1 (%v)", st.Malformed, st.Examples)
	}
	return rev
}

func TestReviewAttribution(t *testing.T) {
	rev := labReview(t)
	got := map[int]string{}
	for _, it := range rev.Items {
		if it.Event.Source != SourceDB {
			continue
		}
		sid := "-"
		if it.Session != nil {
			sid = it.Session.SessionID + " " + it.Session.ClientAddr + " " + it.Session.DBUser
		}
		got[it.Event.PID] = sid
	}
	want := map[int]string{
		437: "s1 unix postgres",      // connect
		439: "s1 unix postgres",      // tag moved s1 to backend 439, fields kept
		441: "s2 10.0.0.5:5555 bob",  // TCP client
		443: "-",                     // no session on that backend
		445: "s3 unix postgres",      // after its connect
		447: "-", 457: "-", 463: "-", // sessions gone
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attribution by backend pid (-want +got):\n%s", diff)
	}
	if len(rev.Changes) != 5 {
		t.Errorf("changes = %d, want 5 (3 MAC_STATUS, MAC_CONFIG_CHANGE, MAC_POLICY_LOAD)", len(rev.Changes))
	}
	var text bytes.Buffer
	if err := rev.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"session s1 client unix peer pid 4001 label system_u:system_r:sepgadm_lab_client_t:s0 os_user alice",
		"related: 19:49:37.032 os denied {net_admin} capability",             // same domain within 5 s
		"related: 19:49:36.438 db denied {dyntransition} process session s3", // peer pid 449 = systemctl
		"after MAC_POLICY_LOAD",
		"after MAC_STATUS enforcing=0 old_enforcing=1",
	} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("review text lacks %q", s)
		}
	}
	if t.Failed() {
		t.Log(text.String())
	}
}

func firstLine(s, from string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.IndexByte(s, '\n'); j >= 0 {
		s = s[:j]
	}
	return s
}
