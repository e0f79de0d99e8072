package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/web/webtest"
)

// TestWebPageOnRealJobs: `imagevet serve` beside a worker vetting the tiny and
// tiny-panic fixtures (real libvirtd, TCG), looked at in headless Chromium. The page
// of the job that runs first follows it live and shows its verdict without a
// reload; the queue and workers pages show it running; the overview lists both
// verdicts; tiny-panic's page shows the timeline and its highlighted fatal line.
// Screenshots go to the test artefacts (and to docs/ with IMAGEVET_WEB_DOCS=../docs).
func TestWebPageOnRealJobs(t *testing.T) {
	enabled(t)
	besideOthers(t)
	needLibvirt(t)
	fixturesDir(t)
	ctx := webtest.Browser(t)
	url := startNATS(t)
	// One slot: the second job waits in the queue while the first runs. A generous
	// TCG factor: this test is about the page, not about boot times on a loaded host.
	startWorker(t, url, fmt.Sprintf("itest%dweb", os.Getpid()), "--concurrency", "1", "--tcg-factor", "8")
	page := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	serve := start(t, 10*time.Second, "serve", imagevet(t), "serve", "--nats", url, "--listen", page[len("http://"):])
	waitFor(t, 30*time.Second, "imagevet serve /healthz", func() bool {
		select {
		case <-serve.done:
			t.Fatalf("imagevet serve exited:\n%s", serve.output())
		default:
		}
		resp, err := http.Get(page + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	nc, q := openQueue(t, url)
	defer nc.Close()
	submit := func(name string) jobs.Job {
		f, err := os.Open(filepath.Join("../fixtures/jobs", name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		job, err := jobs.ReadJob(f)
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := q.Submit(sctx, job); err != nil {
			t.Fatal(err)
		}
		return job
	}

	// The page of a job opened before it started follows it live.
	tiny := submit("tiny.json")
	webtest.Do(t, ctx, 30*time.Second, chromedp.Navigate(page+"/jobs/"+tiny.ID), chromedp.WaitVisible(chromedp.CSS("#live")))
	webtest.Eval[bool](t, ctx, `window.stayed = true`)
	panicJob := submit("tiny-panic.json")
	webtest.WaitJS(t, ctx, 3*time.Minute, "live progress rows on the running job's page",
		`document.querySelectorAll("#events tr").length >= 3 && document.getElementById("stage").textContent !== ""`)
	webtest.Screenshot(t, ctx, "job-running", false)

	// Meanwhile the queue shows it running and tiny-panic queued; the workers page
	// shows the worker with its running job.
	tab := webtest.NewTab(t, ctx)
	webtest.Do(t, tab, 30*time.Second, chromedp.Navigate(page+"/queue"), chromedp.WaitVisible(chromedp.CSS("table.queue")))
	if !webtest.Eval[bool](t, tab, fmt.Sprintf(`(() => {
		const rows = [...document.querySelectorAll("table.queue tbody tr")].map(r => r.textContent);
		return rows.some(r => r.startsWith(%q) && r.includes("running")) && rows.some(r => r.startsWith(%q) && r.includes("queued"));
	})()`, tiny.ID, panicJob.ID)) {
		t.Error("the queue page does not show tiny running and tiny-panic queued")
	}
	webtest.Screenshot(t, tab, "queue", false)
	webtest.Do(t, tab, 30*time.Second, chromedp.Navigate(page+"/workers"), chromedp.WaitVisible(chromedp.CSS("table.workers")))
	if !webtest.Eval[bool](t, tab, fmt.Sprintf(`document.querySelector("table.workers tbody").textContent.includes(%q)`, tiny.ID)) {
		t.Error("the workers page does not show the running job")
	}
	webtest.Screenshot(t, tab, "workers", false)

	// The verdict replaces the live view without a reload.
	webtest.WaitJS(t, ctx, 8*time.Minute, "tiny's verdict on its page", `document.querySelector("main h1 .v.pass, main h1 .v.fail, main h1 .v.error") !== null`)
	if !webtest.Eval[bool](t, ctx, `window.stayed === true`) {
		t.Error("the running job's page reloaded to show its verdict")
	}
	if !webtest.Eval[bool](t, ctx, `document.querySelector("main h1 .v.pass") !== null`) {
		t.Errorf("tiny's verdict is not pass: %s", webtest.Eval[string](t, ctx, `document.querySelector("main").innerText.slice(0, 600)`))
	}

	// tiny-panic: the overview lists both verdicts; its page shows the timeline and
	// the highlighted fatal line.
	wctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if _, err := q.Wait(wctx, panicJob.ID, nil); err != nil {
		t.Fatalf("tiny-panic: %v", err)
	}
	webtest.Do(t, ctx, 30*time.Second, chromedp.Navigate(page+"/"), chromedp.WaitVisible(chromedp.CSS("table.overview")))
	webtest.WaitJS(t, ctx, 10*time.Second, "both verdicts on the overview", fmt.Sprintf(`(() => {
		const row = (name) => document.querySelector('tr[data-image="' + name + '"]')?.textContent || "";
		return row(%q).includes("pass") && row(%q).includes("fail") && row(%q).includes("kernel panic");
	})()`, tiny.Publish.Name, panicJob.Publish.Name, panicJob.Publish.Name))
	webtest.Screenshot(t, ctx, "overview-real-jobs", false) // docs/web-overview.png is web's thousand-image one
	webtest.Do(t, ctx, 30*time.Second, chromedp.Navigate(page+"/jobs/"+panicJob.ID), chromedp.WaitVisible(chromedp.CSS("pre.console")))
	if !webtest.Eval[bool](t, ctx, webtest.TimelineJS) {
		t.Error("tiny-panic's page has no timeline to scale with its console marks")
	}
	if !webtest.Eval[bool](t, ctx, webtest.FatalLineJS) {
		t.Error("tiny-panic's page does not show its fatal line highlighted")
	}
	webtest.Screenshot(t, ctx, "job", true)
}
