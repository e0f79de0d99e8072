package web

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/web/webtest"
)

// The page in a real browser over a real (embedded) NATS server, fed with the
// result and console log a real worker recorded for tiny-panic, and with progress
// events this test publishes as a worker would.
func TestBrowserShowsRecordedPanicAndFollowsALiveJob(t *testing.T) {
	ctx := webtest.Browser(t)
	q := testQueue(t)
	r, log := recordedPanic(t)
	if _, err := q.PublishResult(context.Background(), r, strings.NewReader(log)); err != nil {
		t.Fatal(err)
	}
	_, url := startServer(t, q)

	webtest.Do(t, ctx, 20*time.Second, chromedp.Navigate(url+"/jobs/tiny-panic"), chromedp.WaitVisible(chromedp.CSS("pre.console")))
	if !webtest.Eval[bool](t, ctx, webtest.FatalLineJS) {
		t.Error("the fatal line is not highlighted in view")
	}
	if !webtest.Eval[bool](t, ctx, webtest.TimelineJS) {
		t.Error("the timeline is not drawn to scale with its marks")
	}
	if !webtest.Eval[bool](t, ctx, webtest.TimelineLabelsApartJS) {
		t.Error("the recorded job's timeline labels overlap")
	}
	webtest.Screenshot(t, ctx, "recorded-job", true)
	// The fatal mark on the timeline leads to its console line.
	webtest.Do(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS("svg.timeline a.mark.fatal circle")))
	webtest.WaitJS(t, ctx, 5*time.Second, "the fatal line as the page's target", `location.hash !== "" && document.querySelector(location.hash).classList.contains("fatal")`)

	// Milestones close together keep their labels apart, at 1400 and 1024 wide.
	if _, err := q.PublishResult(context.Background(), denseResult(), nil); err != nil {
		t.Fatal(err)
	}
	for _, width := range []int64{1400, 1024} {
		webtest.Do(t, ctx, 20*time.Second, chromedp.EmulateViewport(width, 1000), chromedp.Navigate(url+"/jobs/dense"), chromedp.WaitVisible(chromedp.CSS("svg.timeline")))
		if !webtest.Eval[bool](t, ctx, webtest.TimelineLabelsApartJS) {
			t.Errorf("the timeline's labels overlap at %d px", width)
		}
	}
	webtest.Screenshot(t, ctx, "job-timeline", false)
	webtest.Do(t, ctx, 10*time.Second, chromedp.EmulateViewport(1280, 900))

	// A job never submitted is unknown, not running.
	webtest.Do(t, ctx, 20*time.Second, chromedp.Navigate(url+"/jobs/never-submitted"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	if !webtest.Eval[bool](t, ctx, `document.querySelector("main h1 .v.unknown") !== null && document.querySelector("#live") === null`) {
		t.Error("a job never submitted does not show as unknown")
	}

	// A queued job says so; once a worker starts it, its page follows progress and
	// shows the verdict without a reload (the marker set on the loaded page survives).
	seq := submit(t, q, "live-1")
	webtest.Do(t, ctx, 20*time.Second, chromedp.Navigate(url+"/jobs/live-1"), chromedp.WaitVisible(chromedp.CSS("#live")))
	if !webtest.Eval[bool](t, ctx, `document.querySelector("main h1 .v.queued") !== null && document.querySelector("#live").dataset.state === "queued"`) {
		t.Error("a queued job does not show as queued")
	}
	webtest.Eval[bool](t, ctx, `window.stayed = true`)
	time.Sleep(300 * time.Millisecond) // let EventSource connect before the first event
	if _, _, err := q.ClaimAttempt(context.Background(), "live-1", seq, "tiny", "w1", 0, 3); err != nil {
		t.Fatal(err)
	}
	if err := q.PublishProgress(jobs.Progress{JobID: "live-1", Worker: "w1", Attempt: 1, Stage: "queue", Event: "done"}); err != nil {
		t.Fatal(err)
	}
	webtest.WaitJS(t, ctx, 10*time.Second, "the running page swapped in", `document.querySelector("main h1 .v.running") !== null && document.querySelector("#live").dataset.state === "running"`)
	time.Sleep(300 * time.Millisecond) // let the swapped page's EventSource connect
	for _, p := range []jobs.Progress{
		{JobID: "live-1", Worker: "w1", Attempt: 1, Stage: "fetch", Event: "start"},
		{JobID: "live-1", Worker: "w1", Attempt: 1, Stage: "fetch", Event: "done"},
		{JobID: "live-1", Worker: "w1", Attempt: 1, Stage: "boot", Event: "start"},
	} {
		if err := q.PublishProgress(p); err != nil {
			t.Fatal(err)
		}
	}
	webtest.WaitJS(t, ctx, 10*time.Second, "the four progress rows of the attempt", `document.querySelectorAll("#events tr").length === 4 && document.getElementById("stage").textContent === "boot"`)
	done := passResult("live-1", "tiny", time.Now().UTC())
	if _, err := q.PublishResult(context.Background(), done, nil); err != nil {
		t.Fatal(err)
	}
	webtest.WaitJS(t, ctx, 10*time.Second, "the verdict swapped in", `document.querySelector("main h1 .v.pass") !== null`)
	if !webtest.Eval[bool](t, ctx, `window.stayed === true`) {
		t.Error("the page reloaded to show the verdict")
	}
}

// A running job's page opened mid-job, in a browser: the story so far is there at
// once (events, console with milestones, timeline with the running stage), grows
// as the worker goes on, survives a reload, and gives way to the verdict.
func TestBrowserRunningJobOpenedMidJob(t *testing.T) {
	ctx := webtest.Browser(t)
	q := testQueue(t)
	now := time.Now().UTC()
	for i, took := range []time.Duration{50 * time.Second, 70 * time.Second, 60 * time.Second} {
		r := passResult(fmt.Sprintf("tiny-%d", i), "tiny", now.Add(-time.Duration(i+1)*time.Hour))
		r.StartedAt = r.FinishedAt.Add(-took)
		if _, err := q.PublishResult(context.Background(), r, nil); err != nil {
			t.Fatal(err)
		}
	}
	s, url := startServer(t, q)
	start := midJob(t, q)
	waitFor(t, "the running job", func() bool { return s.Index().Ready() && len(s.Index().Active(time.Now())) == 1 })

	const story = `document.querySelectorAll("#events tr").length === %d &&
		document.querySelectorAll("pre.console span.milestone").length === %d &&
		document.querySelector("svg.timeline g.lane.running") !== null &&
		document.getElementById("stage").textContent === %q`
	webtest.Do(t, ctx, 20*time.Second, chromedp.Navigate(url+"/jobs/mid-1"), chromedp.WaitVisible(chromedp.CSS("#sofar")))
	if !webtest.Eval[bool](t, ctx, fmt.Sprintf(story, 9, 2, "ssh")) {
		t.Errorf("the story so far is not shown at once: %s", webtest.Eval[string](t, ctx, `document.querySelector("main").innerText.slice(0, 800)`))
	}
	webtest.WaitJS(t, ctx, 5*time.Second, "the elapsed time counting", `/^\d+(m\d\d)?s$/.test(document.getElementById("elapsed").textContent)`)
	if !webtest.Eval[bool](t, ctx, webtest.TimelineLabelsApartJS) {
		t.Error("timeline labels overlap")
	}
	webtest.Eval[bool](t, ctx, `window.stayed = true`)

	// The worker goes on: SSH answers, cloud-init starts, the console grows.
	for i, p := range []jobs.Progress{{Stage: "ssh", Event: "pass"}, {Stage: "cloud-init", Event: "start"}} {
		p.JobID, p.Attempt, p.Worker, p.Time = "mid-1", 1, "host-a", start.Add(time.Duration(20+i)*time.Second)
		if err := q.PublishProgress(p); err != nil {
			t.Fatal(err)
		}
	}
	c, _, err := q.LiveConsole(context.Background(), "mid-1")
	if err != nil {
		t.Fatal(err)
	}
	c.Tail += "\n[   12.1] cloud-init[312]: Cloud-init v. 24.4 running 'init' at Mon, 07 Dec 2026"
	c.Marks = append(c.Marks, jobs.ConsoleMark{Kind: jobs.MarkMilestone, Name: "cloud-init-start", Reason: "cloud-init started",
		Line: "[   12.1] cloud-init[312]: Cloud-init v. 24.4 running 'init' at Mon, 07 Dec 2026", At: start.Add(19 * time.Second)})
	if err := q.PutLiveConsole(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	webtest.WaitJS(t, ctx, 10*time.Second, "the story grown", fmt.Sprintf(story, 11, 3, "cloud-init"))
	webtest.Screenshot(t, ctx, "job-running-midjob", true)
	if !webtest.Eval[bool](t, ctx, `window.stayed === true`) {
		t.Error("the page reloaded to grow")
	}

	// A reload tells the whole story again.
	webtest.Do(t, ctx, 20*time.Second, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#sofar")))
	if !webtest.Eval[bool](t, ctx, fmt.Sprintf(story, 11, 3, "cloud-init")) {
		t.Error("a reload lost part of the story")
	}
	webtest.Eval[bool](t, ctx, `window.stayed = true`)
	if _, err := q.PublishResult(context.Background(), passResult("mid-1", "img-mid-1", time.Now().UTC()), nil); err != nil {
		t.Fatal(err)
	}
	webtest.WaitJS(t, ctx, 10*time.Second, "the verdict swapped in", `document.querySelector("main h1 .v.pass") !== null && document.getElementById("sofar") === null`)
	if !webtest.Eval[bool](t, ctx, `window.stayed === true`) {
		t.Error("the page reloaded to show the verdict")
	}
}
