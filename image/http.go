package image

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/imagevet/imagevet/retry"
)

// transientError is a failure worth retrying: network errors, 5xx, 429.
type transientError struct {
	err        error
	retryAfter time.Duration
}

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

var errStalled = errors.New("no data received within the stall timeout")

// maxAttempts bounds attempts that keep making progress, so a server that
// always drops the connection after a few bytes cannot keep a job forever.
const maxAttempts = 50

// httpGet sends one GET (with an optional Range start) and classifies the
// response: 200/206 are returned open; 408, 429 and 5xx are transient; other
// statuses are a SourceError on field. The caller closes the body.
func (s *Store) httpGet(ctx context.Context, url string, from int64, field string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, &SourceError{Field: field, Err: err}
	}
	req.Header.Set("User-Agent", "imagevet")
	if from > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", from))
	}
	resp, err := s.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		var unknownCA x509.UnknownAuthorityError
		var hostErr x509.HostnameError
		var certErr *tls.CertificateVerificationError
		if errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &certErr) {
			return nil, &SourceError{Field: field, Err: err}
		}
		return nil, &transientError{err: err}
	}
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent:
		return resp, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		drain(resp)
		return nil, &transientError{
			err:        fmt.Errorf("GET %s: %s", url, resp.Status),
			retryAfter: parseRetryAfter(resp.Header.Get("Retry-After")),
		}
	default:
		drain(resp)
		return nil, &SourceError{Field: field, Err: fmt.Errorf("GET %s: %s", url, resp.Status)}
	}
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// backoff waits before retry number n (1-based), honouring Retry-After up
// to the maximum backoff. It returns the context's cause if cancelled first.
func (s *Store) backoff(ctx context.Context, n int, retryAfter time.Duration) error {
	d := retry.Policy{Initial: s.retryBackoff, Max: s.maxBackoff, Jitter: 0.25}.Delay(n)
	if retryAfter > d {
		d = min(retryAfter, 2*s.maxBackoff)
	}
	return retry.Wait(ctx, d)
}

// download streams an http(s) URL into f through a hashing pipeline. After
// transient failures it retries with backoff and resumes with a Range
// request when the server advertised byte ranges; a server that answers a
// Range request with 200 restarts the stream from zero.
func (s *Store) download(ctx context.Context, url, file string, f *os.File, progress func(done, total int64)) (sum256, sum512 string, n int64, err error) {
	p := newPipeline(f)
	defer func() {
		if p != nil {
			p.finish()
		}
	}()
	total := int64(-1)
	rangeOK := false
	failures, attempts := 0, 0
	for {
		attempts++
		before := p.n
		aerr := s.downloadAttempt(ctx, url, file, f, &p, &total, &rangeOK, progress)
		if aerr == nil {
			break
		}
		var te *transientError
		if !errors.As(aerr, &te) {
			return "", "", 0, aerr
		}
		if p.n > before {
			failures = 0
		}
		failures++
		if failures > s.retries || attempts >= maxAttempts {
			return "", "", 0, &FetchError{URL: url, Retryable: true, Err: fmt.Errorf("giving up after %d attempts: %w", attempts, te.err)}
		}
		s.log.Warn("image download failed, retrying", "url", url, "attempt", attempts, "done", p.n, "err", te.err)
		if err := s.backoff(ctx, failures, te.retryAfter); err != nil {
			return "", "", 0, err
		}
	}
	sum256, sum512, n, err = p.finish()
	p = nil
	if err != nil {
		return "", "", 0, &FetchError{URL: url, Retryable: true, Err: err}
	}
	return sum256, sum512, n, nil
}

