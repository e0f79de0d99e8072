// Package webtest drives imagevet's page in headless Chromium (Debian's chromium
// package) for tests: start a browser with a fresh profile, run steps, evaluate and
// wait for conditions in the page, save screenshots as test artefacts.
package webtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browser starts headless Chromium from Debian's package with a fresh profile and
// returns a tab's context. The browser only ever loads the loopback pages the test
// serves; the flags keep it from reaching out on its own.
func Browser(t testing.TB) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: starts Chromium (drop -short)")
	}
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI: chromium not installed (scripts/setup-host installs it): %v", err)
		}
		t.Skipf("chromium not installed (scripts/setup-host installs it): %v", err)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("hide-scrollbars", true),
		// A page left goes, with its event streams: none waits in the
		// back-forward cache holding its server open (see Leave).
		chromedp.Flag("disable-features", "BackForwardCache"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; it must not run under a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// NewTab opens another tab of the browser of ctx.
func NewTab(t testing.TB, ctx context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatal(err)
	}
	return tab
}

// Do runs browser steps under a timeout.
func Do(t testing.TB, ctx context.Context, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		fatalf(t, ctx, "browser steps: %v", err)
	}
}

// evalTimeout bounds one evaluation in the page.
const evalTimeout = 10 * time.Second

// Eval evaluates a JavaScript expression in the page.
func Eval[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	ectx, cancel := context.WithTimeout(ctx, evalTimeout)
	defer cancel()
	v, err := chromedp.Run(ectx, chromedp.Evaluate[T](expr))
	if err != nil {
		fatalf(t, ctx, "%s: %v", expr, err)
	}
	return v
}

// WaitJS polls a JavaScript condition in the page until it holds, for timeout
// (and one evaluation) at most.
func WaitJS(t testing.TB, ctx context.Context, timeout time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !Eval[bool](t, ctx, expr) {
		if time.Now().After(deadline) {
			fatalf(t, ctx, "timed out after %s waiting for %s (%s)", timeout, what, expr)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// leaveTimeout bounds leaving a page on a failure.
const leaveTimeout = 5 * time.Second

// Leave loads a blank page in the tab, within leaveTimeout: the page it leaves
// is unloaded (Browser turns the back-forward cache off), which closes its event
// streams (EventSource) and stops its timers, so the server the test serves it
// from can close. A tab that does not answer is only logged: the browser goes
// with the test.
func Leave(t testing.TB, ctx context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, leaveTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Logf("leaving the page for about:blank: %v", err)
	}
}

// fatalf fails the test after leaving the page: a page that follows a job keeps
// an event stream open, which the test's server, closing next, would wait for.
func fatalf(t testing.TB, ctx context.Context, format string, args ...any) {
	t.Helper()
	Leave(t, ctx)
	t.Fatalf(format, args...)
}

// Screenshot saves the tab as web-NAME.png under the test artefacts directory
// (IMAGEVET_ARTIFACTS, else the system's temporary directory), and also under
// IMAGEVET_WEB_DOCS when set (the docs/ directory the README shows them from). full
// captures the whole page, not only the window.
func Screenshot(t testing.TB, ctx context.Context, name string, full bool) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	shot := chromedp.CaptureScreenshot()
	if full {
		shot = chromedp.FullScreenshot(100)
	}
	png, err := chromedp.Run(sctx, shot)
	if err != nil {
		fatalf(t, ctx, "screenshot %s: %v", name, err)
	}
	if len(png) < 1000 {
		t.Fatalf("screenshot %s: only %d bytes", name, len(png))
	}
	dir := os.Getenv("IMAGEVET_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "imagevet-artifacts")
	}
	dirs := []string{filepath.Join(dir, "web")}
	if docs := os.Getenv("IMAGEVET_WEB_DOCS"); docs != "" {
		dirs = append(dirs, docs)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(d, "web-"+name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", path)
	}
}

// FatalLineJS is true when the console's fatal line is highlighted (the
// stylesheet's red), names its check, and is scrolled into the console's view.
const FatalLineJS = `(() => {
	const el = document.querySelector("pre.console span.fatal");
	if (!el) return false;
	const pre = el.parentElement.getBoundingClientRect(), r = el.getBoundingClientRect();
	return getComputedStyle(el).backgroundColor === "rgb(142, 21, 25)" &&
		el.textContent.includes("Kernel panic - not syncing") && el.dataset.mark === "kernel-panic" &&
		r.top >= pre.top && r.bottom <= pre.bottom && r.height > 0;
})()`

// TimelineJS is true when the stage timeline is drawn with a bar per stage, the
// console milestones and the fatal mark, bars to scale (boot, which lasted until
// the panic, far longer than prepare, and failed).
const TimelineJS = `(() => {
	const svg = document.querySelector("svg.timeline");
	if (!svg || svg.getBoundingClientRect().width < 600) return false;
	const bar = (name) => [...svg.querySelectorAll("g.lane")].find(g => g.querySelector("text").textContent === name)?.querySelector("rect");
	const boot = bar("boot"), prep = bar("prepare");
	return !!boot && !!prep && !!bar("fetch") && !!bar("ssh") && !!bar("cleanup") &&
		boot.getBBox().width > 5 * prep.getBBox().width && boot.parentElement.classList.contains("fail") &&
		svg.querySelectorAll(".mark.milestone").length >= 3 && svg.querySelectorAll(".mark.fatal").length === 1;
})()`

// TimelineLabelsApartJS is true when no two labels of the stage timeline (the
// lanes' names, the marks' names, the axis' ticks) overlap, by their boxes as the
// browser drew them.
const TimelineLabelsApartJS = `(() => {
	const svg = document.querySelector("svg.timeline");
	if (!svg) return false;
	const boxes = [...svg.querySelectorAll("text")].map(t => t.getBoundingClientRect()).filter(r => r.width > 0);
	for (let i = 0; i < boxes.length; i++)
		for (let j = i + 1; j < boxes.length; j++) {
			const a = boxes[i], b = boxes[j];
			if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) return false;
		}
	return boxes.length > 0;
})()`
