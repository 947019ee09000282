// Command loggen writes the audit benchmark's synthetic logs:
//
//	loggen -kind audit|pgstderr -size BYTES -o FILE
//
// and prints what it wrote (bytes, lines, denials) as one line of JSON.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/sepgadm/sepgadm/bench/loggen"
)

func main() {
	kind := flag.String("kind", "audit", "audit or pgstderr")
	size := flag.Int64("size", 100<<20, "approximate size in bytes")
	out := flag.String("o", "", "output file")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "loggen: -o FILE is required")
		os.Exit(2)
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loggen: %v\n", err)
		os.Exit(1)
	}
	var c loggen.Counts
	switch *kind {
	case "audit":
		c, err = loggen.AuditLog(f, *size, *seed)
	case "pgstderr":
		c, err = loggen.PGStderrLog(f, *size, *seed)
	default:
		err = fmt.Errorf("unknown -kind %q", *kind)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loggen: %v\n", err)
		os.Exit(1)
	}
	b, _ := json.Marshal(c)
	fmt.Println(string(b))
}
