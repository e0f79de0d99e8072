package web

import (
	"context"
	"slices"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// soFar fills a running job's page with its story so far: the progress events of
// its attempt (replayed from the stream), its console with the boot milestones
// marked, the timeline drawn from both, and an estimate from its family's runs.
// What cannot be read is left out (the live events still come).
func (s *Server) soFar(ctx context.Context, d *jobData) {
	st, now := d.Live, s.opts.Now()
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	events, err := s.src.ProgressOf(rctx, d.ID)
	cancel()
	if err != nil {
		s.log.Warn("progress not replayed", "job", d.ID, "err", err)
	}
	d.Events = attemptEvents(events, st.Attempt, st.Worker)
	if len(d.Events) > 0 {
		last := d.Events[len(d.Events)-1]
		st.Event, st.Message = last.Event, last.Message
		for _, p := range d.Events {
			if p.Event == "start" {
				st.Stage = p.Stage
			}
		}
		if st.Since.IsZero() || d.Events[0].Time.Before(st.Since) {
			st.Since = d.Events[0].Time
		}
	}
	var con jobs.LiveConsole
	cctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	c, ok, err := s.src.LiveConsole(cctx, d.ID)
	cancel()
	if err != nil {
		s.log.Warn("live console not read", "job", d.ID, "err", err)
	}
	if ok && c.Attempt == st.Attempt && (st.Worker == "" || c.Worker == st.Worker) {
		con = c
	}
	story, open := storySoFar(d.ID, st.Since, now, d.Events, con.Marks)
	var anchors map[int]string
	d.Lines, anchors = consoleView(story, con.Tail)
	d.Tl = NewTimeline(story, anchors)
	for i := range d.Tl.Lanes {
		if open[i] {
			d.Tl.Lanes[i].Class = "running"
		}
	}
	d.Elapsed = now.Sub(st.Since)
	st.Estimate = s.idx.Estimate(st.Image, st.Family, d.Elapsed)
}

// attemptEvents keeps the events of one attempt (on one worker when named), in
// time order.
func attemptEvents(all []jobs.Progress, attempt int, worker string) []jobs.Progress {
	var out []jobs.Progress
	for _, p := range all {
		if p.Attempt == attempt && (worker == "" || p.Worker == worker) && p.Event != jobs.EventConsole {
			out = append(out, p)
		}
	}
	slices.SortStableFunc(out, func(a, b jobs.Progress) int { return a.Time.Compare(b.Time) })
	return out
}

// storySoFar turns a running attempt's events into the result so far, as the
// timeline and console view read one: a stage per "start" event, ended by the
// stage's next done or fail event or its check's outcome, still running at now
// otherwise (open[i] is set for such a stage, in start order); a check per
// outcome event; the console's marks.
func storySoFar(id string, since, now time.Time, events []jobs.Progress, marks []jobs.ConsoleMark) (jobs.Result, map[int]bool) {
	r := jobs.Result{JobID: id, StartedAt: since, FinishedAt: now, ConsoleMarks: marks}
	openAt := map[string]int{} // stage name → its index in r.Stages while it runs
	for _, p := range events {
		switch p.Event {
		case "start":
			openAt[p.Stage] = len(r.Stages)
			r.Stages = append(r.Stages, jobs.Stage{Name: p.Stage, Start: p.Time})
			continue
		case "info":
			continue
		}
		if i, ok := openAt[p.Stage]; ok {
			r.Stages[i].Duration = jobs.Duration(p.Time.Sub(r.Stages[i].Start))
			if p.Event == "fail" || p.Event == string(jobs.StatusError) {
				r.Stages[i].Error = p.Message
			}
			delete(openAt, p.Stage)
		}
		switch status := jobs.CheckStatus(p.Event); status {
		case jobs.StatusPass, jobs.StatusFail, jobs.StatusError, jobs.StatusSkip:
			r.Checks = append(r.Checks, jobs.CheckResult{Name: p.Stage, Status: status, Reason: p.Message})
		}
	}
	open := map[int]bool{}
	for _, i := range openAt {
		r.Stages[i].Duration = jobs.Duration(max(now.Sub(r.Stages[i].Start), 0))
		open[i] = true
	}
	return r, open
}
