//go:build !lab

package proxy_test

import (
	"path/filepath"
	"testing"

	"github.com/sepgadm/sepgadm/proxy"
)

// The shipped examples must stay valid configurations.
func TestExamplesParse(t *testing.T) {
	files, err := filepath.Glob("../examples/*.toml")
	if err != nil || len(files) < 2 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		cfg, err := proxy.LoadConfig(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if filepath.Base(f) == "plain.toml" && cfg.Tagging != "off" {
			t.Errorf("plain.toml: tagging = %q", cfg.Tagging)
		}
	}
}