// downloadAttempt runs one GET. It replaces *pp with a fresh pipeline (and
// truncates f) when the stream must restart from zero.
func (s *Store) downloadAttempt(ctx context.Context, url, file string, f *os.File, pp **pipeline, total *int64, rangeOK *bool, progress func(done, total int64)) error {
	from := int64(0)
	if *rangeOK {
		from = (*pp).n
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(s.stallTimeout, func() { cancel(errStalled) })
	defer watchdog.Stop()

	resp, err := s.httpGet(actx, url, from, FieldSource)
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if errors.Is(context.Cause(actx), errStalled) {
			return &transientError{err: errStalled}
		}
		return err
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != (*pp).n {
			*rangeOK = false
			return &transientError{err: fmt.Errorf("GET %s: unusable Content-Range %q at offset %d", url, resp.Header.Get("Content-Range"), (*pp).n)}
		}
		*total = size
	default: // 200: the whole file from byte 0
		if (*pp).n > 0 {
			s.log.Info("image server restarted the download from zero", "url", url, "discarded", (*pp).n)
			(*pp).finish()
			*pp = nil
			if err := f.Truncate(0); err != nil {
				return &FetchError{URL: url, Retryable: true, Err: err}
			}
			*pp = newPipeline(f)
		}
		*total = resp.ContentLength
		*rangeOK = strings.EqualFold(resp.Header.Get("Accept-Ranges"), "bytes")
	}
	if *total > s.maxSize {
		return unsafeErr(file, ViolationTooLarge, "file is %d bytes, above the cap of %d bytes", *total, s.maxSize)
	}
	p := *pp
	body := &stallReader{r: resp.Body, timer: watchdog, d: s.stallTimeout}
	err = p.readFrom(ctx, body, s.maxSize, func(done int64) {
		if progress != nil {
			progress(done, *total)
		}
	})
	var we *writeError
	switch {
	case err == nil:
	case errors.Is(err, errTooLarge):
		return unsafeErr(file, ViolationTooLarge, "file exceeds the cap of %d bytes", s.maxSize)
	case errors.As(err, &we):
		return &FetchError{URL: url, Retryable: true, Err: err}
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case errors.Is(context.Cause(actx), errStalled):
		return &transientError{err: errStalled}
	default:
		return &transientError{err: fmt.Errorf("GET %s: reading body at offset %d: %w", url, p.n, err)}
	}
	if *total >= 0 && p.n != *total {
		return &transientError{err: fmt.Errorf("GET %s: body ended at %d of %d bytes", url, p.n, *total)}
	}
	return nil
}

// stallReader re-arms the stall watchdog whenever data arrives.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.d)
	}
	return n, err
}

// parseContentRange parses "bytes start-end/size"; size is -1 for "*".
func parseContentRange(v string) (start, size int64, ok bool) {
	v, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(v, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if sz == "*" {
		return start, -1, true
	}
	size, err = strconv.ParseInt(sz, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return start, size, true
}

// fetchSmall reads a small http(s) or file resource (a SUMS file) fully,
// with the same retry policy as image downloads.
func (s *Store) fetchSmall(ctx context.Context, loc location, field string, limit int64) ([]byte, error) {
	if loc.Path != "" {
		f, err := s.openFile(loc, field)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, limit+1))
		if err != nil {
			return nil, &FetchError{URL: loc.Path, Retryable: true, Err: err}
		}
		if int64(len(data)) > limit {
			return nil, &SourceError{Field: field, Err: fmt.Errorf("%s is larger than %d bytes", loc.Path, limit)}
		}
		return data, nil
	}
	for failures := 1; ; failures++ {
		data, err := s.fetchSmallOnce(ctx, loc.HTTP, field, limit)
		var te *transientError
		if !errors.As(err, &te) {
			return data, err
		}
		if failures > s.retries {
			return nil, &FetchError{URL: loc.HTTP, Retryable: true, Err: te.err}
		}
		if err := s.backoff(ctx, failures, te.retryAfter); err != nil {
			return nil, err
		}
	}
}

func (s *Store) fetchSmallOnce(ctx context.Context, url, field string, limit int64) ([]byte, error) {
	actx, cancel := context.WithTimeout(ctx, s.stallTimeout)
	defer cancel()
	resp, err := s.httpGet(actx, url, 0, field)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, &transientError{err: fmt.Errorf("GET %s: %w", url, err)}
	}
	if int64(len(data)) > limit {
		return nil, &SourceError{Field: field, Err: fmt.Errorf("%s is larger than %d bytes", url, limit)}
	}
	return data, nil
}
