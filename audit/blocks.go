package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// The audit-log and stderr readers parse lines on more than one core: a reading
// goroutine cuts the input into blocks of whole lines, workers turn every line of a
// block into a parsed item (fields split, timestamps and contexts read, events built),
// and Next takes the blocks back in input order to do what depends on earlier lines
// (joining SYSCALL records to their AVCs, matching statements to denials). Only that
// ordered part, the filter and the output stay on one core.

// blockSize is how much input a worker parses at a time.
const blockSize = 1 << 20

// maxWorkers bounds the parsing goroutines of one reader.
const maxWorkers = 4

// lineBlock is a run of whole lines and, once done is closed, their parsed items.
type lineBlock[T any] struct {
	data  []byte
	items []T   // one per line
	err   error // the read error that ended the input (data is then empty)
	done  chan struct{}
}

// lineParser parses one line (without its end of line) into out. A parser belongs to
// one worker, so it may keep caches of its own.
type lineParser[T any] func(line []byte, cut bool, out *T)

// blockReader runs the reading goroutine and the workers of one input.
type blockReader[T any] struct {
	order chan *lineBlock[T] // blocks in input order
	free  chan *lineBlock[T] // blocks for reuse
	quit  chan struct{}
	stop  sync.Once
	cur   *lineBlock[T]
	next  int   // next item of cur
	line  int64 // line number of cur's first line
}

// newBlockReader starts reading r (named name in errors) with one parser per worker.
func newBlockReader[T any](r io.Reader, name string, newParser func() lineParser[T]) *blockReader[T] {
	workers := min(max(runtime.GOMAXPROCS(0), 1), maxWorkers)
	b := &blockReader[T]{
		order: make(chan *lineBlock[T], 2*workers+2),
		free:  make(chan *lineBlock[T], 2*workers+4),
		quit:  make(chan struct{}),
	}
	work := make(chan *lineBlock[T], workers)
	for range workers {
		parse := newParser()
		go func() {
			for blk := range work {
				blk.parse(parse)
				close(blk.done)
			}
		}()
	}
	go b.read(r, name, work)
	return b
}

// parse fills blk.items from blk.data.
func (blk *lineBlock[T]) parse(parse lineParser[T]) {
	data := blk.data
	blk.items = blk.items[:0]
	var zero T
	for len(data) > 0 {
		j := bytes.IndexByte(data, '\n')
		line := data
		if j >= 0 {
			line, data = data[:j+1], data[j+1:]
		} else {
			data = nil
		}
		line = trimEOL(line)
		cut := len(line) > maxLine
		if cut {
			line = line[:maxLine]
		}
		blk.items = append(blk.items, zero)
		parse(line, cut, &blk.items[len(blk.items)-1])
	}
}

// get returns a block to fill, or nil once the reader is closed.
func (b *blockReader[T]) get() *lineBlock[T] {
	select {
	case blk := <-b.free:
		blk.data, blk.err = blk.data[:0], nil
		blk.done = make(chan struct{})
		return blk
	case <-b.quit:
		return nil
	default:
		return &lineBlock[T]{data: make([]byte, 0, blockSize), done: make(chan struct{})}
	}
}

// send queues blk for a worker and for Next; false once the reader is closed.
func (b *blockReader[T]) send(blk *lineBlock[T], work chan<- *lineBlock[T]) bool {
	select {
	case b.order <- blk:
	case <-b.quit:
		return false
	}
	if blk.err != nil {
		close(blk.done)
		return true
	}
	select {
	case work <- blk:
		return true
	case <-b.quit:
		return false
	}
}

// read cuts r into blocks of whole lines. Of a line longer than maxLine, the block
// gets the first maxLine+1 bytes (the parser cuts it and says so) and the rest is
// skipped, so that no input can make a block grow without bound.
func (b *blockReader[T]) read(r io.Reader, name string, work chan<- *lineBlock[T]) {
	defer close(work)
	defer close(b.order)
	var carry []byte // the unfinished last line of the previous block
	skipping := false
	for {
		blk := b.get()
		if blk == nil {
			return
		}
		blk.data = append(blk.data, carry...)
		carry = carry[:0]
		open := 0 // where the unfinished line starts
		if j := bytes.LastIndexByte(blk.data, '\n'); j >= 0 {
			open = j + 1
		}
		var rerr error
		for rerr == nil && (open == 0 || len(blk.data) < blockSize/2) {
			if cap(blk.data)-len(blk.data) < blockSize/4 {
				blk.data = append(blk.data, make([]byte, blockSize)...)[:len(blk.data)]
			}
			start := len(blk.data)
			n, err := r.Read(blk.data[start:cap(blk.data)])
			blk.data, rerr = blk.data[:start+n], err
			if skipping {
				// Drop the rest of a cut line.
				j := bytes.IndexByte(blk.data[start:], '\n')
				if j < 0 {
					blk.data = blk.data[:start]
					continue
				}
				blk.data = blk.data[:start+copy(blk.data[start:], blk.data[start+j+1:])]
				skipping = false
			}
			if j := bytes.LastIndexByte(blk.data[start:], '\n'); j >= 0 {
				open = start + j + 1
			}
			if len(blk.data)-open > maxLine {
				blk.data = append(blk.data[:open+maxLine+1], '\n')
				open, skipping = len(blk.data), true
				break
			}
		}
		if rerr == nil {
			// Keep whole lines; the rest starts the next block.
			carry = append(carry, blk.data[open:]...)
			blk.data = blk.data[:open]
		}
		if len(blk.data) > 0 && !b.send(blk, work) {
			return
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return
			}
			end := b.get()
			if end == nil {
				return
			}
			end.err = fmt.Errorf("read %s: %w", name, rerr)
			b.send(end, work)
			return
		}
	}
}

// putBack offers a block Next has finished with for reuse.
func (b *blockReader[T]) putBack(blk *lineBlock[T]) {
	if cap(blk.data) > 2*blockSize {
		return // let an outsized buffer go
	}
	select {
	case b.free <- blk:
	default:
	}
}

// item returns the next line's item and its line number, or io.EOF after the last.
func (b *blockReader[T]) item() (*T, int64, error) {
	for b.cur == nil || b.next == len(b.cur.items) {
		if b.cur != nil {
			b.line += int64(len(b.cur.items))
			b.putBack(b.cur)
			b.cur = nil
		}
		blk, ok := <-b.order
		if !ok {
			return nil, 0, io.EOF
		}
		<-blk.done
		if blk.err != nil {
			return nil, 0, blk.err
		}
		b.cur, b.next = blk, 0
	}
	it := &b.cur.items[b.next]
	b.next++
	return it, b.line + int64(b.next), nil
}

// close stops the goroutines (a worker finishes the block it has).
func (b *blockReader[T]) close() {
	b.stop.Do(func() { close(b.quit) })
}
