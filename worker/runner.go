package worker

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagevet/imagevet/cloudinit"
	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/inspect"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/guest"
	"github.com/imagevet/imagevet/worker/guest/metadata"
	"github.com/imagevet/imagevet/worker/guest/sshprobe"
	"github.com/imagevet/imagevet/worker/owner"
	"github.com/imagevet/imagevet/worker/vm"
)

// Images fetches, verifies and caches base images and makes per-job overlays.
type Images interface {
	Fetch(ctx context.Context, src image.Source, progress func(done, total int64)) (*image.Image, error)
	Overlay(ctx context.Context, base *image.Image, path string) error
}

// Runner vets jobs on this host. It is safe for concurrent use: each Run owns its
// own machine, files and metadata server.
type Runner struct {
	cfg    Config
	images Images
	hv     vm.Hypervisor
	log    *slog.Logger
	now    func() time.Time
	pool   *keyPool
	// inspect looks inside the base beside the boot; nil when the worker's
	// inspection is off.
	inspect Inspector
	// load reads the host's load average and CPU count (hostLoad; tests set it).
	load func() (float64, int, error)
}

// NewRunner returns a runner; cfg must have passed Validate. Close releases it.
func NewRunner(cfg Config, images Images, hv vm.Hypervisor, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{cfg: cfg, images: images, hv: hv, log: log, now: time.Now, pool: newKeyPool(2, cloudinit.NewKeys), load: hostLoad}
	if cfg.Inspect {
		r.inspect = inspect.Inspect
	}
	return r
}

// Close stops the runner's background work. Jobs still running are not affected.
func (r *Runner) Close() { r.pool.close() }

// Sweep destroys the machines and job directories that imagevet processes sharing
// this state directory left behind (a crash, a kill -9): those whose owner lock (see
// worker/owner) no live process holds. Machines of live processes (a worker beside
// `imagevet run`, two workers on one host) are never touched. Run it at start,
// before taking jobs.
func (r *Runner) Sweep(ctx context.Context) (int, error) {
	prefix := vm.Prefix(r.cfg.DomainPrefix)
	if prefix == "" {
		prefix = vm.WorkerPrefix("", r.cfg.WorkerID)
	}
	orphaned := func(o string) bool { return owner.Orphaned(r.cfg.StateDir, o) }
	n, err := r.hv.SweepOrphans(ctx, prefix, orphaned)
	if err != nil {
		return n, err
	}
	dirs, _ := filepath.Glob(filepath.Join(r.cfg.StateDir, "jobs", "*"))
	for _, d := range dirs {
		if !orphaned(owner.Path(r.cfg.StateDir, filepath.Base(d))) {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			r.log.Warn("removing orphaned job directory", "dir", d, "err", err)
		}
	}
	owner.Prune(r.cfg.StateDir)
	return n, nil
}

// Run vets one job and always returns a result; it never panics out. Cancelling ctx
// (shutdown) ends the job with a retryable error after destroying its machine.
func (r *Runner) Run(ctx context.Context, job jobs.Job, attempt int, progress func(jobs.Progress)) (res jobs.Result) {
	job, overMax := job.WithinMax(r.cfg.MaxTimeouts)
	job = job.WithDefaults()
	rec := newRecorder(job, attempt, r.cfg.WorkerID, progress, r.now)
	log := r.log.With("job", job.ID, "attempt", attempt, "image", job.Publish.Name)
	j := &jobRun{Runner: r, job: job, rec: rec, log: log}
	defer func() {
		if p := recover(); p != nil {
			log.Error("job panicked", "panic", p, "stack", string(debug.Stack()))
			rec.stop("worker", fmt.Errorf("internal error: %v", p))
		}
		j.cleanup(ctx)
		res = rec.finish()
		res.ConsoleTail, res.ConsoleLog, res.Accel, res.Machine = j.consoleTail, j.consoleLog, j.accel, j.machineName
		res.ConsoleMarks = j.consoleMarks
		log.Info("job finished", "verdict", res.Verdict, "failed_check", res.FailedCheck, "reason", res.Reason,
			"duration", res.FinishedAt.Sub(res.StartedAt).Round(time.Millisecond))
	}()
	if err := cmp.Or(job.Validate(), overMax); err != nil {
		rec.stop("job", err)
		return
	}
	j.run(ctx)
	return
}

