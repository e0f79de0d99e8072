package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imagevet/imagevet/jobs"

	"github.com/imagevet/imagevet/queue"
)

// jobData is a job page: a result, or where a job without one stands.
type jobData struct {
	ID      string
	Result  *jobs.Result
	Live    *liveState
	Lines   []ConsoleLine
	Fatal   *ConsoleLine
	Tl      Timeline
	Elapsed time.Duration
	// Publications is the job's publication state in each cloud.
	Publications []jobs.PublicationRecord
	// Events are a running attempt's progress events so far.
	Events []jobs.Progress
}

// liveState is where a job without a result stands, as the queue's job states and
// the progress events know it.
type liveState struct {
	// State is queue.StateQueued, queue.StateRetrying or queue.StateRunning.
	State string
	// Position is, for a waiting job, its place among the waiting submissions (1 runs
	// next); Waiting is how many wait in all.
	Position, Waiting int
	// Since is when the job was submitted (waiting) or its attempt began (running).
	Since   time.Time
	Attempt int
	Worker  string
	// Stage is the running attempt's stage; LastError why the attempt before ended
	// without a verdict.
	Stage, LastError string
	// Event and Message are the latest progress event's.
	Event, Message string
	// Image and Family are the job's publish.name and family, when the queue knows
	// them.
	Image, Family string
	// Estimate is how long the family's recent runs took, when it has some.
	Estimate *Estimate
}

// Running reports whether a worker runs the job now.
func (l *liveState) Running() bool { return l.State == queue.StateRunning }

// decideLive places a job without a result from the queue's entries (oldest first)
// and its progress (nil when none was seen): its latest submission's state, or
// running when only progress names it (its result is being published). ok is
// false for a job neither knows: never submitted, or settled and forgotten.
func decideLive(id string, entries []queue.QueueEntry, active *Active) (st liveState, ok bool) {
	idx := -1
	for i, e := range entries {
		if e.JobID == id {
			idx = i
		}
	}
	if idx < 0 {
		if active == nil {
			return liveState{}, false
		}
		return liveState{State: queue.StateRunning, Since: active.Since, Attempt: active.Attempt, Worker: active.Worker,
			Stage: active.Stage, Event: active.Event, Message: active.Message}, true
	}
	e := entries[idx]
	if e.State == queue.StateRunning {
		st = liveState{State: e.State, Since: e.StartedAt, Attempt: e.Attempt, Worker: e.Worker, Stage: e.Stage, LastError: e.LastError, Image: e.Image, Family: e.Family}
		if active != nil && active.Attempt == e.Attempt && active.Worker == e.Worker {
			// Progress is fresher than the state entry.
			if active.Stage != "" {
				st.Stage = active.Stage
			}
			st.Event, st.Message = active.Event, active.Message
			if st.Since.IsZero() {
				st.Since = active.Since
			}
		}
		return st, true
	}
	st = liveState{State: e.State, Since: e.SubmittedAt, Attempt: e.Attempt, Worker: e.Worker, LastError: e.LastError, Image: e.Image, Family: e.Family}
	for i, o := range entries {
		if o.State == queue.StateRunning {
			continue
		}
		st.Waiting++
		if i <= idx {
			st.Position = st.Waiting
		}
	}
	return st, true
}

// live places a job without a result (see decideLive). err is set when the queue
// could not be read and progress alone cannot tell.
func (s *Server) live(ctx context.Context, id string) (liveState, bool, error) {
	var active *Active
	for _, a := range s.idx.Active(s.opts.Now()) {
		if a.JobID == id {
			active = &a
		}
	}
	// A running job's state entry says all without reading the whole jobs stream
	// (its page asks every few seconds); a waiting one needs its place in it.
	sctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	states, err := s.src.JobStatesOf(sctx, id)
	cancel()
	if err == nil {
		if e, ok := runningEntry(states); ok {
			if family, known := s.families.get(id); known {
				e.Family = family
				st, _ := decideLive(id, []queue.QueueEntry{e}, active)
				return st, true, nil
			}
		}
	}
	ctx, cancel = context.WithTimeout(ctx, s.opts.RequestTimeout)
	entries, err := s.src.Jobs(ctx)
	cancel()
	for _, e := range entries {
		if e.JobID == id {
			s.families.put(id, e.Family)
		}
	}
	if err != nil {
		s.log.Warn("queue not read", "job", id, "err", err)
		if active == nil {
			return liveState{}, false, err
		}
	}
	st, ok := decideLive(id, entries, active)
	return st, ok, nil
}

