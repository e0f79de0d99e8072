// Package publish puts images that passed vetting into OpenStack Glance, in every
// cloud or region a result selects (Fleet): exactly the vetted bytes (hashed as they
// are sent, Glance's os_hash_value and disk_format checked after; a raw publication
// is the worker's conversion, or the vendor's qcow2 imported into a Glance that
// converts on import), under the family's Latest name, and rotates the family's older
// releases to community or hidden, deactivates those past the policy and deletes them
// once no server and no volume uses them. It reads results from NATS (a durable
// consumer of the results stream, or one job's result), records each family's Latest
// per cloud in queue.BucketPublished and each job's state per cloud (published,
// retrying, refused with its reason) in queue.BucketPublications.
package publish

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/jobs"

	"github.com/imagevet/imagevet/queue"
)

// ConfigError is a bad setting or credential: fix the configuration, retrying won't help.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// MismatchError says the bytes are not the vetted ones: the source changed, the cache
// is damaged, or Glance stored something else. Nothing is published; not retried.
type MismatchError struct {
	What      string // "sha256 of <file>", "Glance os_hash_value of image <id>"…
	Want, Got string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s is %s, the verdict was for %s", e.What, e.Got, e.Want)
}

// ErrorClass: a bad setting is not fixed by trying again.
func (e *ConfigError) ErrorClass() (jobs.Class, bool) { return jobs.ClassInfra, false }

// ErrorClass: bytes that are not the vetted ones are never published.
func (e *MismatchError) ErrorClass() (jobs.Class, bool) { return jobs.ClassImage, false }

// Retryable reports whether a failed publication may succeed when tried again later:
// cloud or network trouble, yes; bad configuration, wrong bytes or a bad result
// (errors that say so through jobs.Classed), no.
func Retryable(err error) bool {
	if _, retry, ok := jobs.ClassOf(err); ok {
		return retry
	}
	return true
}

// Outcome statuses.
const (
	StatusPublished  = "published"  // this job's image was uploaded and the family rotated
	StatusAlready    = "already"    // the job's image was in Glance already; the family was brought to the policy
	StatusSuperseded = "superseded" // newer releases fill the family's policy: nothing uploaded
	StatusSkipped    = "skipped"    // the result does not ask for publication (or is not a pass)
	StatusPlanned    = "planned"    // --dry-run: the plan, nothing changed
)

// Outcome is what one publication did (or, in a dry run, would do).
type Outcome struct {
	JobID   string   `json:"job_id"`
	Family  string   `json:"family,omitempty"`
	Status  string   `json:"status"`
	Reason  string   `json:"reason,omitempty"`
	ImageID string   `json:"image_id,omitempty"` // the job's Glance image
	Latest  string   `json:"latest,omitempty"`   // the family's Latest image after the run
	Plan    []Action `json:"plan"`
	// Cloud and Region say where: the publisher's name for the cloud, and its region.
	Cloud  string `json:"cloud,omitempty"`
	Region string `json:"region,omitempty"`
	// Problems lists steps that failed and are tried again on the next run (a delete
	// refused, an image still in use is not a problem but a reason to keep it).
	Problems []string `json:"problems,omitempty"`
	// Kept lists images past the policy that stay because something uses them.
	Kept []string `json:"kept,omitempty"`
}

