package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/imagevet/imagevet/jobs"

	"github.com/imagevet/imagevet/queue"
)

// Source is what the page reads from NATS. *queue.Queue implements it.
//
// Result and Console read one job's final result and full console log; the Follow
// methods deliver events until the returned stop is called (FollowResults replays
// the whole results stream first); ProgressOf replays a job's stored progress
// events and LiveConsole reads a running job's console so far; JobStatesOf reads
// the state entries of one job's claimed submissions; Jobs lists the submissions still queued or
// running and Workers the live workers' heartbeats;
// PublishedImages lists each family's Latest image in each cloud as the publisher
// recorded it; Publications each job's publication state per cloud;
// Releases each watched family's newest upstream release as the watch recorded it,
// ReleaseHistory the records kept of one family's releases, oldest first.
type Source interface {
	Result(ctx context.Context, jobID string) (jobs.Result, bool, error)
	Console(ctx context.Context, jobID string, w io.Writer) error
	FollowResults(ctx context.Context, fn func(jobs.Result), caughtUp func(), bad func(error)) (stop func(), err error)
	FollowProgress(jobID string, fn func(jobs.Progress)) (stop func(), err error)
	FollowAllProgress(fn func(jobs.Progress)) (stop func(), err error)
	ProgressOf(ctx context.Context, jobID string) ([]jobs.Progress, error)
	LiveConsole(ctx context.Context, jobID string) (jobs.LiveConsole, bool, error)
	Jobs(ctx context.Context) ([]queue.QueueEntry, error)
	JobStatesOf(ctx context.Context, jobID string) ([]queue.JobState, error)
	Workers(ctx context.Context) ([]queue.WorkerInfo, error)
	PublishedImages(ctx context.Context) ([]jobs.Published, error)
	Publications(ctx context.Context) ([]jobs.PublicationRecord, error)
	Releases(ctx context.Context) ([]jobs.ReleaseRecord, error)
	ReleaseHistory(ctx context.Context, family string) ([]jobs.ReleaseRecord, error)
}

//go:embed templates static
var assets embed.FS

// Options tune a Server; the zero value is usable.
type Options struct {
	Logger *slog.Logger
	// Now is the clock for ages on the page (tests fix it).
	Now func() time.Time
	// RequestTimeout bounds each NATS read a request makes (default 10 s).
	RequestTimeout time.Duration
	// KeepAlive is the interval of comments on an idle event stream (default 15 s).
	KeepAlive time.Duration
}

// Server renders the pages. Create it with New, feed its index with Follow, and
// serve Handler.
type Server struct {
	src   Source
	idx   *Index
	opts  Options
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
	// families caches the family of jobs whose pages were asked for.
	families familyCache
}

// New returns a server reading src. It parses the embedded templates, so an error
// is a build defect.
func New(src Source, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 15 * time.Second
	}
	s := &Server{src: src, idx: NewIndex(), opts: opts, log: opts.Logger, pages: map[string]*template.Template{}}
	funcs := template.FuncMap{"ago": s.ago, "dur": formatDuration, "utc": formatTime, "mib": formatMiB, "clock": formatClock, "notRun": notRun}
	for _, page := range []string{"overview", "job", "family", "queue", "workers"} {
		t, err := template.New(page).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("web templates: %w", err)
		}
		s.pages[page] = t
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, fmt.Errorf("web assets: %w", err)
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", s.overview)
	m.HandleFunc("GET /jobs/{id}", s.job)
	m.HandleFunc("GET /jobs/{id}/result.json", s.withResult(resultJSON))
	m.HandleFunc("GET /jobs/{id}/junit.xml", s.withResult(junit))
	m.HandleFunc("GET /jobs/{id}/console.txt", s.console)
	m.HandleFunc("GET /jobs/{id}/events", s.events)
	m.HandleFunc("GET /families/{name}", s.family)
	m.HandleFunc("GET /queue", s.queue)
	m.HandleFunc("GET /workers", s.workers)
	m.HandleFunc("GET /healthz", s.healthz)
	m.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(time.Hour, noListing(http.FileServerFS(static)))))
	m.Handle("GET /favicon.ico", cacheFor(24*time.Hour, http.FileServerFS(static)))
	s.mux = m
	return s, nil
}

// Index returns the server's view of the results stream.
func (s *Server) Index() *Index { return s.idx }

// Follow feeds the index from the results stream and every job's progress until ctx
// is done. It returns once both subscriptions are set up; the replay of older
// results goes on in the background (Index.Ready tells when it is over).
func (s *Server) Follow(ctx context.Context) error {
	stopProgress, err := s.src.FollowAllProgress(s.idx.Progress)
	if err != nil {
		return err
	}
	stopResults, err := s.src.FollowResults(ctx, s.idx.Add, s.idx.MarkReady,
		func(err error) { s.log.Warn("result not shown", "err", err) })
	if err != nil {
		stopProgress()
		return err
	}
	go func() {
		<-ctx.Done()
		stopResults()
		stopProgress()
	}()
	return nil
}