// runningEntry is the running submission among a job's state entries (the newest
// if several), as the queue would list it.
func runningEntry(states []queue.JobState) (queue.QueueEntry, bool) {
	var e queue.QueueEntry
	found := false
	for _, st := range states {
		if st.State == queue.StateRunning && (!found || st.Seq > e.Seq) {
			e = queue.QueueEntry{JobID: st.JobID, Image: st.Image, Seq: st.Seq, State: st.State, Attempt: st.Attempt,
				Stage: st.Stage, Worker: st.Worker, StartedAt: st.StartedAt, LastError: st.LastError}
			found = true
		}
	}
	return e, found
}

// notFound answers 404 for a job neither the results, the queue nor the progress
// events know.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request, id string) {
	s.render(w, r, "job", page{Title: id, Nav: "job", Data: jobData{ID: id}, Part: r.URL.Query().Get("part"),
		Status: http.StatusNotFound})
}

func (s *Server) job(w http.ResponseWriter, r *http.Request) {
	id, ok := jobID(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
	res, has, err := s.src.Result(ctx, id)
	cancel()
	if err != nil {
		s.log.Warn("result not read", "job", id, "err", err)
		http.Error(w, "result of "+id+" could not be read from NATS", http.StatusBadGateway)
		return
	}
	d := jobData{ID: id}
	if has {
		d.Result = &res
		var anchors map[int]string
		d.Lines, anchors = consoleView(res, s.consoleText(r.Context(), res))
		for i := range d.Lines {
			if d.Lines[i].Class == jobs.MarkFatal {
				d.Fatal = &d.Lines[i]
			}
		}
		d.Tl = NewTimeline(res, anchors)
		d.Elapsed = res.FinishedAt.Sub(res.StartedAt)
		pctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
		pubs, err := s.src.Publications(pctx)
		cancel()
		if err != nil {
			s.log.Warn("publication records not read", "job", id, "err", err)
		}
		for _, p := range pubs {
			if p.JobID == id {
				d.Publications = append(d.Publications, p)
			}
		}
	} else {
		st, known, err := s.live(r.Context(), id)
		if err != nil {
			http.Error(w, "the queue could not be read from NATS to find job "+id, http.StatusBadGateway)
			return
		}
		if !known {
			s.notFound(w, r, id)
			return
		}
		d.Live = &st
		d.Elapsed = s.opts.Now().Sub(st.Since)
		if st.Running() {
			s.soFar(r.Context(), &d)
		}
	}
	s.render(w, r, "job", page{Title: id, Nav: "job", Data: d, Part: r.URL.Query().Get("part")})
}

// maxConsoleShown bounds the console log a job page shows in full; a longer one
// shows the result's tail (the whole log stays a link away).
const maxConsoleShown = 512 << 10

// consoleText is the console log the job page shows: the whole log from the object
// store when it is there and not too long, else the result's tail.
func (s *Server) consoleText(ctx context.Context, r jobs.Result) string {
	if !strings.HasPrefix(r.ConsoleLog, queue.ConsoleRef("")) {
		return r.ConsoleTail
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	var buf limitedBuffer
	buf.max = maxConsoleShown
	if err := s.src.Console(ctx, r.JobID, &buf); err != nil || buf.over {
		if err != nil && !buf.over {
			s.log.Warn("console log not read", "job", r.JobID, "err", err)
		}
		return r.ConsoleTail
	}
	return buf.String()
}

// limitedBuffer keeps what is written up to max bytes, then refuses more.
type limitedBuffer struct {
	strings.Builder
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		b.over = true
		return 0, errConsoleTooLong
	}
	return b.Builder.Write(p)
}

var errConsoleTooLong = errors.New("console log longer than a page shows")

// queueRow is a submission in the jobs stream, with what its live progress says.
type queueRow struct {
	queue.QueueEntry
	// Stage is the live stage when progress is newer than the state entry.
	Stage string
}

type queueData struct {
	Rows []queueRow
	// Reporting are jobs running per progress that are no longer in the stream
	// (their result is being published).
	Reporting []Active
	Err       string
}

func (s *Server) queue(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
	list, err := s.src.Jobs(ctx)
	cancel()
	var d queueData
	if err != nil {
		s.log.Warn("queue not read", "err", err)
		d.Err = "the queue could not be read from NATS"
	}
	active := map[string]Active{}
	for _, a := range s.idx.Active(s.opts.Now()) {
		active[a.JobID] = a
	}
	for _, e := range list {
		row := queueRow{QueueEntry: e, Stage: e.Stage}
		if a, ok := active[e.JobID]; ok {
			if e.State == queue.StateRunning && a.Stage != "" {
				row.Stage = a.Stage
			}
			delete(active, e.JobID)
		}
		d.Rows = append(d.Rows, row)
	}
	if err == nil {
		for _, a := range s.idx.Active(s.opts.Now()) {
			if _, ok := active[a.JobID]; ok {
				d.Reporting = append(d.Reporting, a)
			}
		}
	}
	s.render(w, r, "queue", page{Title: "queue", Nav: "queue", Data: d})
}

// workerRow is a live worker from its heartbeat, with what results say of it.
type workerRow struct {
	queue.WorkerInfo
	LastJob  string
	Finished time.Time
}

type workersData struct {
	Rows []workerRow
	// Gone are workers seen in results or progress without a live heartbeat.
	Gone []Worker
	Err  string
}

func (s *Server) workers(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
	live, err := s.src.Workers(ctx)
	cancel()
	var d workersData
	if err != nil {
		s.log.Warn("workers not read", "err", err)
		d.Err = "the workers' heartbeats could not be read from NATS"
	}
	seen := map[string]Worker{}
	for _, w := range s.idx.Workers(s.opts.Now()) {
		seen[w.ID] = w
	}
	for _, info := range live {
		row := workerRow{WorkerInfo: info}
		if w, ok := seen[info.ID]; ok {
			row.LastJob, row.Finished = w.LastJob, w.LastFinished
			// Progress is fresher than the heartbeat (every jobs.WorkerHeartbeat).
			for _, id := range w.Running {
				if !slices.Contains(row.Running, id) {
					row.Running = append(slices.Clip(row.Running), id)
				}
			}
			delete(seen, info.ID)
		}
		d.Rows = append(d.Rows, row)
	}
	for _, w := range s.idx.Workers(s.opts.Now()) {
		if _, ok := seen[w.ID]; ok {
			d.Gone = append(d.Gone, w)
		}
	}
	s.render(w, r, "workers", page{Title: "workers", Nav: "workers", Data: d})
}

// ago renders how long before the page's clock t was.
func (s *Server) ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := s.opts.Now().Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func formatDuration(d any) string {
	var v time.Duration
	switch x := d.(type) {
	case time.Duration:
		v = x
	case jobs.Duration:
		v = x.D()
	}
	switch {
	case v < time.Second:
		return v.Round(time.Millisecond).String()
	case v < time.Minute:
		return fmt.Sprintf("%.1fs", v.Seconds())
	}
	return v.Round(time.Second).String()
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// formatMiB renders a byte count in MiB, as the worker's reasons do.
func formatMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// formatClock renders a time of day in UTC, to the second.
func formatClock(t time.Time) string { return t.UTC().Format("15:04:05") }

// notRun is why a check did not run (its reason after jobs.NotRunPrefix), or ""
// for a check that ran or was skipped by the job.
func notRun(reason string) string {
	why, ok := strings.CutPrefix(reason, jobs.NotRunPrefix)
	if !ok {
		return ""
	}
	return why
}

// familyCache remembers the publish.family of the jobs whose pages were asked for,
// which only the jobs stream holds: a running job's page then reads its state entry
// alone. It forgets everything at maxFamilies.
type familyCache struct {
	mu sync.Mutex
	m  map[string]string
}

const maxFamilies = 10000

func (c *familyCache) get(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.m[id]
	return f, ok
}

func (c *familyCache) put(id, family string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxFamilies {
		c.m = map[string]string{}
	}
	c.m[id] = family
}