// Config wires a Publisher.
type Config struct {
	Cloud *Cloud
	// Store is where the vetted bytes are found: the worker's content-addressed
	// cache, else fetched again from the result's image source (and verified).
	Store *image.Store
	// Usage is the in-use check before a delete (default: the cloud's Nova and Cinder).
	Usage Usage
	// Queue receives the family's published record; nil leaves the record alone.
	Queue *queue.Queue
	// MinUploadRate sizes the upload deadline: 5 min plus the image size at this
	// many bytes per second (default 2 MiB/s).
	MinUploadRate int64
	// UploadMethod is how the bytes reach Glance: UploadAuto (glance-direct import
	// where the cloud offers it, else a plain upload), UploadImport or UploadPlain.
	UploadMethod string
	// ImportConverts says whether the cloud's Glance converts imported images to raw
	// (the image_conversion import plugin): ConvertsAuto (default: learnt from the
	// first import Glance stores in another format than asked), ConvertsYes or
	// ConvertsNo. Where it converts, a raw publication of a qcow2 vendor file imports
	// the vetted qcow2 and requires Glance's os_hash_value to be the raw's sha512,
	// and a qcow2 publication is uploaded plainly (PUT), which no plugin touches.
	ImportConverts string
	// PollEvery is how often an image's status is polled (default 2 s).
	PollEvery time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// leaseTTL is how long a publisher that stopped renewing keeps its family's lease.
const leaseTTL = 2 * time.Minute

var errLeaseLost = errors.New("this publisher lost its family lease (it stalled past the lease's expiry and another publisher took over)")

// Publisher publishes passed results to one cloud. With a Queue, publications of
// one family in one cloud never overlap, whichever processes run them (a lease per
// family and cloud in NATS); without one, the caller must not overlap them.
type Publisher struct {
	cfg    Config
	holder string
	glance *glance
	usage  Usage
	log    *slog.Logger
	now    func() time.Time
	// converts is what the publisher knows of the cloud's import conversion:
	// ConvertsYes, ConvertsNo, or ConvertsAuto while it is not known.
	converts atomic.Value
}

// Import conversion settings (Config.ImportConverts).
const (
	ConvertsAuto = "auto"
	ConvertsYes  = "yes"
	ConvertsNo   = "no"
)

// Upload methods (Config.UploadMethod).
const (
	UploadAuto   = "auto"
	UploadImport = "import" // glance-direct: stage, then import
	UploadPlain  = "upload" // PUT the data, for clouds whose import is off or broken
)

// New checks cfg and returns a Publisher.
func New(cfg Config) (*Publisher, error) {
	if cfg.Cloud == nil || cfg.Cloud.Image == nil {
		return nil, &ConfigError{Field: "cloud", Err: errors.New("no image service client")}
	}
	switch cfg.UploadMethod {
	case "":
		cfg.UploadMethod = UploadAuto
	case UploadAuto, UploadImport, UploadPlain:
	default:
		return nil, &ConfigError{Field: "upload-method", Err: fmt.Errorf("%q is not auto, import or upload", cfg.UploadMethod)}
	}
	switch cfg.ImportConverts {
	case "":
		cfg.ImportConverts = ConvertsAuto
	case ConvertsAuto, ConvertsYes, ConvertsNo:
	default:
		return nil, &ConfigError{Field: "import-converts", Err: fmt.Errorf("%q is not auto, yes or no", cfg.ImportConverts)}
	}
	if cfg.Store == nil {
		return nil, &ConfigError{Field: "cache", Err: errors.New("no image store")}
	}
	if cfg.MinUploadRate <= 0 {
		cfg.MinUploadRate = 2 << 20
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 2 * time.Second
	}
	if cfg.Cloud.Timeout <= 0 {
		cfg.Cloud.Timeout = 2 * time.Minute
	}
	p := &Publisher{cfg: cfg, glance: &glance{sc: cfg.Cloud.Image}, usage: cfg.Usage, log: cfg.Logger, now: cfg.Now}
	p.converts.Store(cfg.ImportConverts)
	if p.usage == nil {
		p.usage = NewUsage(cfg.Cloud)
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("cloud", cfg.Cloud.Name, "region", cfg.Cloud.Region)
	if p.now == nil {
		p.now = time.Now
	}
	host, _ := os.Hostname()
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	p.holder = fmt.Sprintf("%s pid %d (%x)", host, os.Getpid(), nonce)
	return p, nil
}

// Cloud is the cloud this publisher publishes to.
func (p *Publisher) Cloud() *Cloud { return p.cfg.Cloud }

// Ineligible says why a result must not reach Glance, or "" when it may.
func Ineligible(r jobs.Result) string {
	switch {
	case r.Verdict != jobs.VerdictPass:
		return "verdict " + string(r.Verdict) + ", only a pass is published"
	case !r.Publish.Glance:
		return "the job does not ask for publication (publish.glance)"
	case r.Publish.Family == "":
		return "publish.family is empty"
	case r.ImageFacts == nil || r.ImageFacts.OSHashValue == "" || r.ImageFacts.SHA256 == "":
		return "the result carries no image facts (digests)"
	case r.ImageFacts.Source == "":
		return "the result carries no image source"
	}
	return ""
}

// call bounds one API call.
func (p *Publisher) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.cfg.Cloud.Timeout)
}

