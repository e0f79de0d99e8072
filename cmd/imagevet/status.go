package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/imagevet/imagevet/jobs"

	"github.com/imagevet/imagevet/queue"
)

const statusUsage = `usage: imagevet status [flags] [IMAGE]
       imagevet status --families
       imagevet status --job JOB-ID
       imagevet status --console JOB-ID

Shows the latest verdict per image name (publish.name) from the status bucket: what a
publisher reads. Below the verdicts, one line per image family and cloud that imagevet
publish put into Glance (its Latest image id, name, release and when, and its hashes:
source_hash, the vendor file's sha512, and os_hash_value, the published file's), the
publications refused or waiting for a retry in some cloud with their reason, and one
line per family that imagevet watch follows (the newest upstream release and the
verdict of the job vetting it; --families shows only those). With IMAGE the exit
status is the verdict's (0 pass, 1 fail, 2 error) or 4 when the image has none. --job
shows one job's result and its publication in each cloud, --console prints its whole
serial console log.

`

// exitNoVerdict is status's exit code for an image or job without a result.
const exitNoVerdict = 4

// statusQuery is what one imagevet status asks for.
type statusQuery struct {
	jsonOut, families     bool
	jobID, console, image string
}

func cmdStatus(ctx context.Context, args []string, env Env) int {
	var (
		nf natsFlags
		sq statusQuery
	)
	rest, err := parseCommand("status", statusUsage, args, env, merged(nf.bind(), map[string]any{
		"json": &sq.jsonOut, "job": &sq.jobID, "console": &sq.console, "families": &sq.families}))
	if code, stop := flagStop(err); stop {
		return code
	}
	if err == nil && (len(rest) > 1 || (len(rest) == 1 && (sq.jobID != "" || sq.console != "" || sq.families))) {
		err = fmt.Errorf("one IMAGE, or --job, --console or --families, got %q (see imagevet status -h)", rest)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet status: %v\n", err)
		return exitError
	}
	if len(rest) == 1 {
		sq.image = rest[0]
	}
	q, ctx, done, err := openQueue(ctx, nf, "imagevet status")
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet status: %v\n", err)
		return exitError
	}
	defer done()
	code, err := sq.show(ctx, env.Stdout, q)
	if err != nil {
		fmt.Fprintf(env.Stderr, "imagevet status: %v\n", err)
	}
	return code
}

// show writes what sq asks for to w and returns the exit status: a verdict's for
// one job or image, exitNoVerdict when it has none.
func (sq statusQuery) show(ctx context.Context, w io.Writer, q *queue.Queue) (int, error) {
	switch {
	case sq.console != "":
		if err := q.Console(ctx, sq.console, w); err != nil {
			return exitNoVerdict, err
		}
		return exitPass, nil
	case sq.jobID != "" || sq.image != "":
		return sq.showResult(ctx, w, q)
	case sq.families:
		lines, err := familyLines(ctx, q)
		if err != nil {
			return exitError, err
		}
		if sq.jsonOut {
			writeJSON(w, lines)
		} else {
			printFamilyTable(w, lines)
		}
		return exitPass, nil
	}
	o, err := overview(ctx, q)
	if err != nil {
		return exitError, err
	}
	if sq.jsonOut { // every table of the text output, by name
		writeJSON(w, o)
		return exitPass, nil
	}
	printStatusTable(w, o.Images)
	printPublishedTable(w, o.Published)
	printPublicationTable(w, o.Publications, func(jobs.PublicationRecord) bool { return true })
	if len(o.Families) > 0 {
		fmt.Fprintln(w)
		printFamilyTable(w, o.Families)
	}
	return exitPass, nil
}

