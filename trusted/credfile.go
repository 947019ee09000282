package trusted

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrTokenFileExposed means a credential file can be read by users other than its owner.
var ErrTokenFileExposed = errors.New("credential file is readable by group or others")

// WriteTokenFile writes token to path with mode 0600, atomically (a temporary file in
// the same directory, then rename). It refuses to replace an existing file that group
// or others can read: that token may already have leaked, and the caller should know.
func WriteTokenFile(path, token string) error {
	if fi, err := os.Lstat(path); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("write credential file %s: not a regular file", path)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return fmt.Errorf("write credential file %s (mode %04o): %w; refusing to overwrite it", path, fi.Mode().Perm(), ErrTokenFileExposed)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write credential file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write credential file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this finds nothing
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write credential file: %w", err)
	}
	if _, err := tmp.WriteString(token + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write credential file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write credential file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write credential file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write credential file: %w", err)
	}
	return nil
}

// ReadTokenFile reads a token written by WriteTokenFile. It refuses a file that group
// or others can read, and an empty one.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read credential file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read credential file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("read credential file %s (mode %04o): %w; chmod 600 it and rotate the credential", path, fi.Mode().Perm(), ErrTokenFileExposed)
	}
	b := make([]byte, 4096)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return "", fmt.Errorf("read credential file %s: %w", path, err)
	}
	token := strings.TrimSpace(string(b[:n]))
	if token == "" {
		return "", fmt.Errorf("read credential file %s: it is empty", path)
	}
	return token, nil
}