// Publish publishes a passed result's image and rotates its family; with dryRun it
// only plans. It is idempotent by job id: the job's image, once in Glance, is found
// by its imagevet_job_id property and never uploaded twice. Errors name the cloud
// and its region.
func (p *Publisher) Publish(ctx context.Context, r jobs.Result, dryRun bool) (Outcome, error) {
	out, err := p.publish(ctx, r, dryRun)
	if err != nil {
		err = fmt.Errorf("%s: %w", p.cfg.Cloud, err)
	}
	return out, err
}

func (p *Publisher) publish(ctx context.Context, r jobs.Result, dryRun bool) (Outcome, error) {
	out := Outcome{JobID: r.JobID, Family: r.Publish.Family, Cloud: p.cfg.Cloud.Name, Region: p.cfg.Cloud.Region, Plan: []Action{}}
	if why := Ineligible(r); why != "" {
		out.Status, out.Reason = StatusSkipped, why
		return out, nil
	}
	if d := r.Publish.DiskFormat; d != "" && d != r.ImageFacts.Format {
		return out, &MismatchError{What: "the vetted file's format (publish.disk_format " + d + ")", Want: d, Got: r.ImageFacts.Format}
	}
	log := p.log.With("job", r.JobID, "family", r.Publish.Family)
	if !dryRun && p.cfg.Queue != nil {
		lctx, release, err := p.holdFamily(ctx, r, log)
		if err != nil {
			return out, err
		}
		defer release()
		ctx = lctx
	}
	pol := PolicyFor(r.Publish)
	cctx, cancel := p.call(ctx)
	fam, err := p.glance.family(cctx, r.Publish.Family)
	cancel()
	if err != nil {
		return out, err
	}
	cand := Image{JobID: r.JobID, Release: r.Publish.Release, ReleasedAt: releasedAt(r.Publish),
		VerdictAt: r.FinishedAt.UTC(), Status: statusActive, Visibility: "private", CreatedAt: p.now().UTC()}
	cand.Name = pol.OlderName(cand)
	var mine *Image
	for i := range fam {
		if fam[i].JobID == r.JobID && settled(fam[i]) {
			mine = &fam[i]
		}
	}
	switch {
	case mine != nil:
		out.Status, out.ImageID = StatusAlready, mine.ID
	case position(fam, cand) > pol.Keep:
		out.Status = StatusSuperseded
		out.Reason = fmt.Sprintf("%d newer releases of %s are published and the policy keeps %d besides Latest", position(fam, cand), r.Publish.Family, pol.Keep)
		return out, nil
	case dryRun:
		out.Plan = append(out.Plan, Action{Kind: ActCreate, Name: cand.Name, Visibility: "private", Release: cand.Release})
		fam = append(fam, cand)
	default:
		// Unfinished uploads go before a new one starts, so a crash loop cannot pile them up.
		p.cleanup(ctx, log, fam, &out)
		im, err := p.upload(ctx, log, r, pol, cand.Name)
		if err != nil {
			return out, err
		}
		out.Status, out.ImageID = StatusPublished, im.ID
		out.Plan = append(out.Plan, Action{Kind: ActCreate, ImageID: im.ID, Name: im.Name, Visibility: im.Visibility, Release: im.Release})
		fam = append(fam, im)
	}
	plan := Rotation(fam, pol)
	out.Plan = append(out.Plan, plan...)
	if dryRun {
		out.Status = StatusPlanned
		return out, nil
	}
	p.apply(ctx, log, plan, &out)
	if err := p.record(ctx, r, pol, &out); err != nil {
		return out, err
	}
	return out, nil
}

// holdFamily takes the lease on publishing r's family in this cloud: one
// publisher per family and cloud at a time, across processes and hosts, so the
// service, a second service and a one-shot run never upload or rotate the same
// family in one cloud at once. The context it returns ends when the lease is
// lost; release gives the lease back.
func (p *Publisher) holdFamily(ctx context.Context, r jobs.Result, log *slog.Logger) (_ context.Context, release func(), _ error) {
	lease, err := p.cfg.Queue.AcquireLease(ctx, "publish "+r.Publish.Family+" "+p.cfg.Cloud.Name, p.holder, "job "+r.JobID, leaseTTL,
		func(held queue.LeaseInfo) {
			log.Info("waiting for another publisher of this family", "holder", held.Holder, "doing", held.Purpose)
		})
	if err != nil {
		return ctx, nil, err
	}
	lctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-lease.Lost():
			cancel(errLeaseLost)
		case <-lctx.Done():
		}
	}()
	return lctx, func() {
		cancel(nil)
		// Bounded, also when ctx was cancelled: a release that cannot reach NATS
		// leaves the lease to expire rather than hold the publisher.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.Cloud.Timeout)
		defer rcancel()
		_ = lease.Release(rctx)
	}, nil
}