// showResult writes one job's or image's result and its publications in each
// cloud; the exit status is its verdict's.
func (sq statusQuery) showResult(ctx context.Context, w io.Writer, q *queue.Queue) (int, error) {
	var (
		res jobs.Result
		ok  bool
		err error
	)
	what := "job " + sq.jobID
	if sq.jobID != "" {
		res, ok, err = q.Result(ctx, sq.jobID)
	} else {
		what = "image " + sq.image
		res, ok, err = q.Status(ctx, sq.image)
	}
	if err != nil {
		return exitError, err
	}
	if !ok {
		return exitNoVerdict, fmt.Errorf("no verdict for %s", what)
	}
	recs, err := q.Publications(ctx)
	if err != nil {
		return exitError, err
	}
	mine := func(p jobs.PublicationRecord) bool { return p.JobID == res.JobID }
	if sq.jsonOut { // the result, and its publications as the table shows them
		writeJSON(w, resultStatus{Result: res, Publications: keepPublications(recs, mine)})
	} else {
		printResultTable(w, res)
		printPublicationTable(w, recs, mine)
	}
	return exitCode(res.Verdict), nil
}

// overview is every table of status without an image: the latest verdict per
// image, each family's Latest in each cloud, the publications refused or
// retrying, and each family's newest upstream release.
func overview(ctx context.Context, q *queue.Queue) (overviewStatus, error) {
	all, err := q.Statuses(ctx)
	if err != nil {
		return overviewStatus{}, err
	}
	sort.Slice(all, func(i, j int) bool { return statusName(all[i]) < statusName(all[j]) })
	published, err := q.PublishedImages(ctx)
	if err != nil {
		return overviewStatus{}, err
	}
	recs, err := q.Publications(ctx)
	if err != nil {
		return overviewStatus{}, err
	}
	pending := func(p jobs.PublicationRecord) bool { return p.State != jobs.PublicationDone }
	lines, err := familyLines(ctx, q)
	if err != nil {
		return overviewStatus{}, err
	}
	return overviewStatus{Images: nonNil(all), Published: nonNil(published),
		Publications: nonNil(keepPublications(recs, pending)), Families: nonNil(lines)}, nil
}

// resultStatus is status --json of one job or image: its result and its
// publications in each cloud.
type resultStatus struct {
	jobs.Result
	Publications []jobs.PublicationRecord `json:"publications"`
}

// overviewStatus is status --json without an image: what each table of the text
// output shows.
type overviewStatus struct {
	// Images is the latest verdict per image name.
	Images []jobs.Result `json:"images"`
	// Published is each family's Latest in each cloud.
	Published []jobs.Published `json:"published"`
	// Publications are those refused or retrying.
	Publications []jobs.PublicationRecord `json:"publications"`
	// Families are the newest upstream release per family and its verdict.
	Families []familyLine `json:"families"`
}

