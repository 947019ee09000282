package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// runCLI runs sepgadm in process and returns its exit status and output streams.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"sepgadm"}, args...), strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestExitStatuses(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string // substring
	}{
		{"help", []string{"--help"}, exitOK, ""},
		{"no command shows help", nil, exitOK, ""},
		{"version", []string{"version"}, exitOK, ""},
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"unknown global flag", []string{"--frobnicate"}, exitUsage, "flag provided but not defined: -frobnicate"},
		{"unknown command flag", []string{"version", "--json"}, exitUsage, "flag provided but not defined: -json"},
		{"stray argument", []string{"version", "extra"}, exitUsage, `version takes no arguments, got ["extra"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit status = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if tt.wantStderr == "" && stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.wantStderr)
			}
		})
	}
}

func TestHelpDocumentsExitStatuses(t *testing.T) {
	_, stdout, _ := runCLI(t, "", "--help")
	for _, s := range exitStatuses {
		line := strings.TrimSpace(strings.SplitN(exitStatusHelp(), "\n", 2)[0])
		if line != "EXIT STATUS:" {
			t.Fatalf("exit status section starts with %q", line)
		}
		want := "  " + string(rune('0'+s.code)) + "  " + s.what
		if !strings.Contains(stdout, want) {
			t.Errorf("--help lacks exit status line %q", want)
		}
	}
}

// Only commands that work are registered: the help lists exactly these.
func TestRegisteredCommands(t *testing.T) {
	var got []string
	for _, c := range newApp(nil, nil, nil).Commands {
		got = append(got, c.Name)
	}
	want := []string{"proxy", "install", "migrate", "credential", "status", "audit", "audit2allow", "labels", "restorecon", "version"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("registered commands (-want +got):\n%s", diff)
	}
}

func TestVersion(t *testing.T) {
	_, stdout, _ := runCLI(t, "", "version")
	if !strings.HasPrefix(stdout, "sepgadm ") || !strings.Contains(stdout, " go1.") {
		t.Errorf("version = %q, want \"sepgadm VERSION ... goX.Y ...\"", stdout)
	}
}