// cleanup deletes the family's unfinished uploads (queued, saving, importing…): a
// publisher stopped in the middle left them, and only a publisher makes them.
func (p *Publisher) cleanup(ctx context.Context, log *slog.Logger, fam []Image, out *Outcome) {
	for _, im := range fam {
		if settled(im) {
			continue
		}
		cctx, cancel := p.call(ctx)
		err := p.glance.remove(cctx, im.ID)
		cancel()
		if err != nil {
			out.Problems = append(out.Problems, err.Error())
			continue
		}
		log.Info("deleted unfinished upload", "image", im.ID, "status", im.Status)
	}
}

// apply carries out a rotation plan. A step that fails is recorded and the rest go on,
// except that the Latest rename waits for every rename away from the Latest name.
func (p *Publisher) apply(ctx context.Context, log *slog.Logger, plan []Action, out *Outcome) {
	retireFailed := false
	for _, a := range plan {
		var err error
		cctx, cancel := p.call(ctx)
		switch a.Kind {
		case ActCleanup:
			err = p.glance.remove(cctx, a.ImageID)
		case ActRetire:
			err = p.updateChecked(cctx, a)
			retireFailed = retireFailed || err != nil
		case ActLatest:
			if retireFailed {
				err = fmt.Errorf("image %s keeps its name: an older release could not give up the Latest name", a.ImageID)
				break
			}
			err = p.updateChecked(cctx, a)
		case ActDeactivate:
			err = p.glance.deactivate(cctx, a.ImageID)
		case ActDelete:
			var user string
			user, err = p.usage.InUse(cctx, a.ImageID)
			var unknown *UsageUnknownError
			if errors.As(err, &unknown) {
				out.Kept = append(out.Kept, a.ImageID+" (its use cannot be checked: "+unknown.Why+")")
				log.Info("image past the policy kept: its use cannot be checked", "image", a.ImageID, "why", unknown.Why)
				cancel()
				continue
			}
			if err == nil && user != "" {
				out.Kept = append(out.Kept, a.ImageID+" (used by "+user+")")
				log.Info("image past the policy kept in use", "image", a.ImageID, "user", user)
				cancel()
				continue
			}
			if err == nil {
				err = p.glance.remove(cctx, a.ImageID)
			}
		}
		cancel()
		if err != nil {
			log.Warn("publication step failed", "action", a.Kind, "image", a.ImageID, "err", err)
			out.Problems = append(out.Problems, a.Kind+" "+a.ImageID+": "+err.Error())
			continue
		}
		log.Info("publication step done", "action", a.Kind, "image", a.ImageID, "name", a.Name)
	}
}

// updateChecked renames an image and sets its visibility, then reads it back: Glance's
// import task saves the image once more after it turned active, and that save can undo
// an update made in between. The update is repeated until it holds.
func (p *Publisher) updateChecked(ctx context.Context, a Action) error {
	for try := 0; ; try++ {
		if err := p.glance.update(ctx, a.ImageID, change{Name: a.Name, Visibility: a.Visibility, Hidden: a.Hidden}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(p.cfg.PollEvery):
		}
		im, err := p.glance.get(ctx, a.ImageID)
		if err != nil {
			return err
		}
		if im.Name == a.Name && (a.Visibility == "" || im.Visibility == a.Visibility) && (a.Hidden == nil || im.Hidden == *a.Hidden) {
			return nil
		}
		if try == 4 {
			return fmt.Errorf("image %s: the update to %q did not hold (it is %q, %s)", a.ImageID, a.Name, im.Name, im.Visibility)
		}
	}
}

