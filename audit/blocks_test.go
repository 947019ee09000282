package audit

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// seenLine is what the test parser keeps of a line.
type seenLine struct {
	Text string
	Cut  bool
	N    int64
}

// readBlocks reads r through a blockReader and returns every line in order.
func readBlocks(t *testing.T, r io.Reader) ([]seenLine, error) {
	t.Helper()
	b := newBlockReader(r, "t", func() lineParser[seenLine] {
		return func(line []byte, cut bool, out *seenLine) {
			out.Text, out.Cut = string(line), cut
		}
	})
	defer b.close()
	var got []seenLine
	for {
		it, n, err := b.item()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		it.N = n
		got = append(got, *it)
	}
}

// splitLines is the reference: lines without their end of line, a line longer than
// maxLine cut there.
func splitLines(data string) []seenLine {
	var want []seenLine
	if data == "" {
		return nil
	}
	lines := strings.SplitAfter(data, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		l = string(trimEOL([]byte(l)))
		cut := len(l) > maxLine
		if cut {
			l = l[:maxLine]
		}
		want = append(want, seenLine{Text: l, Cut: cut, N: int64(i + 1)})
	}
	return want
}

func TestBlockReaderLines(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var big strings.Builder
	for big.Len() < 3*blockSize {
		n := rng.IntN(300)
		if rng.IntN(500) == 0 {
			n = blockSize/2 + rng.IntN(blockSize) // lines across block boundaries
		}
		big.WriteString(strings.Repeat("x", n))
		if rng.IntN(10) == 0 {
			big.WriteByte('\r')
		}
		big.WriteByte('\n')
	}
	long := strings.Repeat("L", maxLine+12345)
	tests := map[string]string{
		"empty":               "",
		"one line":            "a\n",
		"no final newline":    "a\nb",
		"blank lines":         "\n\n\na\n\n",
		"crlf":                "a\r\nb\r\n",
		"mixed sizes":         big.String(),
		"cut line":            "first\n" + long + "\nafter\n",
		"cut line at the end": "first\n" + long,
		"two cut lines":       long + "\n" + long + "\nend\n",
		"exactly maxLine":     strings.Repeat("m", maxLine) + "\nnext\n",
	}
	for name, data := range tests {
		for rname, wrap := range map[string]func(io.Reader) io.Reader{
			"whole":    func(r io.Reader) io.Reader { return r },
			"half":     iotest.HalfReader,
			"data+eof": iotest.DataErrReader,
		} {
			t.Run(name+"/"+rname, func(t *testing.T) {
				got, err := readBlocks(t, wrap(strings.NewReader(data)))
				if err != nil {
					t.Fatal(err)
				}
				want := splitLines(data)
				if len(got) != len(want) {
					t.Fatalf("read %d lines, want %d", len(got), len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("line %d: got %d bytes %.20q… cut=%v n=%d, want %d bytes %.20q… cut=%v n=%d", i,
							len(got[i].Text), got[i].Text, got[i].Cut, got[i].N, len(want[i].Text), want[i].Text, want[i].Cut, want[i].N)
					}
				}
			})
		}
	}
}

func TestBlockReaderError(t *testing.T) {
	boom := errors.New("disk on fire")
	r := io.MultiReader(strings.NewReader("a\nb\n"), iotest.ErrReader(boom))
	got, err := readBlocks(t, r)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "read t") {
		t.Fatalf("error = %v, want one naming the input and wrapping %v", err, boom)
	}
	if diff := cmp.Diff(splitLines("a\nb\n"), got); diff != "" {
		t.Errorf("lines before the error (-want +got):\n%s", diff)
	}
}

// TestBlockReaderClose stops reading early: the goroutines must not stay blocked.
func TestBlockReaderClose(t *testing.T) {
	data := bytes.Repeat([]byte("some line of text\n"), 4*blockSize/18)
	b := newBlockReader(bytes.NewReader(data), "t", func() lineParser[seenLine] {
		return func(line []byte, cut bool, out *seenLine) {}
	})
	if _, _, err := b.item(); err != nil {
		t.Fatal(err)
	}
	b.close()
	b.close() // twice is fine
	// The reading goroutine ends and closes order once it sees quit.
	for range b.order {
	}
}
