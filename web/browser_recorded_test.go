package web

import (
	"context"
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
	webtest.Screenshot(t, ctx, "recorded-job", true)
	// The fatal mark on the timeline leads to its console line.
	webtest.Do(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS("svg.timeline a.mark.fatal circle")))
	webtest.WaitJS(t, ctx, 5*time.Second, "the fatal line as the page's target", `location.hash !== "" && document.querySelector(location.hash).classList.contains("fatal")`)

	// A job that is running: its page follows progress and shows the verdict
	// without a reload (the marker set on the loaded page survives).
	webtest.Do(t, ctx, 20*time.Second, chromedp.Navigate(url+"/jobs/live-1"), chromedp.WaitVisible(chromedp.CSS("#live")))
	webtest.Eval[bool](t, ctx, `window.stayed = true`)
	webtest.WaitJS(t, ctx, 5*time.Second, "the event stream", `document.querySelector("#live") !== null`)
	time.Sleep(300 * time.Millisecond) // let EventSource connect before the first event
	for _, p := range []jobs.Progress{
		{JobID: "live-1", Worker: "w1", Attempt: 1, Stage: "fetch", Event: "start"},
		{JobID: "live-1", Worker: "w1", Attempt: 1, Stage: "fetch", Event: "done"},
		{JobID: "live-1", Worker: "w1", Attempt: 1, Stage: "boot", Event: "start"},
	} {
		if err := q.PublishProgress(p); err != nil {
			t.Fatal(err)
		}
	}
	webtest.WaitJS(t, ctx, 10*time.Second, "three progress rows", `document.querySelectorAll("#events tr").length === 3 && document.getElementById("stage").textContent === "boot"`)
	done := passResult("live-1", "tiny", time.Now().UTC())
	if _, err := q.PublishResult(context.Background(), done, nil); err != nil {
		t.Fatal(err)
	}
	webtest.WaitJS(t, ctx, 10*time.Second, "the verdict swapped in", `document.querySelector("main h1 .v.pass") !== null`)
	if !webtest.Eval[bool](t, ctx, `window.stayed === true`) {
		t.Error("the page reloaded to show the verdict")
	}
}
