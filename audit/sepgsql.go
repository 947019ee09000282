package audit

import (
	"errors"
	"strconv"
	"strings"
)

// sepgsqlMarker starts every sepgsql audit message.
const sepgsqlMarker = "SELinux: "

var errNotSepgsql = errors.New("not a sepgsql audit message")

// parseSepgsql fills e from a sepgsql audit message:
//
//	SELinux: denied { select } scontext=C tcontext=C tclass=db_table name="public.ta" permissive=0
//
// name= is optional and not escaped: it runs to the last `" permissive=`. A trailing
// ` at character N` (stderr logs) is dropped. It returns errNotSepgsql for other SELinux:
// messages (such as "SELinux: security policy violation") and a descriptive error for a
// damaged audit line.
//
// perms, if not nil, splits the permission list (a reader may share the slices of
// repeated lists); nil is strings.Fields.
func parseSepgsql(msg string, e *Event, perms func(string) []string) error {
	rest, ok := strings.CutPrefix(msg, sepgsqlMarker)
	if !ok {
		return errNotSepgsql
	}
	switch {
	case strings.HasPrefix(rest, "denied {"):
		e.Result, rest = ResultDenied, rest[len("denied {"):]
	case strings.HasPrefix(rest, "allowed {"):
		e.Result, rest = ResultAllowed, rest[len("allowed {"):]
	default:
		return errNotSepgsql
	}
	end := strings.Index(rest, " }")
	if end < 0 {
		return errors.New("sepgsql audit line: no closing } after the permissions")
	}
	if perms == nil {
		perms = strings.Fields
	}
	e.Perms = perms(rest[:end])
	if len(e.Perms) == 0 {
		return errors.New("sepgsql audit line: no permissions")
	}
	rest = rest[end+2:]
	// Drop " at character N". (Both it and permissive= are looked for at the end first:
	// strings.LastIndex from the end of a long line cost a tenth of the stderr reader.)
	d := len(rest)
	for d > 0 && rest[d-1] >= '0' && rest[d-1] <= '9' {
		d--
	}
	if d < len(rest) && strings.HasSuffix(rest[:d], " at character ") {
		rest = rest[:d-len(" at character ")]
	}
	var perm string
	if n := len(rest) - len(" permissive=0"); n >= 0 && rest[n:len(rest)-1] == " permissive=" {
		perm, rest = rest[len(rest)-1:], rest[:n]
	} else if i := strings.LastIndex(rest, " permissive="); i >= 0 {
		perm = rest[i+len(" permissive="):]
		rest = rest[:i]
	} else {
		return errors.New("sepgsql audit line: no permissive=")
	}
	switch perm {
	case "0":
	case "1":
		e.Permissive = true
	default:
		return errors.New("sepgsql audit line: permissive= is neither 0 nor 1")
	}
	e.HasPermissive = true
	if i := strings.Index(rest, ` name="`); i >= 0 {
		name := rest[i+len(` name="`):]
		if !strings.HasSuffix(name, `"`) {
			return errors.New(`sepgsql audit line: name= does not end with "`)
		}
		e.Name = name[:len(name)-1]
		rest = rest[:i]
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{" scontext=", &e.SContext}, {" tcontext=", &e.TContext}, {" tclass=", &e.TClass}} {
		v, r, ok := cutField(rest, f.key)
		if !ok {
			return errors.New("sepgsql audit line: no" + f.key)
		}
		*f.dst, rest = v, r
	}
	if strings.TrimSpace(rest) != "" {
		return errors.New("sepgsql audit line: unexpected text " + strconv.Quote(rest))
	}
	e.Source = SourceDB
	e.RecordType = "SEPGSQL"
	return nil
}

// cutField expects rest to start with key and returns the value up to the next space.
func cutField(rest, key string) (val, after string, ok bool) {
	if !strings.HasPrefix(rest, key) {
		return "", rest, false
	}
	rest = rest[len(key):]
	i := strings.IndexByte(rest, ' ')
	if i < 0 {
		return rest, "", rest != ""
	}
	return rest[:i], rest[i:], i > 0
}
