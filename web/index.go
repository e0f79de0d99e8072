package web

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// HistoryLen is how many runs of one image the overview's history strip shows.
const HistoryLen = 30

// Run is what the overview keeps of one finished job.
type Run struct {
	JobID       string
	Verdict     jobs.Verdict
	FailedCheck string
	Reason      string
	Release     string
	Finished    time.Time
	// Took is how long the job ran, from its start to its verdict.
	Took time.Duration
	// Boot is how long the guest took from power-on to answering SSH (0 when it
	// never answered); Size is the vetted file's size (0 when unknown); ReleasedAt
	// is when the vendor released it, when the job said.
	Boot       time.Duration
	Size       int64
	ReleasedAt time.Time
}

// Image is one row of the overview: an image name (publish.name) with its latest
// runs, newest last.
type Image struct {
	Name   string
	Family string
	Runs   []Run
}

// Latest returns the image's newest run.
func (im *Image) Latest() Run { return im.Runs[len(im.Runs)-1] }

// Index is the web page's view of the results stream: the last HistoryLen runs of
// every image, newest last, and who waits for which job's result. It is safe for
// concurrent use.
type Index struct {
	mu      sync.RWMutex
	images  map[string]*Image
	names   []string // sorted; nil when it must be rebuilt
	workers map[string]workerSeen
	waiters map[string][]chan jobs.Result
	active  map[string]*Active
	done    map[string]time.Time // job id → when its latest result finished (recent ones only)
	pruned  time.Time
	ready   bool
}

// Active is a job that has reported progress but no result yet.
type Active struct {
	JobID   string
	Worker  string
	Attempt int
	// Stage is the stage or check that last started; Event and Message are the
	// latest event's.
	Stage, Event, Message string
	// Since is the first event seen, LastEvent the latest.
	Since, LastEvent time.Time
}

// workerSeen is what results say about a worker.
type workerSeen struct {
	accel   string
	lastJob string
	last    time.Time
	// lastEvent is the newest progress event from this worker.
	lastEvent time.Time
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{images: map[string]*Image{}, workers: map[string]workerSeen{}, waiters: map[string][]chan jobs.Result{}, active: map[string]*Active{}, done: map[string]time.Time{}}
}

// ImageName is the overview row a result belongs to: its publish.name, or its job
// id when the job named no image (as the status bucket keys it).
func ImageName(r jobs.Result) string {
	if r.Publish.Name != "" {
		return r.Publish.Name
	}
	return r.JobID
}

// Add records a finished job and wakes whoever waits for it.
func (x *Index) Add(r jobs.Result) {
	run := Run{JobID: r.JobID, Verdict: r.Verdict, FailedCheck: r.FailedCheck, Reason: r.Reason,
		Release: r.Publish.Release, Finished: r.FinishedAt, Took: r.FinishedAt.Sub(r.StartedAt), Boot: bootTime(r)}
	if r.ImageFacts != nil {
		run.Size = r.ImageFacts.Size
	}
	if r.Publish.ReleasedAt != nil {
		run.ReleasedAt = *r.Publish.ReleasedAt
	}
	name := ImageName(r)
	x.mu.Lock()
	im, ok := x.images[name]
	if !ok {
		im = &Image{Name: name}
		x.images[name] = im
		x.names = nil
	}
	if r.Publish.Family != "" {
		im.Family = r.Publish.Family
	}
	// Results arrive in stream order, which is nearly finish order; keep runs sorted.
	i := len(im.Runs)
	for i > 0 && im.Runs[i-1].Finished.After(run.Finished) {
		i--
	}
	im.Runs = slices.Insert(im.Runs, i, run)
	if len(im.Runs) > HistoryLen {
		im.Runs = slices.Delete(im.Runs, 0, len(im.Runs)-HistoryLen)
	}
	if w := x.workers[r.Worker]; r.Worker != "" && !w.last.After(r.FinishedAt) {
		w.accel, w.lastJob, w.last = r.Accel, r.JobID, r.FinishedAt
		x.workers[r.Worker] = w
	}
	delete(x.active, r.JobID)
	x.done[r.JobID] = r.FinishedAt
	x.pruneDone()
	waiters := x.waiters[r.JobID]
	delete(x.waiters, r.JobID)
	x.mu.Unlock()
	for _, ch := range waiters {
		ch <- r
	}
}

// doneWindow is how long the index remembers a finished job to drop its late
// progress events; older ones are forgotten so the index does not grow with the
// results stream.
const doneWindow = time.Hour

