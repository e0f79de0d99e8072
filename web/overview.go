package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/imagevet/imagevet/jobs"
)

// PageSize is how many images one page of the overview lists: a catalog of a
// thousand images is paged, failures first, so a page stays small and quick.
const PageSize = 40

// overviewRow is one image on the overview.
type overviewRow struct {
	Image
	// Last is the newest run; HasRuns is false for a family the watch found that
	// has no verdict yet.
	Last    Run
	HasRuns bool
	// History is the strip: oldest first, at most HistoryLen cells.
	History []Run
	// HistoryIDs are the strip's job ids without HistoryPrefix, which they all
	// share, space-separated, for the page's script.
	HistoryPrefix, HistoryIDs string
	// Upstream is the family's newest release as the watch saw it, if it watches it.
	Upstream *jobs.ReleaseRecord
	// Unvetted is set when the newest upstream release is not the one last vetted.
	Unvetted bool
	// Published is the family's Latest image in each cloud the publisher put it in.
	Published []jobs.Published
	// Unpublished are the family's publications refused or waiting for a retry in
	// some cloud.
	Unpublished []jobs.PublicationRecord
}

// verdictCounts counts the images by their latest verdict.
type verdictCounts struct{ Pass, Fail, Error int }

// Overview verdict filters besides a verdict itself.
const (
	filterProblem = "problem" // fail or error
	filterNone    = "none"    // no verdict yet
)

// overviewQuery is what the overview is asked to show, from the URL's query
// (verdict, family, q, page), so a filtered page is a link and works without script.
type overviewQuery struct {
	// Verdict is "", a verdict, filterProblem or filterNone.
	Verdict string
	// Family is a family key, matched exactly (any case).
	Family string
	// Text is matched, in any case, against the image's name, family, releases,
	// failing check, reason and job id.
	Text string
	// Page counts from 1; Per is the rows a page shows (PageSize unless asked,
	// at most MaxPageSize).
	Page, Per int
}

// MaxPageSize is the most rows a page of the overview shows when asked (per=).
const MaxPageSize = 1000

// verdictFilters are the choices of the overview's verdict filter.
var verdictFilters = []string{"", filterProblem, string(jobs.VerdictFail), string(jobs.VerdictError), string(jobs.VerdictPass), filterNone}

// maxFilterText bounds a filter's text; a longer one is cut.
const maxFilterText = 200

// parseOverviewQuery reads the overview's query; what it cannot use it names in
// problems and ignores.
func parseOverviewQuery(v url.Values) (q overviewQuery, problems []string) {
	q = overviewQuery{Verdict: v.Get("verdict"), Family: strings.TrimSpace(v.Get("family")),
		Text: jobs.Bound(strings.TrimSpace(v.Get("q")), maxFilterText), Page: 1, Per: PageSize}
	switch jobs.Verdict(q.Verdict) {
	case "", jobs.VerdictPass, jobs.VerdictFail, jobs.VerdictError, filterProblem, filterNone:
	default:
		problems = append(problems, fmt.Sprintf("verdict %q is not pass, fail, error, problem or none: not filtered by verdict", jobs.Bound(q.Verdict, maxEchoed)))
		q.Verdict = ""
	}
	if len(q.Family) > 64 {
		problems = append(problems, fmt.Sprintf("family %q is longer than a family key: not filtered by family", jobs.Bound(q.Family, maxEchoed)))
		q.Family = ""
	}
	if p := v.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			problems = append(problems, fmt.Sprintf("page %q is not a page number: showing the first", jobs.Bound(p, maxEchoed)))
		} else {
			q.Page = n
		}
	}
	if p := v.Get("per"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > MaxPageSize {
			problems = append(problems, fmt.Sprintf("per %q is not 1 to %d rows: showing %d", jobs.Bound(p, maxEchoed), MaxPageSize, PageSize))
		} else {
			q.Per = n
		}
	}
	return q, problems
}

// Filtered reports whether the query narrows the list.
func (q overviewQuery) Filtered() bool { return q.Verdict != "" || q.Family != "" || q.Text != "" }

