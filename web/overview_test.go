package web

import (
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

func TestNaturalCompare(t *testing.T) {
	want := []string{"", "debian-2", "debian-10", "debian-10a", "debian-11", "x-02", "x-2", "x-2.1", "x-2.10", "x-10", "x-10-1", "y"}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, NaturalCompare)
	if !slices.Equal(got, want) {
		t.Errorf("sorted %q\nwant   %q", got, want)
	}
	if NaturalCompare("a-"+strings.Repeat("9", 40), "a-"+strings.Repeat("1", 41)) >= 0 {
		t.Error("a longer number is not the greater (numbers past 64 bits)")
	}
}

// overviewRows are the image names a page lists, in order.
var overviewRowRE = regexp.MustCompile(`<tr data-image="([^"]*)"`)

func overviewRows(body string) []string {
	var out []string
	for _, m := range overviewRowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

// The overview lists failures, then errors, then the rest, each by family in
// natural order; filters (verdict, family, text) and pages are the URL's query.
func TestOverviewOrdersFiltersAndPages(t *testing.T) {
	s, err := New(testQueue(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	add := func(family string, v jobs.Verdict, reason string) {
		r := passResult(family+"-1", family, at)
		r.Publish.Family = family
		if v != jobs.VerdictPass {
			r.Verdict, r.FailedCheck, r.Reason = v, jobs.CheckBoot, reason
		}
		s.Index().Add(r)
	}
	add("x-10", jobs.VerdictPass, "")
	add("x-2", jobs.VerdictPass, "")
	add("x-9", jobs.VerdictError, "libvirtd down")
	add("x-11", jobs.VerdictFail, "kernel panic")
	add("x-3", jobs.VerdictFail, "emergency mode "+strings.Repeat("ab12", 16))
	s.Index().MarkReady()
	h := s.Handler()
	get := func(path string) string {
		t.Helper()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != 200 {
			t.Fatalf("GET %s: %d", path, w.Code)
		}
		return w.Body.String()
	}
	for path, want := range map[string][]string{
		"/":                    {"x-3", "x-11", "x-9", "x-2", "x-10"},
		"/?verdict=fail":       {"x-3", "x-11"},
		"/?verdict=problem":    {"x-3", "x-11", "x-9"},
		"/?verdict=pass":       {"x-2", "x-10"},
		"/?verdict=none":       nil,
		"/?family=X-2":         {"x-2"},
		"/?q=PANIC":            {"x-11"},
		"/?q=ab12ab12":         {"x-3"},
		"/?q=x-1":              {"x-11", "x-10"},
		"/?verdict=pass&q=x-1": {"x-10"},
		"/?per=2":              {"x-3", "x-11"},
		"/?per=2&page=2":       {"x-9", "x-2"},
		"/?per=2&page=3":       {"x-10"},
		"/?per=2&page=99":      {"x-10"},
		"/?verdict=bogus":      {"x-3", "x-11", "x-9", "x-2", "x-10"},
		"/?page=0&per=x&family=" + strings.Repeat("f", 100): {"x-3", "x-11", "x-9", "x-2", "x-10"},
	} {
		if got := overviewRows(get(path)); !slices.Equal(got, want) {
			t.Errorf("GET %s lists %q, want %q", path, got, want)
		}
	}
	body := get("/?per=2&page=2&verdict=problem")
	for _, want := range []string{
		`3–3 of 3 matching · page 2 of 2 · <a rel="prev" href="/?per=2&amp;verdict=problem">previous</a>`,
		`<option value="problem" selected>problem</option>`,
		`<input type="hidden" name="per" value="2">`,
		`<a href="/">all images</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("filtered page lacks %q", want)
		}
	}
	body = get("/?verdict=bogus&page=0&per=5000")
	for _, want := range []string{`verdict &#34;bogus&#34; is not pass, fail, error, problem or none`, `page &#34;0&#34; is not a page number`, `per &#34;5000&#34; is not 1 to 1000 rows`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks the problem %q", want)
		}
	}
	if body := get("/?q=nothing-matches"); !strings.Contains(body, "No image matches this filter.") {
		t.Error("an empty filter result does not say so")
	}
	// A text that is not HTML stays text, in the field and the links.
	if body := get(`/?q=%22%3E%3Cscript%3E`); strings.Contains(body, `"><script>`) {
		t.Error("the filter text is not escaped")
	}
}