// pruneDone forgets finished jobs older than doneWindow, at most once a minute.
// x.mu must be held.
func (x *Index) pruneDone() {
	now := time.Now()
	if now.Sub(x.pruned) < time.Minute && len(x.done) < 10000 {
		return
	}
	x.pruned = now
	for id, t := range x.done {
		if now.Sub(t) > doneWindow {
			delete(x.done, id)
		}
	}
}

// MarkReady records that the index has caught up with the results stream.
func (x *Index) MarkReady() {
	x.mu.Lock()
	x.ready = true
	x.mu.Unlock()
}

// Ready reports whether the index has caught up with the results stream.
func (x *Index) Ready() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.ready
}

// Images returns a copy of every image's row, sorted by family then name.
func (x *Index) Images() []Image {
	x.mu.Lock()
	if x.names == nil {
		x.names = make([]string, 0, len(x.images))
		for n := range x.images {
			x.names = append(x.names, n)
		}
		slices.SortFunc(x.names, func(a, b string) int {
			if c := strings.Compare(x.images[a].Family, x.images[b].Family); c != 0 {
				return c
			}
			return strings.Compare(a, b)
		})
	}
	out := make([]Image, len(x.names))
	for i, n := range x.names {
		im := x.images[n]
		out[i] = Image{Name: im.Name, Family: im.Family, Runs: slices.Clone(im.Runs)}
	}
	x.mu.Unlock()
	return out
}

// WaitResult returns a channel that receives the job's result once Add sees it,
// and a func to stop waiting. The channel is buffered: Add never blocks on it.
func (x *Index) WaitResult(jobID string) (<-chan jobs.Result, func()) {
	ch := make(chan jobs.Result, 1)
	x.mu.Lock()
	x.waiters[jobID] = append(x.waiters[jobID], ch)
	x.mu.Unlock()
	return ch, func() {
		x.mu.Lock()
		defer x.mu.Unlock()
		list := x.waiters[jobID]
		if i := slices.Index(list, ch); i >= 0 {
			list = slices.Delete(list, i, i+1)
		}
		if len(list) == 0 {
			delete(x.waiters, jobID)
		} else {
			x.waiters[jobID] = list
		}
	}
}

// Progress records a live event of a running job. Events of jobs that already have a
// result (a late event, a duplicate delivery) are ignored, and so are those of an
// attempt older than the one shown (a slow worker's late event after the job was
// delivered again).
func (x *Index) Progress(p jobs.Progress) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if p.Worker != "" {
		w := x.workers[p.Worker]
		if p.Time.After(w.lastEvent) {
			w.lastEvent = p.Time
		}
		x.workers[p.Worker] = w
	}
	a, ok := x.active[p.JobID]
	if !ok {
		if finished, done := x.done[p.JobID]; done && !p.Time.After(finished) {
			return // a late event of a finished job (a rerun's events are newer)
		}
		a = &Active{JobID: p.JobID, Since: p.Time}
		x.active[p.JobID] = a
	}
	if p.Attempt < a.Attempt {
		return // a late event of an older attempt: the newer one's state stands
	}
	if p.Attempt != a.Attempt || p.Worker != a.Worker {
		// A new delivery of the job: its clock starts again.
		a.Attempt, a.Worker, a.Since = p.Attempt, p.Worker, p.Time
	}
	if p.Event == "start" || a.Stage == "" {
		a.Stage = p.Stage
	}
	a.Event, a.Message, a.LastEvent = p.Event, p.Message, p.Time
}

// ForgetActiveAfter is how long a job with no event and no result stays listed as
// running: a worker that died mid-job never reports it, and its redelivery to
// another worker starts a new entry.
const ForgetActiveAfter = time.Hour

// Active returns the jobs running now (an event within ForgetActiveAfter of now, no
// result), oldest first.
func (x *Index) Active(now time.Time) []Active {
	x.mu.Lock()
	out := make([]Active, 0, len(x.active))
	for id, a := range x.active {
		if now.Sub(a.LastEvent) > ForgetActiveAfter {
			delete(x.active, id)
			continue
		}
		out = append(out, *a)
	}
	x.mu.Unlock()
	slices.SortFunc(out, func(a, b Active) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.JobID, b.JobID)
	})
	return out
}