// URL is the overview's address for the same filter on page.
func (q overviewQuery) URL(page int) string {
	v := url.Values{}
	if q.Verdict != "" {
		v.Set("verdict", q.Verdict)
	}
	if q.Family != "" {
		v.Set("family", q.Family)
	}
	if q.Text != "" {
		v.Set("q", q.Text)
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	if q.Per != PageSize && q.Per != 0 {
		v.Set("per", strconv.Itoa(q.Per))
	}
	if len(v) == 0 {
		return "/"
	}
	return "/?" + v.Encode()
}

// matches reports whether row passes the filter; text is q.Text in lower case.
func (q overviewQuery) matches(row *overviewRow, text string) bool {
	switch q.Verdict {
	case "":
	case filterNone:
		if row.HasRuns {
			return false
		}
	case filterProblem:
		if !row.HasRuns || row.Last.Verdict == jobs.VerdictPass {
			return false
		}
	default:
		if !row.HasRuns || string(row.Last.Verdict) != q.Verdict {
			return false
		}
	}
	if q.Family != "" && !strings.EqualFold(row.Family, q.Family) {
		return false
	}
	if text == "" {
		return true
	}
	fields := []string{row.Name, row.Family}
	if row.HasRuns {
		fields = append(fields, row.Last.Release, row.Last.FailedCheck, row.Last.Reason, row.Last.JobID)
	}
	if row.Upstream != nil {
		fields = append(fields, row.Upstream.Release)
	}
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), text) {
			return true
		}
	}
	return false
}

// overviewRank puts failures first, then errors, then the rest.
func overviewRank(r *overviewRow) int {
	switch {
	case !r.HasRuns:
		return 2
	case r.Last.Verdict == jobs.VerdictFail:
		return 0
	case r.Last.Verdict == jobs.VerdictError:
		return 1
	}
	return 2
}

// compareRows orders the overview: failures, then errors, then the rest; within
// each by family (or name, for an image of no family), then name, in natural order.
func compareRows(a, b *overviewRow) int {
	if c := overviewRank(a) - overviewRank(b); c != 0 {
		return c
	}
	if c := NaturalCompare(cmpOr(a.Family, a.Name), cmpOr(b.Family, b.Name)); c != 0 {
		return c
	}
	return NaturalCompare(a.Name, b.Name)
}

func cmpOr(s, fallback string) string {
	if s != "" {
		return s
	}
	return fallback
}

// NaturalCompare compares strings as people read them: runs of digits by their
// value, so "x-2" comes before "x-10"; equal values fall back to a plain
// comparison ("x-02" after "x-2").
func NaturalCompare(a, b string) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if isDigit(a[i]) && isDigit(b[j]) {
			ei, ej := i, j
			for ei < len(a) && isDigit(a[ei]) {
				ei++
			}
			for ej < len(b) && isDigit(b[ej]) {
				ej++
			}
			na, nb := strings.TrimLeft(a[i:ei], "0"), strings.TrimLeft(b[j:ej], "0")
			if c := len(na) - len(nb); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			i, j = ei, ej
			continue
		}
		if a[i] != b[j] {
			return int(a[i]) - int(b[j])
		}
		i++
		j++
	}
	if c := (len(a) - i) - (len(b) - j); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

type overviewData struct {
	Rows []overviewRow
	// Counts are over every image; Images counts them, Matched those the filter
	// keeps, and First and Last the numbers of the page's first and last row.
	Counts          verdictCounts
	Images, Matched int
	First, Last     int
	// Verdicts are the verdict filter's choices; PageSize the rows a page shows
	// unless asked.
	Verdicts    []string
	PageSize    int
	Query       overviewQuery
	Page, Pages int
	PrevURL     string
	NextURL     string
	Running     int
	Ready       bool
	// Problems say which columns could not be read from NATS, or which filter was
	// not understood.
	Problems []string
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	query, problems := parseOverviewQuery(r.URL.Query())
	images := s.idx.Images()
	d := overviewData{Query: query, Problems: problems, Verdicts: verdictFilters, PageSize: PageSize,
		Running: len(s.idx.Active(s.opts.Now())), Ready: s.idx.Ready()}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
	defer cancel()
	recs, unread := s.readFamilyRecords(ctx)
	d.Problems = append(d.Problems, unread...)
	rows := recs.rows(images, &d.Counts)
	d.Images = len(rows)
	text := strings.ToLower(query.Text)
	kept := rows[:0]
	for i := range rows {
		if query.matches(&rows[i], text) {
			kept = append(kept, rows[i])
		}
	}
	slices.SortFunc(kept, func(a, b overviewRow) int { return compareRows(&a, &b) })
	d.paginate(kept)
	s.render(w, r, "overview", page{Title: "imagevet", Nav: "overview", Data: d})
}

// familyRecords are what the overview shows of each family besides its verdicts,
// from NATS: its Latest image in each cloud, its publications not done, and its
// newest upstream release.
type familyRecords struct {
	published   map[string][]jobs.Published
	unpublished map[string][]jobs.PublicationRecord
	upstream    map[string]*jobs.ReleaseRecord
	// releases are the upstream releases of every family the watch follows.
	releases []jobs.ReleaseRecord
}

