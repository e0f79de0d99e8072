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
)

// Ingest pipeline tuning: chunks of chunkSize, at most pipeDepth in flight.
// Measured on the 2-core build host with BenchmarkIngest: 1 MiB x 8 keeps
// both hashes busy without letting the reader run far ahead.
const (
	chunkSize = 1 << 20
	pipeDepth = 8
)

type chunk struct {
	buf  []byte
	n    int
	refs atomic.Int32
}

// pipeline writes a byte stream to a file while computing its SHA-256 and
// SHA-512 in one pass. The reader fills chunks; one goroutine hashes SHA-512,
// another writes the file and hashes SHA-256, so the cost is close to the
// slower of the two instead of their sum. Feed it with readFrom (any number
// of times, e.g. once per resumed HTTP response), then call finish once.
type pipeline struct {
	f      *os.File
	free   chan *chunk
	to512  chan *chunk
	toFile chan *chunk
	h256   hash.Hash
	h512   hash.Hash
	wg     sync.WaitGroup

	errMu sync.Mutex
	err   error // first write error

	n int64 // bytes accepted so far
}

func newPipeline(f *os.File) *pipeline {
	p := &pipeline{
		f:      f,
		free:   make(chan *chunk, pipeDepth),
		to512:  make(chan *chunk, pipeDepth),
		toFile: make(chan *chunk, pipeDepth),
		h256:   sha256.New(),
		h512:   sha512.New(),
	}
	for range pipeDepth {
		p.free <- &chunk{buf: make([]byte, chunkSize)}
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		for c := range p.to512 {
			p.h512.Write(c.buf[:c.n])
			p.release(c)
		}
	}()
	go func() {
		defer p.wg.Done()
		for c := range p.toFile {
			if p.failed() == nil {
				if _, err := p.f.Write(c.buf[:c.n]); err != nil {
					p.fail(fmt.Errorf("write %s: %w", p.f.Name(), err))
				}
				p.h256.Write(c.buf[:c.n])
			}
			p.release(c)
		}
	}()
	return p
}

func (p *pipeline) release(c *chunk) {
	if c.refs.Add(-1) == 0 {
		p.free <- c
	}
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
			c.n = n
			c.refs.Store(2)
			p.to512 <- c
			p.toFile <- c
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
	close(p.to512)
	close(p.toFile)
	p.wg.Wait()
	if err := p.failed(); err != nil {
		return "", "", p.n, &writeError{err}
	}
	return hex.EncodeToString(p.h256.Sum(nil)), hex.EncodeToString(p.h512.Sum(nil)), p.n, nil
}
