package metadata

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The guest side of the service is one byte stream, not one connection per
// request: qemu's slirp forwards every guest TCP connection to
// 169.254.169.254:80 into a single chardev socket (guestfwd=…-tcp:ADDR), which
// connects to the server's stream address. The guest's connections arrive on
// that stream one after another, without boundaries, and slirp hands whatever
// the server writes back to the guest's newest connection to that address. So
// the stream is served as sequential HTTP/1.x requests: every answer carries a
// Content-Length and never closes the stream (the guest's client closes its own
// connection once it has read the body). A request that does not parse (a guest
// that sent half a request and hung up, or garbage) is answered 400 and the stream
// is closed; qemu reconnects within a second and the next request starts clean.
//
// The cost of a guest's connections is therefore bounded by construction: no
// host process per connection, at most maxStreams stream connections per job,
// and per request at most maxStreamRequest bytes read and one answer buffered.
const (
	// maxStreams bounds concurrent stream connections (qemu holds one; a
	// reconnect may briefly overlap the old one).
	maxStreams = 4
	// maxStreamRequest bounds one request's header and body.
	maxStreamRequest = 64 << 10
	// streamRequestTimeout bounds reading the rest of a request once its first
	// byte arrived, and writing its answer.
	streamRequestTimeout = 10 * time.Second
)

// StreamStats counts what the stream side did, for tests and logs.
type StreamStats struct {
	Connections int // stream connections accepted
	Refused     int // connections closed at once because maxStreams were open
	Requests    int // requests answered
	Resets      int // streams closed after a request that did not parse or overran a limit
}

// stream is the server's guest-stream listener and its accounting.
type stream struct {
	ln    net.Listener
	slots chan struct{}

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	stats StreamStats
	done  bool
}

func (s *Server) startStream() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("metadata: listen stream: %w", err)
	}
	s.stream = &stream{ln: ln, slots: make(chan struct{}, maxStreams), conns: map[net.Conn]struct{}{}}
	go s.acceptStreams()
	return nil
}

// StreamAddr is the loopback host:port qemu's guestfwd chardev connects to.
func (s *Server) StreamAddr() string { return s.stream.ln.Addr().String() }

// StreamStats returns the stream side's counters so far.
func (s *Server) StreamStats() StreamStats {
	s.stream.mu.Lock()
	defer s.stream.mu.Unlock()
	return s.stream.stats
}

func (s *Server) acceptStreams() {
	st := s.stream
	for {
		c, err := st.ln.Accept()
		if err != nil {
			return
		}
		select {
		case st.slots <- struct{}{}:
		default:
			st.mu.Lock()
			st.stats.Refused++
			st.mu.Unlock()
			c.Close()
			continue
		}
		st.mu.Lock()
		if st.done {
			st.mu.Unlock()
			c.Close()
			return
		}
		st.conns[c] = struct{}{}
		st.stats.Connections++
		st.mu.Unlock()
		go func() {
			defer func() { <-st.slots }()
			s.serveStream(c)
			st.mu.Lock()
			delete(st.conns, c)
			st.mu.Unlock()
			c.Close()
		}()
	}
}

// closeStream stops accepting and closes every stream connection.
func (s *Server) closeStream() {
	st := s.stream
	st.ln.Close()
	st.mu.Lock()
	st.done = true
	for c := range st.conns {
		c.Close()
	}
	st.mu.Unlock()
}

// serveStream answers the requests on one stream connection in order until it
// ends or a request breaks the framing.
func (s *Server) serveStream(c net.Conn) {
	lim := &io.LimitedReader{R: c}
	br := bufio.NewReaderSize(lim, 4096)
	for {
		// Between requests the stream idles for as long as the guest likes.
		c.SetReadDeadline(time.Time{})
		lim.N = maxStreamRequest
		if _, err := br.Peek(1); err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(streamRequestTimeout))
		req, err := http.ReadRequest(br)
		switch {
		case err != nil:
		case len(req.TransferEncoding) > 0:
			// Metadata requests have no body worth streaming; a chunked one
			// is a guest probing the parser.
			err = errors.New("transfer-encoding not accepted")
		case req.ContentLength > maxStreamRequest:
			err = errors.New("body too large")
		}
		if err == nil {
			_, err = io.Copy(io.Discard, req.Body)
		}
		if err != nil {
			s.countStream(func(st *StreamStats) { st.Resets++ })
			s.log.Debug("metadata stream reset", "error", err)
			writeAnswer(c, nil, http.StatusBadRequest, http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, []byte("bad request\n"))
			hangUp(c)
			return
		}
		req.RemoteAddr = "guestfwd"
		rec := &bufferedAnswer{header: http.Header{}, status: http.StatusOK}
		s.ServeHTTP(rec, req)
		if err := writeAnswer(c, req, rec.status, rec.header, rec.body.Bytes()); err != nil {
			// The guest stopped reading (slirp has no connection to hand the
			// answer to): start over on a fresh stream.
			s.countStream(func(st *StreamStats) { st.Resets++ })
			return
		}
		s.countStream(func(st *StreamStats) { st.Requests++ })
	}
}

// hangUp closes the sending side and drains briefly what the peer still sends,
// so the close does not turn into a reset that discards the 400 before the
// peer has read it.
func hangUp(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(c, maxStreamRequest))
}

func (s *Server) countStream(f func(*StreamStats)) {
	s.stream.mu.Lock()
	f(&s.stream.stats)
	s.stream.mu.Unlock()
}

// writeAnswer writes one HTTP/1.1 response with a Content-Length and no
// "Connection: close", whatever the request asked: the stream outlives it.
func writeAnswer(w io.Writer, req *http.Request, status int, h http.Header, body []byte) error {
	resp := &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Request:       req,
		Header:        h,
		ContentLength: int64(len(body)),
		Body:          io.NopCloser(bytes.NewReader(body)),
	}
	h.Del("Connection")
	return resp.Write(w)
}

// bufferedAnswer is the http.ResponseWriter for one stream request: the whole
// answer is buffered so its length is known before it is written.
type bufferedAnswer struct {
	header      http.Header
	status      int
	wroteHeader bool
	body        bytes.Buffer
}

func (a *bufferedAnswer) Header() http.Header { return a.header }

func (a *bufferedAnswer) WriteHeader(code int) {
	if !a.wroteHeader {
		a.status, a.wroteHeader = code, true
	}
}

func (a *bufferedAnswer) Write(p []byte) (int, error) {
	a.wroteHeader = true
	return a.body.Write(p)
}
