package web

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// Promise is how long after a release appears upstream the pipeline promises it
// published: a family page marks every release that took longer, or is still
// unpublished past it.
const Promise = 24 * time.Hour

// familyRelease is one release of a family as its page shows it.
type familyRelease struct {
	Release string
	// Last is the release's newest run, Runs how many runs the index keeps of it.
	Last Run
	Runs int
	// Upstream is when the release appeared upstream: when the vendor released it
	// (UpstreamFrom "released") or else when a watcher first saw it ("first seen").
	Upstream     time.Time
	UpstreamFrom string
	FirstSeen    time.Time
	// Published is where the release went, one entry per cloud (and region).
	Published []familyPublication
	// ToPublish is the time from Upstream to the last cloud's publication, once
	// every cloud recorded has it; Waiting is set while some cloud has not.
	ToPublish time.Duration
	Waiting   bool
	// Over marks a release published later than Promise after Upstream, or not
	// published that long after.
	Over bool
}

// familyPublication is a release's publication in one cloud.
type familyPublication struct {
	Cloud, Region, State, Reason string
	ImageID                      string
	// Done is set once published there, At when.
	Done bool
	At   time.Time
	// OSHashValue and SourceHash are Glance's hash of the published bytes and the
	// vendor file's, when the publisher recorded them.
	OSHashValue, SourceHash string
}

type familyData struct {
	Family, Name string
	// Releases are newest first.
	Releases []familyRelease
	Charts   []chart
	Upstream *jobs.ReleaseRecord
	// Promise labels the promise ("24 h").
	Promise string
	// Over counts the releases past the promise.
	Over     int
	Problems []string
}

