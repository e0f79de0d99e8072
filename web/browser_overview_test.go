package web

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/web/webtest"
)

// NoSideScrollJS is true when the page does not scroll sideways.
const NoSideScrollJS = `document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth`

// overviewOrderJS is true when the overview's rows list failures, then errors,
// then the rest.
const overviewOrderJS = `(() => {
	const rank = (tr) => tr.querySelector("td .v.fail") ? 0 : tr.querySelector("td .v.error") ? 1 : 2;
	const ranks = [...document.querySelectorAll("table.overview tbody tr")].map(rank);
	return ranks.length > 0 && ranks.every((r, i) => i === 0 || ranks[i-1] <= r);
})()`

// The overview of a thousand-image catalog in a real browser over a real
// (embedded) NATS server: failures first in natural order, filters and pages
// through the form and links, and no sideways scroll at 1024 px with all 1,000 rows
// and reasons holding two 64-hex digests.
func TestBrowserOverviewOfAThousandImages(t *testing.T) {
	ctx := webtest.Browser(t)
	q := testQueue(t)
	s, url := startServer(t, q)
	fillIndex(s.Index(), 3*1000, 1000)
	fillCatalog(t, q, 1000)
	at := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	for _, family := range []string{"nat-10", "nat-2"} {
		r := passResult(family+"-20261202-1", "Nat "+strings.TrimPrefix(family, "nat-"), at)
		r.Publish.Family, r.Verdict, r.FailedCheck, r.Reason = family, jobs.VerdictFail, jobs.CheckImage, digestReason
		s.Index().Add(r)
	}

	webtest.Do(t, ctx, 30*time.Second, chromedp.EmulateViewport(1024, 800), chromedp.Navigate(url+"/?per=1000"), chromedp.WaitVisible(chromedp.CSS("table.overview")))
	if n := webtest.Eval[int](t, ctx, `document.querySelectorAll("table.overview tbody tr").length`); n != 1000 {
		t.Errorf("per=1000 shows %d rows, want 1000 of 1002", n)
	}
	if !webtest.Eval[bool](t, ctx, NoSideScrollJS) {
		t.Errorf("the overview scrolls sideways at 1024 px: %d > %d", webtest.Eval[int](t, ctx, `document.scrollingElement.scrollWidth`),
			webtest.Eval[int](t, ctx, `document.scrollingElement.clientWidth`))
	}
	if !webtest.Eval[bool](t, ctx, overviewOrderJS) {
		t.Error("the overview does not list failures, then errors, then the rest")
	}
	// Natural order: nat-2 before nat-10, both failing, before vendor-os-00.
	if got := webtest.Eval[string](t, ctx, `[...document.querySelectorAll("table.overview tbody tr")].slice(0, 3).map(tr => tr.dataset.image).join(",")`); got != "Nat 2,Nat 10,Vendor OS 00" {
		t.Errorf("first rows %q, want Nat 2, Nat 10, Vendor OS 00", got)
	}
	// A reason of two digests wraps inside its cell.
	if !webtest.Eval[bool](t, ctx, `(() => {
		const r = document.querySelector('tr[data-image="Nat 2"] .reason');
		const td = r.closest("td").getBoundingClientRect(), b = r.getBoundingClientRect();
		return b.right <= td.right + 0.5 && b.height > 40;
	})()`) {
		t.Error("the digests' reason does not wrap inside its cell")
	}

	// The default page: 40 rows and a link to the next page, which continues the list.
	webtest.Do(t, ctx, 30*time.Second, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(url+"/"), chromedp.WaitVisible(chromedp.CSS("table.overview")))
	first := webtest.Eval[string](t, ctx, `[...document.querySelectorAll("table.overview tbody tr")].map(tr => tr.dataset.image).join(",")`)
	if n := strings.Count(first, ",") + 1; n != PageSize {
		t.Errorf("the first page has %d rows, want %d", n, PageSize)
	}
	webtest.Screenshot(t, ctx, "overview", false)
	webtest.Do(t, ctx, 20*time.Second, chromedp.Click(chromedp.CSS(`a[rel="next"]`)))
	webtest.WaitJS(t, ctx, 10*time.Second, "page 2", `location.search === "?page=2" && (document.querySelector(".pager")?.textContent || "").includes("page 2 of 26")`)
	second := webtest.Eval[string](t, ctx, `[...document.querySelectorAll("table.overview tbody tr")].map(tr => tr.dataset.image).join(",")`)
	if second == "" || strings.Contains(","+first+",", ","+strings.Split(second, ",")[0]+",") {
		t.Errorf("page 2 (%.60s…) repeats page 1", second)
	}

	// The form filters on the server: passing images whose text holds vendor-os-07.
	webtest.Do(t, ctx, 20*time.Second,
		chromedp.SetValue(chromedp.CSS(`select[name="verdict"]`), "pass"),
		chromedp.SendKeys(chromedp.CSS(`input[name="q"]`), "vendor-os-07"),
		chromedp.Click(chromedp.CSS(`form.filter button`)))
	webtest.WaitJS(t, ctx, 10*time.Second, "the filtered page", `location.search.includes("verdict=pass") && location.search.includes("q=vendor-os-07")`)
	if !webtest.Eval[bool](t, ctx, `(() => {
		const rows = [...document.querySelectorAll("table.overview tbody tr")];
		return rows.length > 0 && rows.every(tr => tr.querySelector(".v.pass") && tr.textContent.includes("vendor-os-07"));
	})()`) {
		t.Errorf("the filtered page shows other images: %s", webtest.Eval[string](t, ctx, `document.querySelector("main").innerText.slice(0, 400)`))
	}
}
