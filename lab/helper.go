package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
)

// helperEnv names the helper a re-executed test binary should run instead of its tests.
const helperEnv = "SEPGADM_LAB_HELPER"

// Helper is code a lab test runs in another SELinux domain: the test binary re-executes
// itself under runcon and runs the helper instead of its tests. It reads its input as
// JSON from in and writes its output as JSON to out.
type Helper func(ctx context.Context, in io.Reader, out io.Writer) error

// HelperMain runs the helper named by the environment and returns its exit status, or
// returns -1 when this process is not a helper. Call it first in TestMain:
//
//	if code := lab.HelperMain(helpers); code >= 0 { os.Exit(code) }
func HelperMain(helpers map[string]Helper) int {
	name := os.Getenv(helperEnv)
	if name == "" {
		return -1
	}
	h, ok := helpers[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "lab helper %q does not exist\n", name)
		return 2
	}
	if err := h(context.Background(), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "lab helper %s: %v\n", name, err)
		return 1
	}
	return 0
}

// RunHelper runs the named helper of this test binary as the SELinux context as, with
// in encoded as JSON on its standard input, and decodes its JSON output into out. The
// binary must be an entrypoint of the domain (lab test binaries are labelled bin_t).
func RunHelper(ctx context.Context, as Context, name string, in, out any) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the test binary: %w", err)
	}
	input, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode helper input: %w", err)
	}
	cmd := exec.CommandContext(ctx, "runcon", append(as.runconArgs(), "--", exe)...)
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	cmd.Stdin = bytes.NewReader(input)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("helper %s as %s: %w: %s", name, as.Type, err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("helper %s as %s: decode output %q: %w", name, as.Type, stdout.String(), err)
	}
	return nil
}