// jobRun is the state of one job while it runs: everything cleanup must release.
type jobRun struct {
	*Runner
	job jobs.Job
	rec *recorder
	log *slog.Logger

	dir         string // per-job directory (overlay, seed, console log, nvram)
	machine     vm.Machine
	machineName string
	base        *image.Image // held in the cache until cleanup
	meta        *metadata.Server
	con         *console.Console
	ssh         *sshprobe.Client
	hostKey     ssh.PublicKey // the host key the booted server presented, once SSH answered
	keys        *cloudinit.Keys
	ignition    guest.IgnitionWant // what the seed's Ignition config asks for (Ignition jobs)
	accel       string
	consoleTail string
	consoleLog  string
	// consoleMarks are the milestones and the fatal line, read once the watch ended.
	consoleMarks []jobs.ConsoleMark
}

// run is the lifecycle, top to bottom. Each stage records its timing; a stage that
// cannot go on records why and returns.
func (j *jobRun) run(parent context.Context) {
	job := j.job
	accel, err := j.hv.Accel(parent, j.cfg.Accel)
	if err != nil {
		j.rec.stop("boot", err)
		return
	}
	j.accel = accel
	scale := func(d jobs.Duration) time.Duration {
		if accel == "tcg" {
			return time.Duration(float64(d) * j.cfg.TCGFactor)
		}
		return d.D()
	}
	// The total timeout's cause is no verdict: the stage running when it ends
	// decides what it means (see jobTimedOut).
	ctx, cancel := context.WithTimeoutCause(parent, scale(job.Timeouts.Total),
		&TimeoutError{Stage: "job", Limit: scale(job.Timeouts.Total), Total: true})
	defer cancel()

	// Fetch, verify and inspect the image before anything boots it.
	base, ok := j.fetch(ctx)
	if !ok {
		return
	}

	// Prepare the job's files: overlay over the cached base, keys, seed, metadata.
	spec, ok := j.prepare(ctx, base)
	if !ok {
		return
	}

	// Boot, with the console watched from before the first byte. The offline
	// inspection of the base runs beside the boot; it is joined when run
	// returns, before the verdict.
	defer j.joinInspection(j.startInspection(ctx, base, scale))
	guestCtx, stopGuest := context.WithCancelCause(ctx)
	defer stopGuest(nil)
	if !j.boot(ctx, guestCtx, stopGuest, spec) {
		return
	}

	// SSH: the first sign of life, within the (scaled) boot timeout, or sooner
	// when the console proves it will not come. Cleanup closes the client.
	wait := j.awaitSSH(guestCtx, scale)
	j.ssh = wait.client

	// The boot verdict, from the console, the machine and the wait; then the ssh
	// check, which a failed boot leaves unjudged.
	booted := j.judgeBoot(guestCtx, wait)
	client := j.login(guestCtx, wait, booted)
	if client == nil {
		return
	}

	// In-guest checks, each under its own deadline and the console watch.
	j.runGuestChecks(guestCtx, client, scale)

	// A fatal console line after SSH answered (a panic mid-check) still fails boot.
	if m, ok := j.con.Fatal(); ok {
		j.rec.replace(jobs.CheckResult{Name: jobs.CheckBoot, Status: jobs.StatusFail, Reason: j.withProvisioningHint(m.String())})
	}
}