// Worker is what the page knows of one worker from its events and results.
type Worker struct {
	ID string
	// LastSeen is the newest progress event or finished job of the worker.
	LastSeen time.Time
	// Accel is the acceleration of its latest finished job, LastJob that job and
	// LastFinished when it finished.
	Accel        string
	LastJob      string
	LastFinished time.Time
	Running      []string
}

// Workers returns every worker seen, by id, with the jobs Active lists for it.
func (x *Index) Workers(now time.Time) []Worker {
	x.mu.RLock()
	out := make([]Worker, 0, len(x.workers))
	for id, w := range x.workers {
		seen := w.last
		if w.lastEvent.After(seen) {
			seen = w.lastEvent
		}
		out = append(out, Worker{ID: id, LastSeen: seen, Accel: w.accel, LastJob: w.lastJob, LastFinished: w.last})
	}
	for _, a := range x.active {
		if now.Sub(a.LastEvent) > ForgetActiveAfter {
			continue
		}
		if i := slices.IndexFunc(out, func(w Worker) bool { return w.ID == a.Worker }); i >= 0 {
			out[i].Running = append(out[i].Running, a.JobID)
		}
	}
	x.mu.RUnlock()
	for i := range out {
		slices.Sort(out[i].Running)
	}
	slices.SortFunc(out, func(a, b Worker) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// estimateRuns is how many recent runs an Estimate reads at most.
const estimateRuns = 10

// Estimate is how long a job of an image may take, from its family's recent runs.
type Estimate struct {
	// Typical is the median time to verdict of Runs recent runs; Of says which
	// ("passing", or "finished" when the family has no passing run).
	Typical time.Duration
	Runs    int
	Of      string
	// Over is set when the job has already run longer than Typical.
	Over bool
}

// Estimate returns how long a job of the named image and family may take (nil
// when nothing is known): the median of the last estimateRuns passing runs of the
// family (the image's as results name it when family is "", the image's own runs
// when it has none), or of its finished runs when none passed
// (an error does not say how long a vetting takes). elapsed is how long the job
// has run so far.
func (x *Index) Estimate(image, family string, elapsed time.Duration) *Estimate {
	x.mu.RLock()
	var runs []Run
	if im, ok := x.images[image]; ok && family == "" {
		family = im.Family
		if family == "" {
			runs = slices.Clone(im.Runs)
		}
	}
	if family != "" {
		for _, other := range x.images {
			if other.Family == family {
				runs = append(runs, other.Runs...)
			}
		}
	}
	x.mu.RUnlock()
	slices.SortFunc(runs, func(a, b Run) int { return b.Finished.Compare(a.Finished) })
	pick := func(keep func(Run) bool) []time.Duration {
		var out []time.Duration
		for _, r := range runs {
			if keep(r) && r.Took > 0 && len(out) < estimateRuns {
				out = append(out, r.Took)
			}
		}
		return out
	}
	of := "passing"
	took := pick(func(r Run) bool { return r.Verdict == jobs.VerdictPass })
	if len(took) == 0 {
		of = "finished"
		took = pick(func(r Run) bool { return r.Verdict == jobs.VerdictFail })
	}
	if len(took) == 0 {
		return nil
	}
	slices.Sort(took)
	median := took[len(took)/2]
	if len(took)%2 == 0 {
		median = (took[len(took)/2-1] + took[len(took)/2]) / 2
	}
	return &Estimate{Typical: median, Runs: len(took), Of: of, Over: elapsed > median}
}

// bootTime is how long a job's guest took from the start of its boot stage to the
// end of its ssh stage (the guest answering), or 0 when it never answered.
func bootTime(r jobs.Result) time.Duration {
	var boot, ssh *jobs.Stage
	for i := range r.Stages {
		switch r.Stages[i].Name {
		case "boot":
			boot = &r.Stages[i]
		case "ssh":
			ssh = &r.Stages[i]
		}
	}
	if boot == nil || ssh == nil || ssh.Error != "" {
		return 0
	}
	return ssh.Start.Add(ssh.Duration.D()).Sub(boot.Start)
}

// FamilyRuns returns the runs the index keeps of every image of family (the last
// HistoryLen of each), oldest first.
func (x *Index) FamilyRuns(family string) []Run {
	x.mu.RLock()
	var runs []Run
	for _, im := range x.images {
		if im.Family == family {
			runs = append(runs, im.Runs...)
		}
	}
	x.mu.RUnlock()
	slices.SortFunc(runs, func(a, b Run) int { return a.Finished.Compare(b.Finished) })
	return runs
}
