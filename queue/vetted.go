package queue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
)

// BucketVetted is the KV bucket of each image family's verdicts (key: the family's
// catalog key, publish.family, as StatusKey makes it a key), one entry per reported pass or fail, the last
// VettedHistory kept: what a new release of the family is compared with
// (PreviousRelease). Reporting a result (PublishResult, EnsureStatus) writes it.
const BucketVetted = "imagevet_vetted"

// VettedHistory is how many verdicts BucketVetted keeps per family (NATS's most).
const VettedHistory = 64

// VettedRelease is one verdict on a release of a family, as BucketVetted keeps it;
// the result itself stays in the results stream.
type VettedRelease struct {
	JobID      string       `json:"job_id"`
	Release    string       `json:"release,omitempty"`
	Verdict    jobs.Verdict `json:"verdict"`
	FinishedAt time.Time    `json:"finished_at"`
}

// reported brings what follows from a reported result up to date: its image's
// status entry and its family's verdicts.
func (q *Queue) reported(ctx context.Context, r jobs.Result) error {
	return errors.Join(q.updateStatus(ctx, r), q.recordVetted(ctx, r))
}

// vettedBucket opens BucketVetted, creating it when create is set; without it a
// missing bucket is (nil, nil).
func (q *Queue) vettedBucket(ctx context.Context, create bool) (jetstream.KeyValue, error) {
	return q.ownBucket(ctx, BucketVetted, "imagevet: verdicts per image family, what a new release is compared with", VettedHistory, create)
}

// recordVetted adds r to its family's verdicts unless they hold it already; results
// without a family, and error verdicts (nothing was judged), are not kept.
func (q *Queue) recordVetted(ctx context.Context, r jobs.Result) error {
	family := r.Publish.Family
	if family == "" || (r.Verdict != jobs.VerdictPass && r.Verdict != jobs.VerdictFail) {
		return nil
	}
	kv, err := q.vettedBucket(ctx, true)
	if err != nil {
		return err
	}
	rec := VettedRelease{JobID: r.JobID, Release: r.Publish.Release, Verdict: r.Verdict, FinishedAt: r.FinishedAt.UTC()}
	known, err := vettedOf(ctx, kv, family)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(known, func(v VettedRelease) bool { return v.JobID == rec.JobID && v.FinishedAt.Equal(rec.FinishedAt) }) {
		return nil
	}
	return put(ctx, kv, StatusKey(family), "verdict of "+r.JobID+" in "+BucketVetted, rec)
}

// vettedOf reads a family's kept verdicts, oldest first.
func vettedOf(ctx context.Context, kv jetstream.KeyValue, family string) ([]VettedRelease, error) {
	entries, err := kv.History(ctx, StatusKey(family))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read verdicts of family %s: %w", family, err)
	}
	out := make([]VettedRelease, 0, len(entries))
	for _, e := range entries {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		var v VettedRelease
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			return nil, fmt.Errorf("verdict of family %s (revision %d): %w", family, e.Revision(), err)
		}
		out = append(out, v)
	}
	return out, nil
}

// PreviousRelease returns the result a release of family is compared with: among
// the family's kept verdicts on other releases (neither the job jobID nor the
// release named release), the newest passed one, or when none passed the newest
// failed one. ok is false when there is none (a family's first release, or no
// family).
func (q *Queue) PreviousRelease(ctx context.Context, family, release, jobID string) (prev jobs.Result, ok bool, err error) {
	if family == "" {
		return prev, false, nil
	}
	kv, err := q.vettedBucket(ctx, false)
	if err != nil || kv == nil {
		return prev, false, err
	}
	known, err := vettedOf(ctx, kv, family)
	if err != nil {
		return prev, false, err
	}
	known = slices.DeleteFunc(known, func(v VettedRelease) bool {
		return v.JobID == jobID || (release != "" && v.Release == release)
	})
	// Passed before failed, then newest first (by verdict time, then as kept).
	slices.Reverse(known)
	slices.SortStableFunc(known, func(a, b VettedRelease) int {
		return cmp.Or(cmp.Compare(rank(a.Verdict), rank(b.Verdict)), b.FinishedAt.Compare(a.FinishedAt))
	})
	for _, v := range known {
		r, found, err := q.Result(ctx, v.JobID)
		if err != nil {
			return prev, false, err
		}
		// A result the results stream no longer holds (its limits, a purge), or
		// that a rerun replaced, is passed over for the next one.
		if found && r.FinishedAt.Equal(v.FinishedAt) {
			return r, true, nil
		}
	}
	return prev, false, nil
}

func rank(v jobs.Verdict) int {
	if v == jobs.VerdictPass {
		return 0
	}
	return 1
}