// boot starts the machine with its console watched from before the first byte: a
// fatal line stops the guest's stages (stopGuest) within a poll interval, whatever
// stage runs then, as does the machine stopping (watchMachine). It returns false
// when the machine did not start.
func (j *jobRun) boot(ctx, guestCtx context.Context, stopGuest context.CancelCauseFunc, spec vm.Spec) bool {
	j.con = console.Watch(context.WithoutCancel(ctx), spec.ConsoleLog, console.DefaultRules())
	go j.shareConsole(ctx)
	go func() {
		select {
		case m := <-j.con.Failed():
			// The verdict is the console's Fatal match, read where each stage ends;
			// the cancel only stops what runs.
			j.rec.info("boot", "fatal console line: "+m.Line)
			stopGuest(errConsoleFatal)
		case <-guestCtx.Done():
		}
	}()
	done := j.rec.stage("boot")
	bootCtx, cancelBoot := context.WithTimeout(ctx, 2*time.Minute)
	machine, err := j.hv.Boot(bootCtx, spec)
	cancelBoot()
	done(err)
	if err != nil {
		j.rec.check(jobs.CheckResult{Name: jobs.CheckBoot, Status: jobs.StatusError, Reason: describe(err)})
		j.rec.stop(jobs.CheckBoot, err)
		return false
	}
	j.machine = machine
	j.log = j.log.With("domain", machine.Name())
	go j.watchMachine(guestCtx, machine, stopGuest)
	return true
}

// fetch ingests the image: download or copy, hash, verify, inspect, cache; and when
// publish.disk_format asks for another format, converts it (the conversion is what
// boots and what is published).
func (j *jobRun) fetch(ctx context.Context) (*image.Image, bool) {
	done := j.rec.stage("fetch")
	start := j.now()
	ctx, cancel := context.WithTimeout(ctx, j.job.Timeouts.Fetch.D())
	defer cancel()
	src := image.Source{URL: j.job.Image.Source, Format: j.job.Image.Format, Checksum: j.job.Image.Checksum,
		SumsURL: j.job.Image.SumsURL, SumsName: j.job.Image.SumsName, SumsSignature: j.job.Image.SumsSignature,
		ConvertTo: j.job.Publish.DiskFormat}
	var lastReport time.Time
	base, err := j.images.Fetch(ctx, src, func(n, total int64) {
		if now := j.now(); now.Sub(lastReport) >= 2*time.Second {
			lastReport = now
			j.rec.info("fetch", progressLine(n, total))
		}
	})
	if err != nil && ctx.Err() != nil {
		// A slow or stalled download is never the image's fault.
		if total, ok := jobTimedOut(ctx); ok {
			err = &TimeoutError{Stage: "fetch", Limit: total.Limit, Total: true, Err: err}
		} else if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = &TimeoutError{Stage: "fetch", Limit: j.job.Timeouts.Fetch.D(), Err: err}
		}
	}
	done(err)
	j.base = base
	if err != nil {
		class, _ := Classify(err)
		status := jobs.StatusError
		if class == ClassImage {
			status = jobs.StatusFail
		}
		j.rec.check(jobs.CheckResult{Name: jobs.CheckImage, Status: status, Reason: describe(err), Duration: jobs.Duration(j.now().Sub(start))})
		if class != ClassImage {
			j.rec.stop(jobs.CheckImage, err)
		}
		return nil, false
	}
	facts := &jobs.ImageFacts{Size: base.Size, VirtualSize: base.VirtualSize, Format: base.Format,
		SHA256: base.SHA256, OSHashAlgo: "sha512", OSHashValue: base.SHA512,
		Source: j.job.Image.Source, VendorDigest: j.job.Image.Checksum}
	hit := "downloaded"
	if base.Cached {
		hit = "cached"
	}
	detail := "sha256:" + base.SHA256 + "\nsha512:" + base.SHA512
	if v := base.Vendor; v != nil {
		// What boots (and is published) is the conversion; the vendor's file is recorded beside it.
		facts.Vendor = &jobs.VendorFile{Format: v.Format, Size: v.Size, SHA256: v.SHA256, SHA512: v.SHA512}
		hit = fmt.Sprintf("converted from the vendor's %s %s", v.Format, jobs.HumanBytes(v.Size))
		if base.Cached {
			hit = "cached, " + hit
		}
		detail += "\nvendor " + v.Format + " sha256:" + v.SHA256 + "\nvendor " + v.Format + " sha512:" + v.SHA512
	}
	reason := fmt.Sprintf("%s %s, %s virtual, %s", base.Format, jobs.HumanBytes(base.Size), jobs.HumanBytes(base.VirtualSize), hit)
	j.rec.facts(facts)
	j.rec.check(jobs.CheckResult{Name: jobs.CheckImage, Status: jobs.StatusPass,
		Reason: reason, Detail: detail, Duration: jobs.Duration(j.now().Sub(start))})
	return base, true
}