func keepPublications(all []jobs.PublicationRecord, keep func(jobs.PublicationRecord) bool) []jobs.PublicationRecord {
	out := []jobs.PublicationRecord{}
	for _, p := range all {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}

// nonNil makes a nil list an empty one, so JSON says [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// familyLine is one image family's newest upstream release and its vetting state.
type familyLine struct {
	jobs.ReleaseRecord
	// Verdict is the vetting job's verdict, or the record's state while it has none.
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
}

func familyLines(ctx context.Context, q *queue.Queue) ([]familyLine, error) {
	recs, err := q.Releases(ctx)
	if err != nil {
		return nil, err
	}
	lines := make([]familyLine, 0, len(recs))
	for _, r := range recs {
		l := familyLine{ReleaseRecord: r, Verdict: r.State}
		if r.JobID != "" {
			res, ok, err := q.Result(ctx, r.JobID)
			if err != nil {
				return nil, err
			}
			if ok {
				l.Verdict, l.Reason = string(res.Verdict), res.Reason
				if res.FailedCheck != "" {
					l.Reason = res.FailedCheck + ": " + res.Reason
				}
			}
		}
		if l.Verdict == "" {
			l.Verdict = "none"
		}
		lines = append(lines, l)
	}
	return lines, nil
}

// printFamilyTable prints one line per family: upstream release, its job and verdict,
// the last successful feed check and the last feed error.
func printFamilyTable(w io.Writer, lines []familyLine) {
	if len(lines) == 0 {
		fmt.Fprintln(w, "no image families watched yet")
		return
	}
	tw := newTable(w, "FAMILY\tUPSTREAM\tFIRST SEEN\tVERDICT\tJOB\tCHECKED\tFEED ERROR")
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, l := range lines {
		verdict := l.Verdict
		if l.Reason != "" {
			verdict += " (" + jobs.FirstLine(l.Reason, 60) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Family, orDash(l.Release), when(l.FirstSeen), verdict,
			orDash(l.JobID), when(l.CheckedAt), orDash(jobs.FirstLine(l.FeedError, 80)))
	}
	tw.Flush()
}

func statusName(r jobs.Result) string {
	if r.Publish.Name != "" {
		return r.Publish.Name
	}
	return r.JobID
}

// printStatusTable prints one line per image: its latest verdict and why.
func printStatusTable(w io.Writer, all []jobs.Result) {
	if len(all) == 0 {
		fmt.Fprintln(w, "no verdicts yet")
		return
	}
	tw := newTable(w, "IMAGE\tVERDICT\tJOB\tFINISHED\tREASON")
	for _, r := range all {
		reason := r.Reason
		if r.FailedCheck != "" {
			reason = r.FailedCheck + ": " + reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", statusName(r), r.Verdict, r.JobID,
			r.FinishedAt.UTC().Format(time.RFC3339), orDash(jobs.FirstLine(reason, 80)))
	}
	tw.Flush()
}

// printPublishedTable prints one line per family and cloud published to Glance: its
// Latest image; then the hashes of each.
func printPublishedTable(w io.Writer, all []jobs.Published) {
	if len(all) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := newTable(w, "FAMILY\tCLOUD\tPUBLISHED IMAGE\tNAME\tRELEASE\tJOB\tPUBLISHED AT")
	for _, p := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Family, orDash(cloudRegion(p.Cloud, p.Region)), p.ImageID, p.Name,
			orDash(p.Release), p.JobID, p.PublishedAt.UTC().Format(time.RFC3339))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = newTable(w, "FAMILY\tCLOUD\tSOURCE_HASH (vendor file sha512)\tOS_HASH_VALUE (published file sha512)")
	for _, p := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Family, orDash(p.Cloud), orDash(p.SourceHash), orDash(p.OSHashValue))
	}
	tw.Flush()
}

// printPublicationTable prints the publication records keep selects: each job's state
// in each cloud, why it was refused or is retried, and how to retry it.
func printPublicationTable(w io.Writer, all []jobs.PublicationRecord, keep func(jobs.PublicationRecord) bool) {
	var recs []jobs.PublicationRecord
	for _, p := range all {
		if keep(p) {
			recs = append(recs, p)
		}
	}
	if len(recs) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := newTable(w, "PUBLICATION\tCLOUD\tSTATE\tATTEMPTS\tUPDATED\tNEXT TRY\tIMAGE\tREASON")
	refused := false
	for _, p := range recs {
		next := "-"
		if p.NextTry != nil {
			next = p.NextTry.UTC().Format(time.RFC3339)
		}
		state := p.State
		if p.Outcome != "" && p.State == jobs.PublicationDone {
			state += " (" + p.Outcome + ")"
		}
		refused = refused || p.State == jobs.PublicationRefused
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", p.JobID, cloudRegion(p.Cloud, p.Region), state, p.Attempts,
			p.UpdatedAt.UTC().Format(time.RFC3339), next, orDash(p.ImageID), orDash(jobs.FirstLine(p.Reason, 160)))
	}
	tw.Flush()
	if refused {
		fmt.Fprintln(w, "a refused publication is tried again by: imagevet publish --job JOB-ID [--cloud CLOUD]")
	}
}
