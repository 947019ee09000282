package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Exit statuses of sepgadm, in one place; the help text is generated from this table.
const (
	exitOK      = 0 // the command did what was asked
	exitCheck   = 1 // a check ran and found a problem (drift, not ready)
	exitUsage   = 2 // bad command line, configuration or input file; nothing was changed
	exitFailure = 3 // the command could not finish: connection, server or I/O error
)

var exitStatuses = []struct {
	code int
	what string
}{
	{exitOK, "success"},
	{exitCheck, "a check ran and found a problem (drift, not ready)"},
	{exitUsage, "bad command line, configuration or input; nothing was changed"},
	{exitFailure, "could not finish: connection, server or I/O error"},
}

// exitStatusHelp is the EXIT STATUS section of the help text.
func exitStatusHelp() string {
	var b strings.Builder
	b.WriteString("EXIT STATUS:\n")
	for _, s := range exitStatuses {
		fmt.Fprintf(&b, "   %d  %s\n", s.code, s.what)
	}
	return b.String()
}

// usageError marks an error as the user's input being wrong (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// checkFailed means a check ran to completion and its answer is "no" (exit 1). The
// command has already printed its findings; msg is the one-line verdict.
type checkFailed struct{ msg string }

func (e checkFailed) Error() string { return e.msg }

// exitCode maps a command's error to sepgadm's exit status and prints it.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "sepgadm: %v\n", err)
	var ue usageError
	var cf checkFailed
	switch {
	case errors.As(err, &cf):
		return exitCheck
	case errors.As(err, &ue):
		return exitUsage
	default:
		return exitFailure
	}
}