// prepare writes everything the machine needs and starts the metadata server.
func (j *jobRun) prepare(ctx context.Context, base *image.Image) (vm.Spec, bool) {
	done := j.rec.stage("prepare")
	spec, err := j.prepareSpec(ctx, base)
	done(err)
	if err != nil {
		j.rec.stop("prepare", err)
		return vm.Spec{}, false
	}
	return spec, true
}

func (j *jobRun) prepareSpec(ctx context.Context, base *image.Image) (vm.Spec, error) {
	if err := j.makeDir(); err != nil {
		return vm.Spec{}, err
	}
	seed, err := j.seed()
	if err != nil {
		return vm.Spec{}, err
	}
	seedPath, userData, err := j.writeSeed(seed)
	if err != nil {
		return vm.Spec{}, err
	}
	overlay := filepath.Join(j.dir, "disk.qcow2")
	if err := j.images.Overlay(ctx, base, overlay); err != nil {
		return vm.Spec{}, err
	}
	if err := os.WriteFile(filepath.Join(j.dir, "id_ed25519"), j.keys.ClientKeyPEM(), 0o600); err != nil {
		return vm.Spec{}, err
	}
	j.meta, err = metadata.Start(metadata.Config{Seed: seed, UserData: userData, Logger: j.log})
	if err != nil {
		return vm.Spec{}, err
	}
	spec := j.domainSpec(seed, overlay, seedPath)
	j.machineName = spec.Name
	return spec, nil
}

