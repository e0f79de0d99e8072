package image

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Ingest pipeline tuning: chunks of chunkSize, at most pipeDepth in flight.
// 4 MiB chunks keep direct writes efficient and hand-offs rare.
const (
	chunkSize   = 4 << 20
	pipeDepth   = 6
	directAlign = 4096
)

type chunk struct {
	buf  []byte // directAlign-aligned, chunkSize long
	n    int
	off  int64 // file offset of buf[0]
	refs atomic.Int32
}

// pipeline writes a byte stream to a file while computing its SHA-256 and
// SHA-512 in one pass. The reader fills chunks and hands each to three
// workers: SHA-512, SHA-256, and the file writer. The writer uses O_DIRECT
// where the file system allows it, so writing costs almost no CPU and
// leaves nothing for the final fsync; the cost of an ingest is then close to
// that of SHA-512 alone. Feed it with readFrom (any number of times, e.g.
// once per resumed HTTP response), then call finish exactly once.
type pipeline struct {
	f      *os.File // buffered descriptor
	direct *os.File // O_DIRECT descriptor on the same file, or nil
	free   chan *chunk
	work   []chan *chunk // sha512, sha256, and the file unless hashing only
	h256   hash.Hash
	h512   hash.Hash
	wg     sync.WaitGroup

	errMu sync.Mutex
	err   error // first write error

	n int64 // bytes accepted so far
}

// newPipeline returns a pipeline writing to f; with f nil it only hashes.
func newPipeline(f *os.File) *pipeline {
	p := &pipeline{
		f:    f,
		free: make(chan *chunk, pipeDepth),
		h256: sha256.New(),
		h512: sha512.New(),
	}
	workers := 3
	if f == nil {
		workers = 2
	} else if d, err := os.OpenFile(f.Name(), os.O_WRONLY|syscall.O_DIRECT, 0); err == nil {
		p.direct = d
	}
	p.work = make([]chan *chunk, workers)
	for i := range p.work {
		p.work[i] = make(chan *chunk, pipeDepth)
	}
	for range pipeDepth {
		p.free <- &chunk{buf: alignedBuffer(chunkSize)}
	}
	p.wg.Add(workers)
	go p.worker(p.work[0], func(c *chunk) { p.h512.Write(c.buf[:c.n]) })
	go p.worker(p.work[1], func(c *chunk) { p.h256.Write(c.buf[:c.n]) })
	if f == nil {
		return p
	}
	go p.worker(p.work[2], func(c *chunk) {
		if p.failed() != nil {
			return
		}
		if err := p.writeChunk(c); err != nil {
			p.fail(fmt.Errorf("write %s: %w", p.f.Name(), err))
		}
	})
	return p
}

func (p *pipeline) worker(in chan *chunk, do func(*chunk)) {
	defer p.wg.Done()
	for c := range in {
		do(c)
		if c.refs.Add(-1) == 0 {
			p.free <- c
		}
	}
}

// writeChunk writes the aligned part of a chunk with O_DIRECT and the rest
// (a short final chunk, or any chunk after a resumed download left the
// offset unaligned) through the page cache.
func (p *pipeline) writeChunk(c *chunk) error {
	b, off := c.buf[:c.n], c.off
	if p.direct != nil && off%directAlign == 0 {
		aligned := len(b) &^ (directAlign - 1)
		if aligned > 0 {
			if _, err := p.direct.WriteAt(b[:aligned], off); err == nil {
				b, off = b[aligned:], off+int64(aligned)
			} else {
				// The file system refuses direct writes after all: write
				// this and every later chunk through the page cache.
				p.direct.Close()
				p.direct = nil
			}
		}
	}
	if len(b) == 0 {
		return nil
	}
	_, err := p.f.WriteAt(b, off)
	return err
}

// alignedBuffer returns n bytes starting at a directAlign boundary.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := directAlign - int(uintptr(unsafe.Pointer(&b[0]))%directAlign)
	if skip == directAlign {
		skip = 0
	}
	return b[skip : skip+n : skip+n]
}

func (p *pipeline) fail(err error) {
	p.errMu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.errMu.Unlock()
}

func (p *pipeline) failed() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

// writeError wraps a local write failure so callers can tell it apart from a
// source read failure.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// readFrom feeds r into the pipeline until EOF. limit caps the total bytes
// accepted (0: no cap); exceeding it returns errTooLarge. onChunk, if set, is
// called with the running total after each chunk. A read error from r is
// returned as is; a local write failure as *writeError.
func (p *pipeline) readFrom(ctx context.Context, r io.Reader, limit int64, onChunk func(int64)) error {
	for {
		var c *chunk
		select {
		case c = <-p.free:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if err := p.failed(); err != nil {
			p.free <- c
			return &writeError{err}
		}
		n, rerr := fill(r, c.buf)
		if n > 0 {
			if limit > 0 && p.n+int64(n) > limit {
				p.free <- c
				return errTooLarge
			}
			c.n, c.off = n, p.n
			c.refs.Store(int32(len(p.work)))
			for _, w := range p.work {
				w <- c
			}
			p.n += int64(n)
			if onChunk != nil {
				onChunk(p.n)
			}
		} else {
			p.free <- c
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
	}
}

var errTooLarge = fmt.Errorf("file exceeds the size cap")

// fill reads into buf until it is full or r fails; io.EOF is returned only
// for a clean end of stream.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// finish stops the workers and returns the hex digests and the byte count.
func (p *pipeline) finish() (sum256, sum512 string, n int64, err error) {
	for _, w := range p.work {
		close(w)
	}
	p.wg.Wait()
	if p.direct != nil {
		p.direct.Close()
	}
	if err := p.failed(); err != nil {
		return "", "", p.n, &writeError{err}
	}
	return hex.EncodeToString(p.h256.Sum(nil)), hex.EncodeToString(p.h512.Sum(nil)), p.n, nil
}
