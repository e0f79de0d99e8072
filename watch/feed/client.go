package feed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// Client limits.
const (
	// DefaultMaxDocument bounds one feed document (Ubuntu's products JSON is the
	// largest real one, tens of MiB).
	DefaultMaxDocument = 64 << 20
	// DefaultRequestTimeout bounds one request, headers and body.
	DefaultRequestTimeout = time.Minute
)

// Client fetches the documents of one feed check. It is used by one check at a time.
type Client struct {
	// HTTP sends the requests (nil: a client without redirects to other schemes).
	HTTP *http.Client
	// Timeout bounds each request (0: DefaultRequestTimeout); a server that hangs
	// is an ErrUnavailable after it.
	Timeout time.Duration
	// MaxDocument bounds one document's size (0: DefaultMaxDocument).
	MaxDocument int64
	// Prev holds the validators of the last successful check, by URL; the entry
	// document (the one that changes when the feed does) is requested with them.
	Prev map[string]jobs.Validator
	// Next receives the entry document's validators from this check.
	Next map[string]jobs.Validator
	// requests counts requests sent, for metrics and benchmarks.
	requests atomic.Int64
}

// Requests returns how many HTTP requests the client sent.
func (c *Client) Requests() int64 { return c.requests.Load() }

var defaultHTTP = &http.Client{
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("more than 5 redirects")
		}
		if req.URL.Scheme != "https" && req.URL.Scheme != "http" {
			return fmt.Errorf("redirect to unsupported scheme %q", req.URL.Scheme)
		}
		return nil
	},
}

// entry fetches the document that changes whenever the feed does, conditionally:
// when the server answers 304 the read ends with ErrNotModified.
func (c *Client) entry(ctx context.Context, url string) ([]byte, error) {
	return c.fetch(ctx, http.MethodGet, url, true)
}

// get fetches a document unconditionally.
func (c *Client) get(ctx context.Context, url string) ([]byte, error) {
	return c.fetch(ctx, http.MethodGet, url, false)
}

// Head asks for an artefact's headers and returns its Content-Length (-1 when the
// server does not say): an artefact listed in the checksums but not yet on the server
// (mirrors sync checksums first) is ErrUnavailable.
func (c *Client) Head(ctx context.Context, url string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return 0, &Error{URL: url, Kind: ErrMalformed, Err: err}
	}
	req.Header.Set("User-Agent", "imagevet-watch")
	c.requests.Add(1)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return 0, &Error{URL: url, Kind: ErrUnavailable, Err: err}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, &Error{URL: url, Kind: ErrUnavailable, Err: fmt.Errorf("HEAD: %s", resp.Status)}
	}
	return resp.ContentLength, nil
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultRequestTimeout
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

func (c *Client) fetch(ctx context.Context, method, url string, conditional bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, &Error{URL: url, Kind: ErrMalformed, Err: err}
	}
	req.Header.Set("User-Agent", "imagevet-watch")
	if v, ok := c.Prev[url]; ok && conditional {
		if v.ETag != "" {
			req.Header.Set("If-None-Match", v.ETag)
		}
		if v.LastModified != "" {
			req.Header.Set("If-Modified-Since", v.LastModified)
		}
	}
	c.requests.Add(1)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, &Error{URL: url, Kind: ErrUnavailable, Err: err}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && conditional:
		if c.Next != nil {
			c.Next[url] = c.Prev[url]
		}
		return nil, ErrNotModified
	case resp.StatusCode != http.StatusOK:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, &Error{URL: url, Kind: ErrUnavailable, Err: fmt.Errorf("GET: %s", resp.Status)}
	}
	max := c.MaxDocument
	if max <= 0 {
		max = DefaultMaxDocument
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, &Error{URL: url, Kind: ErrUnavailable, Err: err}
	}
	if int64(len(data)) > max {
		return nil, malformed(url, "document larger than %d bytes", max)
	}
	if conditional && c.Next != nil {
		v := jobs.Validator{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
		if v != (jobs.Validator{}) {
			c.Next[url] = v
		}
	}
	return data, nil
}
