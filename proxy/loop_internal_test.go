package proxy

import (
	"testing"

	"golang.org/x/sys/unix"
)

// An event's key names its slot, generation and side exactly, up to the generation's
// wrap (a slot is reused for as long as the proxy runs).
func TestEventKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		slot   int32
		gen    uint32
		server bool
	}{
		{0, 0, false}, {0, 0, true}, {7, 1, false}, {1 << 20, 12345, true},
		{3, genMask, false}, {3, genMask, true}, {3, genMask - 1, true},
	} {
		slot, gen, server := eventKey(eventFor(tc.slot, tc.gen, tc.server, unix.EPOLLIN))
		if slot != tc.slot || gen != tc.gen || server != tc.server {
			t.Errorf("eventFor(%d, %d, %v) read back as (%d, %d, %v)", tc.slot, tc.gen, tc.server, slot, gen, server)
		}
	}
	if next := (uint32(genMask) + 1) & genMask; next != 0 {
		t.Errorf("the generation after %d is %d, want 0", genMask, next)
	}
}
