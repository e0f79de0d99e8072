package web

import (
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/imagevet/imagevet/web/webtest"
)

// The family page in a real browser over a real (embedded) NATS server: three
// charts drawn with a point per release and the regression marked, the releases
// past the 24-hour promise marked, and no sideways scroll at 1024 px.
func TestBrowserFamilyPage(t *testing.T) {
	ctx := webtest.Browser(t)
	q := testQueue(t)
	now := familyEpoch.Add(8 * 24 * time.Hour)
	s, err := New(q, Options{Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	seedFamily(t, q, s.Index())
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { closeServer(t, hs) })

	// From the overview, the family's link leads to its page.
	webtest.Do(t, ctx, 30*time.Second, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(hs.URL+"/"), chromedp.WaitVisible(chromedp.CSS("table.overview")))
	webtest.Do(t, ctx, 20*time.Second, chromedp.Click(chromedp.CSS(`a[href="/families/deb-12"]`)), chromedp.WaitVisible(chromedp.CSS(".charts")))
	if !webtest.Eval[bool](t, ctx, `(() => {
		const charts = [...document.querySelectorAll("figure.chart svg")];
		const drawn = charts.every(svg => svg.getBoundingClientRect().width > 200 && svg.querySelector("polyline").getBBox().width > 100);
		const points = charts.map(svg => svg.querySelectorAll("circle").length).join(",");
		return charts.length === 3 && drawn && points === "5,6,6" && document.querySelectorAll("figure.chart circle.jump").length === 2;
	})()`) {
		t.Errorf("the charts are not drawn with their points: %s", webtest.Eval[string](t, ctx, `[...document.querySelectorAll("figure.chart")].map(f => f.querySelectorAll("circle").length + " " + (f.querySelector("svg")?.getBoundingClientRect().width || 0)).join("; ")`))
	}
	// The 24-hour marks: two rows, shown in the failure colour.
	if !webtest.Eval[bool](t, ctx, `(() => {
		const rows = [...document.querySelectorAll("table.family tr.over")];
		return rows.length === 2 && rows.every(tr => getComputedStyle(tr.querySelector("b.over")).color === "rgb(207, 34, 46)");
	})()`) {
		t.Error("the releases past the 24-hour promise are not marked")
	}
	webtest.Screenshot(t, ctx, "family", true)
	webtest.Do(t, ctx, 20*time.Second, chromedp.EmulateViewport(1024, 800), chromedp.Navigate(hs.URL+"/families/deb-12"), chromedp.WaitVisible(chromedp.CSS(".charts")))
	if !webtest.Eval[bool](t, ctx, NoSideScrollJS) {
		t.Error("the family page scrolls sideways at 1024 px")
	}
}
