//go:build !lab

package audit

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A host test: the lab guest has no browser.
// The HTML review is self-contained and its chart renders in headless Chromium.
func TestReviewHTMLInChromium(t *testing.T) {
	rev := labReview(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "review.html")
	var buf bytes.Buffer
	if err := rev.WriteHTML(&buf, time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	for _, s := range []string{"http://", "https://", "src="} {
		if strings.Contains(strings.ReplaceAll(html, "http://www.w3.org/2000/svg", ""), s) {
			t.Errorf("HTML refers to something outside the file: %q", s)
		}
	}
	if err := os.WriteFile(page, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is needed to check the HTML review (make setup installs it): %v", err)
	}
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + filepath.Join(dir, "profile"),
		"--virtual-time-budget=2000", "--window-size=1200,900"}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom, err := exec.CommandContext(ctx, chromium, append(args, "--dump-dom", "file://"+page)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	d := string(dom)
	// 14 denials from lab/run2 plus the client's 7 sepgsql ones, in a few time buckets.
	if !strings.Contains(d, `data-rendered="`) || strings.Contains(d, `data-rendered="0"`) {
		t.Errorf("chart not rendered: %s", firstLine(d, "<svg"))
	}
	if n := strings.Count(d, `class="bar"`); n < 3 {
		t.Errorf("chart has %d bars, want several", n)
	}
	if n := strings.Count(d, `class="change"`); n != 5 {
		t.Errorf("chart marks %d changes, want 5", n)
	}
	for _, s := range []string{"db:sepgadm_lab_client_t", "os:sepgadm_lab_client_t", "os:mount_t"} {
		if !strings.Contains(d, s) {
			t.Errorf("legend lacks series %q", s)
		}
	}
	shot := filepath.Join(dir, "review.png")
	if out, err := exec.CommandContext(ctx, chromium, append(args, "--screenshot="+shot, "file://"+page)...).CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	if dst := os.Getenv("SEPGADM_REVIEW_SCREENSHOT"); dst != "" {
		b, _ := os.ReadFile(shot)
		_ = os.WriteFile(dst, b, 0o644)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10000 {
		t.Errorf("screenshot missing or blank: %v", err)
	}
}