// record writes the family's Latest to queue.BucketPublished.
func (p *Publisher) record(ctx context.Context, r jobs.Result, pol Policy, out *Outcome) error {
	cctx, cancel := p.call(ctx)
	fam, err := p.glance.family(cctx, r.Publish.Family)
	cancel()
	if err != nil {
		return err
	}
	var latest *Image
	for i := range fam {
		if fam[i].Name == pol.Latest && fam[i].Status == statusActive {
			latest = &fam[i]
		}
	}
	if latest == nil {
		out.Problems = append(out.Problems, "family "+r.Publish.Family+" has no image named "+pol.Latest)
		return nil
	}
	out.Latest = latest.ID
	if p.cfg.Queue == nil {
		return nil
	}
	rec := jobs.Published{Family: r.Publish.Family, Name: latest.Name, ImageID: latest.ID, Release: latest.Release,
		JobID: latest.JobID, VerdictAt: latest.VerdictAt, PublishedAt: p.now().UTC(),
		OSHashAlgo: latest.OSHashAlgo, OSHashValue: latest.OSHashValue, SourceHash: latest.SourceHash,
		Cloud: p.cfg.Cloud.Name, Region: p.cfg.Cloud.Region}
	if !latest.ReleasedAt.IsZero() {
		t := latest.ReleasedAt
		rec.ReleasedAt = &t
	}
	prev, ok, err := p.cfg.Queue.PublishedImage(ctx, r.Publish.Family, p.cfg.Cloud.Name)
	if err != nil {
		return err
	}
	if ok && prev.ImageID == latest.ID {
		return nil // unchanged: keep when it became Latest
	}
	if ok {
		rec.Replaced = prev.ImageID
	}
	return p.cfg.Queue.PutPublished(ctx, rec)
}

// errConvertedOnImport says Glance stored an imported image in another format than
// the one it was created with: its import converts (the image_conversion plugin).
type errConvertedOnImport struct{ asked, stored string }

func (e *errConvertedOnImport) Error() string {
	return "Glance converted the import from " + e.asked + " to " + e.stored + " (its image_conversion import plugin)"
}

// sending is one way of getting the vetted image into Glance: which file (the
// published one, or the vendor's qcow2 that Glance converts), created with which
// disk_format, staged and imported or plainly uploaded.
type sending struct {
	src        image.Source
	size       int64
	sha256     string
	sha512     string
	diskFormat string // what the image is created as
	direct     bool   // glance-direct (stage, import) instead of a plain upload
	converting bool   // Glance's import converts diskFormat to the published format
}

// how decides how the result's image is sent to this cloud.
func (p *Publisher) how(ctx context.Context, f *jobs.ImageFacts) sending {
	converts := p.converts.Load().(string)
	if f.Format == jobs.FormatRaw && f.Vendor != nil && f.Vendor.Format == jobs.FormatQCOW2 && converts == ConvertsYes && p.cfg.UploadMethod != UploadPlain {
		return sending{src: image.Source{URL: f.Source, Format: f.Vendor.Format, Checksum: "sha512:" + f.Vendor.SHA512},
			size: f.Vendor.Size, sha256: f.Vendor.SHA256, sha512: f.Vendor.SHA512,
			diskFormat: f.Vendor.Format, direct: true, converting: true}
	}
	s := sending{src: publishedSource(f), size: f.Size, sha256: f.SHA256, sha512: f.OSHashValue, diskFormat: f.Format}
	switch {
	case p.cfg.UploadMethod == UploadImport:
		s.direct = true
	case p.cfg.UploadMethod == UploadPlain:
	case converts == ConvertsYes && f.Format != jobs.FormatRaw:
		// An import would be converted: a plain upload keeps the format.
	default:
		cctx, cancel := p.call(ctx)
		s.direct = slices.Contains(p.glance.importMethods(cctx), "glance-direct")
		cancel()
	}
	return s
}

// publishedSource is where the published file comes from: the vendor's file as
// vetted, or its conversion (made by the worker and kept in the image cache).
func publishedSource(f *jobs.ImageFacts) image.Source {
	if f.Vendor == nil {
		return image.Source{URL: f.Source, Format: f.Format, Checksum: "sha512:" + f.OSHashValue}
	}
	return image.Source{URL: f.Source, Format: f.Vendor.Format, Checksum: "sha512:" + f.Vendor.SHA512, ConvertTo: f.Format}
}