// makeDir makes the job's directory, which cleanup removes.
func (j *jobRun) makeDir() error {
	jobsDir := j.jobsDir()
	if err := os.MkdirAll(jobsDir, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(jobsDir, j.job.ID+"-")
	if err != nil {
		return err
	}
	j.dir = dir
	// libvirt's qemu runs as its own user and must reach the files in here.
	return os.Chmod(dir, 0o755)
}

// seed is the job's seed with keys from the pool: a seed the job's values make
// invalid is the job's fault.
func (j *jobRun) seed() (cloudinit.Spec, error) {
	keys, err := j.pool.get()
	if err != nil {
		return cloudinit.Spec{}, err
	}
	j.keys = keys
	job := j.job
	seed := cloudinit.Spec{
		Datasource:     cloudinit.Datasource(job.Guest.Datasource),
		Provisioning:   cloudinit.Provisioning(job.Guest.Provisioning),
		User:           job.Guest.User,
		InstanceID:     j.instanceID(),
		Hostname:       job.Guest.Hostname,
		Keys:           keys,
		CloudConfig:    []byte(job.CloudConfig),
		IgnitionConfig: []byte(job.IgnitionConfig),
	}
	if err := seed.Validate(); err != nil {
		return cloudinit.Spec{}, &JobFault{Err: err}
	}
	return seed, nil
}

// writeSeed writes the seed's ISO into the job's directory when it has one, and
// returns its path and the user data the metadata service serves. Ignition reads
// user_data from the config drive or the metadata service, racing them: both must
// serve the same config. cloud-init jobs keep user data off the metadata service,
// as their seed alone carries it.
func (j *jobRun) writeSeed(seed cloudinit.Spec) (seedPath string, userData []byte, err error) {
	if seed.HasSeed() {
		seedPath = filepath.Join(j.dir, "seed.iso")
		if err := writeFile(seedPath, seed.WriteISO); err != nil {
			return "", nil, err
		}
	}
	if j.job.Guest.Provisioning != jobs.ProvisioningIgnition {
		return seedPath, nil, nil
	}
	cfg, err := seed.Ignition()
	if err != nil {
		return "", nil, &JobFault{Err: err}
	}
	j.ignition.Users, j.ignition.Paths = cfg.Expected()
	if userData, err = seed.UserData(); err != nil {
		return "", nil, &JobFault{Err: err}
	}
	return seedPath, userData, nil
}

// domainSpec is the machine to boot: the job's machine settings over the overlay,
// with the seed, the console log and the metadata service.
func (j *jobRun) domainSpec(seed cloudinit.Spec, overlay, seedPath string) vm.Spec {
	job := j.job
	spec := vm.Spec{
		Name:         vm.DomainName(j.cfg.DomainPrefix, j.cfg.WorkerID, job.ID),
		Worker:       j.cfg.WorkerID,
		Job:          job.ID,
		Owner:        j.cfg.Owner,
		Disk:         overlay,
		Seed:         seedPath,
		SeedBus:      "cdrom",
		Firmware:     job.Machine.Firmware,
		Machine:      job.Machine.Type,
		Accel:        j.accel,
		VCPUs:        job.Machine.VCPUs,
		MemoryMiB:    job.Machine.MemoryMiB,
		MAC:          seed.MACAddress(),
		ConsoleLog:   filepath.Join(j.dir, "console.log"),
		MetadataAddr: j.meta.StreamAddr(),
	}
	if job.Machine.Firmware == jobs.FirmwareUEFI {
		spec.NVRAM = filepath.Join(j.dir, "nvram.fd")
	}
	return spec
}

// provisioningHint names a mismatch between the job's guest.provisioning and what
// the console shows the image provisioning itself with, or returns "".
func (j *jobRun) provisioningHint() string {
	if j.con == nil {
		return ""
	}
	_, ignition := j.con.Milestone(console.MilestoneIgnitionStart)
	_, cloudInit := j.con.Milestone(console.MilestoneCloudInitStart)
	switch wantIgnition := j.job.Guest.Provisioning == jobs.ProvisioningIgnition; {
	case wantIgnition && cloudInit && !ignition:
		return "the console shows cloud-init, not Ignition: this image is not provisioned by Ignition as the job's guest.provisioning says"
	case !wantIgnition && ignition && !cloudInit:
		return "the console shows Ignition, not cloud-init: this image wants an Ignition config (guest.provisioning \"ignition\"), not the job's cloud-init user data"
	}
	return ""
}

// withProvisioningHint appends provisioningHint to a failure reason.
func (j *jobRun) withProvisioningHint(reason string) string {
	if hint := j.provisioningHint(); hint != "" {
		return reason + " (" + hint + ")"
	}
	return reason
}

// instanceID is this attempt's instance id: fresh per attempt, so cloud-init treats
// every attempt as a first boot, and within cloud-init's 64 characters.
func (j *jobRun) instanceID() string {
	id := fmt.Sprintf("i-%s-%d", j.job.ID, j.rec.res.Attempt)
	if len(id) <= 64 {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return fmt.Sprintf("i-%s-%x-%d", j.job.ID[:40], sum[:4], j.rec.res.Attempt)
}

// jobTimedOut reports whether ctx ended because the job's total timeout ran out.
func jobTimedOut(ctx context.Context) (*TimeoutError, bool) {
	var t *TimeoutError
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &t) && t.Stage == "job" {
		return t, true
	}
	return nil, false
}

// interrupted records why the guest checks stopped before the named one could
// judge: the check is listed as not run with the cause. A fatal console line fails
// boot (recorded after the checks), anything else (shutdown, the job's total timeout
// during fetch) stops the job with that cause, so a job never passes with checks
// left unrun.
func (j *jobRun) interrupted(ctx context.Context, check string) {
	cause := context.Cause(ctx)
	why := describe(cause)
	if m, ok := j.con.Fatal(); ok && errors.Is(cause, errConsoleFatal) {
		why = "stopped by a fatal console line (" + m.Reason + ")"
	}
	j.rec.check(jobs.CheckResult{Name: check, Status: jobs.StatusSkip, Reason: jobs.NotRunPrefix + why})
	if !errors.Is(cause, errConsoleFatal) {
		j.rec.stop(check, cause)
	}
}

// cleanup releases everything the job made, on a context that outlives the job's
// cancellation but is itself bounded. A failed job's machine is kept when asked.
func (j *jobRun) cleanup(parent context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), j.cfg.CleanupTimeout)
	defer cancel()
	done := j.rec.stage("cleanup")
	var errs []error
	if j.ssh != nil {
		j.ssh.Close()
	}
	keep := j.cfg.KeepFailed && j.machine != nil && j.rec.failed()
	if j.machine != nil && !keep {
		if err := j.machine.Destroy(ctx); err != nil {
			errs = append(errs, fmt.Errorf("destroy %s: %w", j.machine.Name(), err))
		}
	}
	if j.con != nil {
		j.con.Close()
		j.consoleTail = j.con.Tail(j.cfg.ConsoleTailLines)
		j.consoleMarks = consoleMarks(j.con)
	}
	if j.meta != nil && !keep {
		if err := j.meta.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if j.dir != "" && !keep {
		j.consoleLog = j.keepConsoleLog()
		if err := os.RemoveAll(j.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if !keep {
		// The overlay is gone: the cache may evict the base again.
		j.base.Release()
	}
	if keep {
		j.consoleLog = filepath.Join(j.dir, "console.log")
		j.rec.kept(&jobs.KeptMachine{
			Domain:     j.machine.Name(),
			ConsoleLog: j.consoleLog,
			SSHCommand: sshCommand(j.machine.SSHAddr(), j.job.Guest.User, filepath.Join(j.dir, "id_ed25519")),
		})
	}
	err := errors.Join(errs...)
	if err != nil {
		// Cleanup problems never hide the image's verdict; they are logged and
		// recorded as a stage error.
		j.log.Error("cleanup failed", "err", err)
	}
	done(err)
}

// keepConsoleLog moves the console log out of the job directory into the worker's
// log directory, pruning old logs, and returns its new path ("" if none).
func (j *jobRun) keepConsoleLog() string {
	src := filepath.Join(j.dir, "console.log")
	if _, err := os.Stat(src); err != nil {
		return ""
	}
	logs := filepath.Join(j.cfg.StateDir, "consoles")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return ""
	}
	dst := filepath.Join(logs, fmt.Sprintf("%s-%d.log", j.job.ID, j.rec.res.Attempt))
	if err := os.Rename(src, dst); err != nil {
		return ""
	}
	pruneLogs(logs, 500)
	return dst
}

// sshReason is the one-line reason an SSH failure is reported with.
func sshReason(r sshprobe.ProbeReport, err error, provisioning string) string {
	reason := r.Reason
	if reason == "" {
		reason = err.Error()
	}
	switch {
	case errors.Is(err, sshprobe.ErrHostKeyMismatch) && provisioning == jobs.ProvisioningIgnition:
		reason = "an Ignition seed carries no host keys and the guest did not print its own on its console (if it prints none, set guest.host_key \"any\"): " + reason
	case errors.Is(err, sshprobe.ErrHostKeyMismatch):
		reason = "the guest did not take the seed's ssh_keys and did not print its own host keys on its console (if it prints none, set guest.host_key \"any\"): " + reason
	}
	return reason
}

// probeDetail lists the probe's attempts and stage timings.
func probeDetail(r sshprobe.ProbeReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "attempts: %d, elapsed %s", r.Attempts, r.Elapsed.Round(time.Millisecond))
	if r.ServerVersion != "" {
		fmt.Fprintf(&b, ", server %s", r.ServerVersion)
	}
	if r.HostKeyType != "" {
		fmt.Fprintf(&b, ", host key %s", r.HostKeyType)
	}
	for _, st := range r.Stages {
		fmt.Fprintf(&b, "\n%s: %s", st.Stage, st.Duration.Round(time.Millisecond))
	}
	if r.FailedStage != "" {
		fmt.Fprintf(&b, "\nfailed at %s (furthest stage reached: %s)", r.FailedStage, r.Furthest)
	}
	return b.String()
}

func sshCommand(addr, user, key string) string {
	host, port, _ := strings.Cut(addr, ":")
	return fmt.Sprintf("ssh -i %s -p %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null %s@%s", key, port, user, host)
}

// jobsDir holds this process's per-job directories, named after its owner lock;
// other processes sharing the state directory have their own.
func (r *Runner) jobsDir() string {
	id := r.cfg.WorkerID
	if r.cfg.Owner != "" {
		id = strings.TrimSuffix(filepath.Base(r.cfg.Owner), ".lock")
	}
	return filepath.Join(r.cfg.StateDir, "jobs", id)
}