// Handler serves every page, with headers that keep the browser to this origin.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		s.mux.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title string
	Nav   string
	Data  any
	// Part renders only one part of the page: "main" (the live job page swaps in
	// the verdict) or "sofar" (a running job's story so far); "" the whole page.
	Part string
	// Status is the response's status code (200 when zero).
	Status int
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, p page) {
	var buf bytes.Buffer
	tmpl := "layout"
	if p.Part == "main" || p.Part == "sofar" {
		tmpl = p.Part
	}
	if err := s.pages[name].ExecuteTemplate(&buf, tmpl, p); err != nil {
		s.log.Error("page not rendered", "page", name, "err", err)
		http.Error(w, "page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if p.Status != 0 {
		w.WriteHeader(p.Status)
	}
	w.Write(buf.Bytes())
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if !s.idx.Ready() {
		// Still replaying the results stream: the pages would be incomplete.
		http.Error(w, "catching up with the results stream", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok\n")
}

// maxEchoed bounds what of a request's own text (an id, a host) an error answer
// repeats back.
const maxEchoed = 100

// jobID returns the request's valid job id or answers 404, quoting at most
// maxEchoed bytes of what was asked for.
func jobID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !jobs.ValidJobID(id) {
		http.Error(w, fmt.Sprintf("no job %q: not a valid job id", jobs.Bound(id, maxEchoed)), http.StatusNotFound)
		return "", false
	}
	return id, true
}

// result reads a job's result or answers the error.
func (s *Server) result(w http.ResponseWriter, r *http.Request, id string) (jobs.Result, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
	defer cancel()
	res, ok, err := s.src.Result(ctx, id)
	if err != nil {
		s.log.Warn("result not read", "job", id, "err", err)
		http.Error(w, "result of "+id+" could not be read from NATS", http.StatusBadGateway)
		return res, false
	}
	if !ok {
		http.Error(w, "job "+id+" has no result (yet)", http.StatusNotFound)
	}
	return res, ok
}

// withResult answers a request for one job's result document with write, or with
// the error that kept it from being read.
func (s *Server) withResult(write func(w http.ResponseWriter, res jobs.Result) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := jobID(w, r)
		if !ok {
			return
		}
		res, ok := s.result(w, r, id)
		if !ok {
			return
		}
		if err := write(w, res); err != nil {
			s.log.Error("result not written", "job", id, "err", err)
		}
	}
}

func resultJSON(w http.ResponseWriter, res jobs.Result) error {
	data, err := jobs.MarshalResult(res)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `inline; filename="`+res.JobID+`.json"`)
	_, err = w.Write(append(data, '\n'))
	return err
}

func junit(w http.ResponseWriter, res jobs.Result) error {
	var buf bytes.Buffer
	if err := jobs.WriteJUnit(&buf, res); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Disposition", `attachment; filename="`+res.JobID+`.junit.xml"`)
	_, err := w.Write(buf.Bytes())
	return err
}

func (s *Server) console(w http.ResponseWriter, r *http.Request) {
	id, ok := jobID(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
	defer cancel()
	var buf bytes.Buffer
	if err := s.src.Console(ctx, id, &buf); err != nil {
		http.Error(w, "no console log stored for job "+id, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(buf.Bytes())
}

// events streams a job's progress as server-sent events ("progress", JSON of
// jobs.Progress) and ends with one "result" event once the job has a result.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	id, ok := jobID(w, r)
	if !ok {
		return
	}
	// Wait before looking, so a result published in between is not missed.
	done, stopWait := s.idx.WaitResult(id)
	defer stopWait()
	events := make(chan jobs.Progress, 64)
	stop, err := s.src.FollowProgress(id, func(p jobs.Progress) {
		select {
		case events <- p:
		default: // a slow browser loses events, never the worker
		}
	})
	if err != nil {
		http.Error(w, "cannot follow job "+id, http.StatusBadGateway)
		return
	}
	defer stop()
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
	res, has, err := s.src.Result(ctx, id)
	cancel()
	if err != nil {
		s.log.Warn("result not read", "job", id, "err", err)
	}
	if !has && err == nil {
		// A job nobody knows has no events coming: end the stream at once (a 404
		// stops the browser's EventSource from reconnecting).
		if _, known, err := s.live(r.Context(), id); err == nil && !known {
			http.Error(w, "no job "+id+": never submitted, or settled and forgotten", http.StatusNotFound)
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	send := func(event string, v any) bool {
		data, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send("hello", map[string]string{"job_id": id}) {
		return
	}
	if has {
		send("result", resultEvent(res))
		return
	}
	tick := time.NewTicker(s.opts.KeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case p := <-events:
			if !send("progress", p) {
				return
			}
		case res := <-done:
			send("result", resultEvent(res))
			return
		case <-tick.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

func resultEvent(r jobs.Result) map[string]string {
	return map[string]string{"job_id": r.JobID, "verdict": string(r.Verdict), "failed_check": r.FailedCheck, "reason": r.Reason}
}

// noListing answers 404 for a directory, so the embedded assets are served but not
// listed.
func noListing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// cacheFor lets browsers keep embedded assets for d.
func cacheFor(d time.Duration, h http.Handler) http.Handler {
	value := fmt.Sprintf("public, max-age=%d", int(d.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", value)
		h.ServeHTTP(w, r)
	})
}