// upload creates the image (private, under its dated name), sends exactly the vetted
// bytes and waits for Glance to make it active with the vetted sha512 and format. On
// any failure the image is deleted again. A cloud that turns out to convert imports
// (ImportConverts auto) is remembered, and the image is sent again the right way.
func (p *Publisher) upload(ctx context.Context, log *slog.Logger, r jobs.Result, pol Policy, name string) (Image, error) {
	for {
		im, err := p.uploadOnce(ctx, log, r, pol, name, p.how(ctx, r.ImageFacts))
		var conv *errConvertedOnImport
		if errors.As(err, &conv) && p.converts.CompareAndSwap(ConvertsAuto, ConvertsYes) {
			log.Info("this cloud converts imported images; publishing again accordingly", "asked", conv.asked, "stored", conv.stored)
			continue
		}
		return im, err
	}
}

func (p *Publisher) uploadOnce(ctx context.Context, log *slog.Logger, r jobs.Result, pol Policy, name string, how sending) (Image, error) {
	f := r.ImageFacts
	base, err := p.cfg.Store.Fetch(ctx, how.src, nil)
	if err != nil {
		return Image{}, fmt.Errorf("vetted image %s: %w", f.Source, err)
	}
	file, err := os.Open(base.Path)
	if err != nil {
		return Image{}, fmt.Errorf("vetted image: %w", err)
	}
	defer file.Close()
	props := properties(r, pol)
	minRAM, _ := strconv.Atoi(props["min_ram"])
	delete(props, "min_ram")
	vis := images.ImageVisibilityPrivate
	cctx, cancel := p.call(ctx)
	im, err := p.glance.create(cctx, images.CreateOpts{
		Name: name, DiskFormat: how.diskFormat, ContainerFormat: "bare", Visibility: &vis,
		MinDisk: int((f.VirtualSize + 1<<30 - 1) >> 30), MinRAM: minRAM,
		Tags: []string{TagImagevet}, Properties: props,
	})
	cancel()
	if err != nil {
		return Image{}, err
	}
	kept := false
	defer func() {
		if kept {
			return
		}
		// Bounded cleanup, also when ctx was cancelled: never leave half an image.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.Cloud.Timeout)
		defer cancel()
		if err := p.glance.remove(dctx, im.ID); err != nil {
			log.Warn("deleting a failed upload", "image", im.ID, "err", err)
		}
	}()
	// The deadline counts the bytes sent and, for a converting import, the raw
	// bytes Glance writes.
	bytes := how.size
	if how.converting {
		bytes += f.Size
	}
	uctx, cancel := context.WithTimeout(ctx, 5*time.Minute+time.Duration(bytes/p.cfg.MinUploadRate)*time.Second)
	defer cancel()
	start := p.now()
	// The bytes are hashed as they are sent (one read of the file, not two): what
	// Glance got must be the vetted file, checked before it is imported or used.
	sent := newHashingReader(file)
	if err := p.glance.upload(uctx, im.ID, sent, how.direct); err != nil {
		return Image{}, err
	}
	if err := sent.verify(base.Path, how.size, how.sha256, how.sha512); err != nil {
		return Image{}, err
	}
	active, err := p.glance.waitActive(uctx, im.ID, p.cfg.PollEvery)
	if err != nil {
		return Image{}, err
	}
	if active.DiskFormat != f.Format {
		if how.direct && !how.converting && active.DiskFormat != how.diskFormat {
			return Image{}, &errConvertedOnImport{asked: how.diskFormat, stored: active.DiskFormat}
		}
		return Image{}, &MismatchError{What: "Glance disk_format of image " + im.ID, Want: f.Format, Got: active.DiskFormat}
	}
	if active.OSHashAlgo != "sha512" || active.OSHashValue != f.OSHashValue {
		what := "Glance " + active.OSHashAlgo + " os_hash_value of image " + im.ID
		if how.converting {
			what += " (Glance's conversion of the vetted " + how.diskFormat + " to " + f.Format + ")"
		}
		return Image{}, &MismatchError{What: what, Want: f.OSHashValue, Got: active.OSHashValue}
	}
	log.Info("image uploaded", "image", im.ID, "bytes", how.size, "format", how.diskFormat, "glance_direct", how.direct,
		"converted_by_glance", how.converting, "took", p.now().Sub(start).Round(time.Millisecond))
	kept = true
	return active, nil
}