// readFamilyRecords reads the records of every family; what it cannot read it
// names in problems and leaves out.
func (s *Server) readFamilyRecords(ctx context.Context) (fr familyRecords, problems []string) {
	fr = familyRecords{published: map[string][]jobs.Published{}, unpublished: map[string][]jobs.PublicationRecord{}, upstream: map[string]*jobs.ReleaseRecord{}}
	plist, err := s.src.PublishedImages(ctx)
	if err != nil {
		s.log.Warn("published images not read", "err", err)
		problems = append(problems, "published images could not be read from NATS")
	}
	for _, p := range plist {
		fr.published[p.Family] = append(fr.published[p.Family], p)
	}
	pubs, err := s.src.Publications(ctx)
	if err != nil {
		s.log.Warn("publication records not read", "err", err)
		problems = append(problems, "publication records could not be read from NATS")
	}
	for _, p := range pubs {
		if p.State != jobs.PublicationDone {
			fr.unpublished[p.Family] = append(fr.unpublished[p.Family], p)
		}
	}
	fr.releases, err = s.src.Releases(ctx)
	if err != nil {
		s.log.Warn("upstream releases not read", "err", err)
		problems = append(problems, "upstream releases could not be read from NATS")
	}
	for i := range fr.releases {
		fr.upstream[fr.releases[i].Family] = &fr.releases[i]
	}
	return fr, problems
}

// rows are the overview's rows: one per image with its family's records, counted
// by verdict in counts, then one per family the watch follows that has no verdict
// yet.
func (fr familyRecords) rows(images []Image, counts *verdictCounts) []overviewRow {
	rows := make([]overviewRow, 0, len(images)+len(fr.releases))
	seen := map[string]bool{}
	for _, im := range images {
		row := overviewRow{Image: im, Last: im.Latest(), HasRuns: true, History: im.Runs}
		if im.Family != "" {
			row.Published, row.Unpublished, row.Upstream = fr.published[im.Family], fr.unpublished[im.Family], fr.upstream[im.Family]
			seen[im.Family] = true
		}
		switch row.Last.Verdict {
		case jobs.VerdictPass:
			counts.Pass++
		case jobs.VerdictFail:
			counts.Fail++
		default:
			counts.Error++
		}
		rows = append(rows, row)
	}
	for _, rec := range fr.releases {
		if seen[rec.Family] {
			continue
		}
		rows = append(rows, overviewRow{Image: Image{Name: cmpOr(rec.Name, rec.Family), Family: rec.Family}, Upstream: fr.upstream[rec.Family],
			Published: fr.published[rec.Family], Unpublished: fr.unpublished[rec.Family]})
	}
	for i := range rows {
		row := &rows[i]
		row.Unvetted = row.Upstream != nil && (!row.HasRuns || row.Upstream.JobID != row.Last.JobID)
	}
	return rows
}

// paginate shows the page of kept (the rows the query matched, in order) that
// the query asks for, or its last page when it asks past the end, with links to
// the pages before and after.
func (d *overviewData) paginate(kept []overviewRow) {
	q := d.Query
	d.Matched = len(kept)
	d.Pages = max(1, (len(kept)+q.Per-1)/q.Per)
	d.Page = min(q.Page, d.Pages)
	from := (d.Page - 1) * q.Per
	d.Rows = kept[from:min(from+q.Per, len(kept))]
	d.First, d.Last = from+1, from+len(d.Rows)
	if d.Page > 1 {
		d.PrevURL = q.URL(d.Page - 1)
	}
	if d.Page < d.Pages {
		d.NextURL = q.URL(d.Page + 1)
	}
	for i := range d.Rows {
		d.Rows[i].HistoryPrefix, d.Rows[i].HistoryIDs = stripIDs(d.Rows[i].History)
	}
}

// stripIDs returns the common prefix of the runs' job ids and the rest of each,
// space-separated: a strip of one image's ids (its family and release in each) in
// half the bytes.
func stripIDs(runs []Run) (prefix, ids string) {
	if len(runs) == 0 {
		return "", ""
	}
	prefix = runs[0].JobID
	for _, r := range runs[1:] {
		n := 0
		for n < len(prefix) && n < len(r.JobID) && prefix[n] == r.JobID[n] {
			n++
		}
		prefix = prefix[:n]
	}
	var b strings.Builder
	for k, r := range runs {
		if k > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(r.JobID[len(prefix):])
	}
	return prefix, b.String()
}