func (s *Server) family(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !jobs.ValidFamily(name) {
		http.Error(w, fmt.Sprintf("no family %q: not a valid family key", jobs.Bound(name, maxEchoed)), http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
	defer cancel()
	d := familyData{Family: name, Promise: fmt.Sprintf("%g h", Promise.Hours())}
	problem := func(what string, err error) {
		s.log.Warn("family page: not read", "what", what, "family", name, "err", err)
		d.Problems = append(d.Problems, what+" could not be read from NATS")
	}
	rlist, err := s.src.Releases(ctx)
	if err != nil {
		problem("upstream releases", err)
	}
	for i := range rlist {
		if rlist[i].Family == name {
			d.Upstream = &rlist[i]
			d.Name = rlist[i].Name
		}
	}
	history, err := s.src.ReleaseHistory(ctx, name)
	if err != nil {
		problem("the family's release history", err)
	}
	pubs, err := s.src.Publications(ctx)
	if err != nil {
		problem("publication records", err)
	}
	latest, err := s.src.PublishedImages(ctx)
	if err != nil {
		problem("published images", err)
	}
	runs := s.idx.FamilyRuns(name)
	if len(runs) == 0 && d.Upstream == nil && len(history) == 0 {
		http.Error(w, fmt.Sprintf("no family %q: no verdict and no upstream release seen", name), http.StatusNotFound)
		return
	}
	d.Releases = familyReleases(name, runs, history, pubs, latest, s.opts.Now())
	for _, rel := range d.Releases {
		if rel.Over {
			d.Over++
		}
	}
	d.Charts = familyCharts(d.Releases)
	if d.Name == "" {
		d.Name = name
	}
	s.render(w, r, "family", page{Title: name, Nav: "family", Data: d})
}

// familyReleases groups a family's runs (oldest first) by release, newest release
// first, with when each appeared upstream (the watch's history, else the job's
// released_at) and where and when it was published.
func familyReleases(family string, runs []Run, history []jobs.ReleaseRecord, pubs []jobs.PublicationRecord, latest []jobs.Published, now time.Time) []familyRelease {
	firstSeen, releasedAt := upstreamTimes(history)
	published := familyPublications(family, pubs, latest)
	var out []familyRelease
	index := map[string]int{}
	for _, run := range runs {
		key := cmpOr(run.Release, run.JobID)
		i, ok := index[key]
		if !ok {
			i = len(out)
			index[key] = i
			out = append(out, familyRelease{Release: run.Release})
		}
		rel := &out[i]
		rel.Last = run
		rel.Runs++
		rel.Published = append(rel.Published, published[run.JobID]...)
		if !run.ReleasedAt.IsZero() {
			releasedAt[key] = run.ReleasedAt
		}
	}
	for i := range out {
		key := cmpOr(out[i].Release, out[i].Last.JobID)
		out[i].measure(firstSeen[key], releasedAt[key], now)
	}
	slices.Reverse(out)
	return out
}

// upstreamTimes reads a family's release history: when a watcher first saw each
// release (the earliest record), and when the vendor released it, where a record
// says.
func upstreamTimes(history []jobs.ReleaseRecord) (firstSeen, releasedAt map[string]time.Time) {
	firstSeen, releasedAt = map[string]time.Time{}, map[string]time.Time{}
	for _, h := range history {
		if t, ok := firstSeen[h.Release]; !ok || h.FirstSeen.Before(t) {
			firstSeen[h.Release] = h.FirstSeen
		}
		if h.ReleasedAt != nil {
			releasedAt[h.Release] = *h.ReleasedAt
		}
	}
	return firstSeen, releasedAt
}

// familyPublications maps each job of family to its publications, one per cloud
// (and region) in the order recorded, with when it was published and the hashes
// from the cloud's Latest record where it has one.
func familyPublications(family string, pubs []jobs.PublicationRecord, latest []jobs.Published) map[string][]familyPublication {
	latestOf := map[string]jobs.Published{} // job id and cloud → the Latest record
	for _, p := range latest {
		if p.Family == family {
			latestOf[p.JobID+"\x00"+p.Cloud] = p
		}
	}
	byJob := map[string][]familyPublication{}
	for _, p := range pubs {
		if p.Family != family {
			continue
		}
		fp := familyPublication{Cloud: p.Cloud, Region: p.Region, State: p.State, Reason: p.Reason, ImageID: p.ImageID,
			Done: p.State == jobs.PublicationDone, At: p.UpdatedAt, OSHashValue: p.OSHashValue, SourceHash: p.SourceHash}
		if l, ok := latestOf[p.JobID+"\x00"+p.Cloud]; ok {
			fp.At, fp.OSHashValue, fp.SourceHash = l.PublishedAt, l.OSHashValue, cmpOr(l.SourceHash, fp.SourceHash)
		}
		byJob[p.JobID] = append(byJob[p.JobID], fp)
	}
	return byJob
}

// measure sets when the release appeared upstream (released, else first seen),
// whether some cloud still waits for it (or, with no publication recorded, whether
// it passed), how long it took to publish everywhere, and whether that, or the
// wait so far at now, is over Promise.
func (rel *familyRelease) measure(firstSeen, releasedAt, now time.Time) {
	rel.FirstSeen = firstSeen
	switch {
	case !releasedAt.IsZero():
		rel.Upstream, rel.UpstreamFrom = releasedAt, "released"
	case !firstSeen.IsZero():
		rel.Upstream, rel.UpstreamFrom = firstSeen, "first seen"
	}
	var last time.Time
	for _, p := range rel.Published {
		if !p.Done {
			rel.Waiting = true
		} else if p.At.After(last) {
			last = p.At
		}
	}
	if len(rel.Published) == 0 {
		rel.Waiting = rel.Last.Verdict == jobs.VerdictPass
	}
	if rel.Upstream.IsZero() {
		return
	}
	if !rel.Waiting && !last.IsZero() {
		rel.ToPublish = last.Sub(rel.Upstream)
		rel.Over = rel.ToPublish > Promise
	} else if rel.Waiting {
		rel.Over = now.Sub(rel.Upstream) > Promise
	}
}

// chart is a small line chart of one measure across a family's releases, drawn as
// SVG on the server.
type chart struct {
	Title string
	// Width and Height are the viewBox; the plot spans X0..X1 and Y0 (top)..Y1.
	Width, Height, X0, X1, Y0, Y1 float64
	// Top is the label of the Y axis' top (its bottom is 0); First and Last label
	// the X axis' ends.
	Top, First, Last string
	Line             string
	Points           []chartPoint
}

// chartPoint is one release's value.
type chartPoint struct {
	X, Y  float64
	Class string // the run's verdict, and "jump" when it regressed
	Title string
}

// jumpFactor is how much above the median of a chart's other points a value must
// be to be marked as a regression.
const jumpFactor = 1.5

// familyCharts draws boot time, time to verdict and image size across releases
// (newest first in rels; the charts read oldest to newest, left to right).
func familyCharts(rels []familyRelease) []chart {
	ordered := slices.Clone(rels)
	slices.Reverse(ordered)
	dur := func(d float64) string { return formatDuration(time.Duration(d)) }
	mib := func(v float64) string { return formatMiB(int64(v)) }
	return []chart{
		newChart("boot time (power-on to SSH)", ordered, func(r Run) float64 { return float64(r.Boot) }, dur),
		newChart("time to verdict", ordered, func(r Run) float64 { return float64(r.Took) }, dur),
		newChart("image size", ordered, func(r Run) float64 { return float64(r.Size) }, mib),
	}
}

func newChart(title string, rels []familyRelease, value func(Run) float64, label func(float64) string) chart {
	c := chart{Title: title, Width: 360, Height: 150, X0: 56, X1: 350, Y0: 10, Y1: 124}
	var vals []float64
	for _, r := range rels {
		if v := value(r.Last); v > 0 {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return c
	}
	top := slices.Max(vals) * 1.1
	c.Top = label(top)
	step := 0.0
	if len(rels) > 1 {
		step = (c.X1 - c.X0) / float64(len(rels)-1)
	}
	c.First, c.Last = cmpOr(rels[0].Release, "-"), cmpOr(rels[len(rels)-1].Release, "-")
	for i, r := range rels {
		v := value(r.Last)
		if v <= 0 {
			continue
		}
		x := c.X0 + step*float64(i)
		if len(rels) == 1 {
			x = (c.X0 + c.X1) / 2
		}
		y := c.Y1 - (c.Y1-c.Y0)*v/top
		class := string(r.Last.Verdict)
		if others := without(vals, v); len(others) >= 2 && v > jumpFactor*median(others) {
			class += " jump"
		}
		if c.Line != "" {
			c.Line += " "
		}
		c.Line += strconv.FormatFloat(x, 'f', 1, 64) + "," + strconv.FormatFloat(y, 'f', 1, 64)
		c.Points = append(c.Points, chartPoint{X: x, Y: y, Class: class, Title: fmt.Sprintf("%s: %s (%s)", cmpOr(r.Release, r.Last.JobID), label(v), r.Last.Verdict)})
	}
	return c
}

// without returns vals less one occurrence of v.
func without(vals []float64, v float64) []float64 {
	out := slices.Clone(vals)
	if i := slices.Index(out, v); i >= 0 {
		out = slices.Delete(out, i, i+1)
	}
	return out
}

func median(vals []float64) float64 {
	s := slices.Clone(vals)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