// hashingReader hashes a file as it is read; a rewind (gophercloud rewinds the body
// to send it again after a re-authentication) starts the hashes over.
type hashingReader struct {
	f          *os.File
	h256, h512 hash.Hash
	n          int64
}

func newHashingReader(f *os.File) *hashingReader {
	return &hashingReader{f: f, h256: sha256.New(), h512: sha512.New()}
}

func (r *hashingReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.h256.Write(p[:n])
	r.h512.Write(p[:n])
	r.n += int64(n)
	return n, err
}

// Seek supports only the rewind to the start.
func (r *hashingReader) Seek(offset int64, whence int) (int64, error) {
	if offset != 0 || whence != io.SeekStart {
		return 0, errors.New("hashingReader: only a rewind to the start")
	}
	r.h256.Reset()
	r.h512.Reset()
	r.n = 0
	return r.f.Seek(0, io.SeekStart)
}

// verify checks that the whole file was sent and that it is the vetted one.
func (r *hashingReader) verify(path string, size int64, sum256, sum512 string) error {
	if r.n != size {
		return &MismatchError{What: "bytes sent of " + path, Want: fmt.Sprint(size), Got: fmt.Sprint(r.n)}
	}
	if got := hex.EncodeToString(r.h256.Sum(nil)); got != sum256 {
		return &MismatchError{What: "sha256 of " + path, Want: sum256, Got: got}
	}
	if got := hex.EncodeToString(r.h512.Sum(nil)); got != sum512 {
		return &MismatchError{What: "sha512 of " + path, Want: sum512, Got: got}
	}
	return nil
}

// properties are the image's Glance properties: the job's own, the hardware it was
// vetted on, the SCS image-metadata standard's mandatory ones, and imagevet's.
// The job's properties win over derived ones; imagevet's identify the image and
// always win.
func properties(r jobs.Result, pol Policy) map[string]string {
	f := r.ImageFacts
	built := r.FinishedAt.UTC()
	if r.Publish.ReleasedAt != nil {
		built = r.Publish.ReleasedAt.UTC()
	}
	out := map[string]string{
		"image_source":      f.Source,
		"image_description": strings.TrimSpace(pol.Base + " " + r.Publish.Release),
		"image_build_date":  built.Format("2006-01-02"),
		"provided_until":    "none",
		"replace_frequency": "never",
		"uuid_validity":     "none",
	}
	if d, v, ok := distroVersion(r.Publish.Family); ok {
		out["os_distro"], out["os_version"] = d, v
	}
	if rot := r.Publish.Rotation; rot != nil {
		if rot.ReplaceFrequency != "" {
			out["replace_frequency"] = rot.ReplaceFrequency
		}
		if rot.UUIDValidity != "" {
			out["uuid_validity"] = rot.UUIDValidity
		}
	}
	if m := r.VettedWith; m != nil {
		out["hw_firmware_type"], out["hw_machine_type"], out["hw_disk_bus"] = m.Firmware, m.Type, m.DiskBus
		if m.User != "" {
			out["image_original_user"] = m.User
		}
	}
	maps.Copy(out, r.Publish.Properties)
	out[PropFamily] = r.Publish.Family
	out[PropJobID] = r.JobID
	out[PropVerdictAt] = r.FinishedAt.UTC().Format(time.RFC3339)
	out[PropWorker] = r.Worker
	out[PropSHA256] = f.SHA256
	out[PropSourceHash] = f.SourceHash()
	out[PropSourceURL] = f.Source
	if r.Publish.Release != "" {
		out[PropRelease] = r.Publish.Release
	}
	if r.Publish.ReleasedAt != nil {
		out[PropReleasedAt] = r.Publish.ReleasedAt.UTC().Format(time.RFC3339)
	}
	if f.VendorDigest != "" {
		out[PropVendorDigest] = f.VendorDigest
	}
	return out
}

// distroVersion splits a family key such as "debian-12" or "ubuntu-24.04" into
// os_distro and os_version.
func distroVersion(family string) (string, string, bool) {
	i := strings.LastIndexByte(family, '-')
	if i <= 0 || i == len(family)-1 {
		return "", "", false
	}
	v := family[i+1:]
	if v[0] < '0' || v[0] > '9' {
		return "", "", false
	}
	return family[:i], v, true
}
