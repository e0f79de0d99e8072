package worker

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagevet/imagevet/cloudinit"
	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/keyring"
	"github.com/imagevet/imagevet/worker/owner"
	"github.com/imagevet/imagevet/worker/vm"
	"github.com/imagevet/imagevet/worker/vm/fake"
)

// fakeImages is an Images that returns a scripted error or a made-up image, and
// writes empty overlays.
type fakeImages struct {
	err      error
	fetches  int
	srcs     []image.Source
	overlays []string
	mu       sync.Mutex
}

func (f *fakeImages) Fetch(ctx context.Context, src image.Source, progress func(done, total int64)) (*image.Image, error) {
	f.mu.Lock()
	f.fetches++
	f.srcs = append(f.srcs, src)
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	progress(1, 2)
	img := &image.Image{Path: "/nonexistent/base.qcow2", Format: src.Format, Size: 1 << 20, VirtualSize: 1 << 30, SHA256: "ab", SHA512: "cd"}
	if src.ConvertTo != "" && src.ConvertTo != src.Format {
		vendor := image.Facts{Format: img.Format, Size: img.Size, VirtualSize: img.VirtualSize, SHA256: img.SHA256, SHA512: img.SHA512}
		img = &image.Image{Path: "/nonexistent/base." + src.ConvertTo, Format: src.ConvertTo, Size: 1 << 30, VirtualSize: 1 << 30, SHA256: "ef", SHA512: "01", Vendor: &vendor}
	}
	return img, nil
}

func (f *fakeImages) Overlay(ctx context.Context, base *image.Image, path string) error {
	f.mu.Lock()
	f.overlays = append(f.overlays, path)
	f.mu.Unlock()
	return os.WriteFile(path, nil, 0o644)
}

func testJob(id string) jobs.Job {
	return jobs.Job{
		Version:  1,
		ID:       id,
		Image:    jobs.ImageSpec{Source: "tiny.qcow2", Format: "qcow2", Checksum: "sha256:" + strings.Repeat("0", 64)},
		Guest:    jobs.GuestSpec{User: "debian"},
		Machine:  jobs.MachineSpec{MemoryMiB: 256},
		Timeouts: jobs.Timeouts{Boot: jobs.Duration(2 * time.Second), Total: jobs.Duration(30 * time.Second)},
	}
}

func newTestRunner(t *testing.T, imgs Images, hv vm.Hypervisor) (*Runner, Config) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.WorkerID = "unit"
	cfg.StateDir = t.TempDir()
	cfg.Accel = "tcg"
	cfg.TCGFactor = 1
	cfg.Inspect = false // no appliance on fake images; tests set r.inspect
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := NewRunner(cfg, imgs, hv, nil)
	r.load = quietHost // the verdicts must not depend on this machine's load
	t.Cleanup(r.Close)
	return r, cfg
}

// quietHost and busyHost are host loads for Runner.load.
func quietHost() (float64, int, error) { return 0.2, 2, nil }
func busyHost() (float64, int, error)  { return 9.5, 2, nil }

// closingListener accepts TCP connections and closes them at once, as qemu's
// user-mode forward does while nothing listens in the guest.
func closingListener(t *testing.T) string {
	t.Helper()
	return loopbackListener(t, func(c net.Conn) { c.Close() })
}

// loopbackListener listens on 127.0.0.1 until the test ends and hands each
// connection to serve, on a goroutine of its own. It returns the address.
func loopbackListener(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

// onFirstBoot calls do with the first machine hv boots, from another goroutine.
func onFirstBoot(hv *fake.Hypervisor, do func(*fake.Machine)) {
	go func() {
		for len(hv.Machines()) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		do(hv.Machines()[0])
	}()
}

func assertCleanedUp(t *testing.T, cfg Config, hv *fake.Hypervisor) {
	t.Helper()
	if n := hv.Running(); n != 0 {
		t.Errorf("%d machines still running after the job", n)
	}
	for _, m := range hv.Machines() {
		if m.DestroyCalls() == 0 {
			t.Errorf("machine %s never destroyed", m.Name())
		}
	}
	left, _ := filepath.Glob(filepath.Join(cfg.StateDir, "jobs", "*", "*"))
	if len(left) != 0 {
		t.Errorf("job directories left behind: %v", left)
	}
}

func TestRunUnsafeImageFailsBeforeBoot(t *testing.T) {
	hv := &fake.Hypervisor{}
	r, cfg := newTestRunner(t, &fakeImages{err: &image.UnsafeImageError{File: "x.qcow2", Rule: image.ViolationBackingFile, Reason: `qcow2 has a backing file "/etc/passwd"`}}, hv)
	res := r.Run(context.Background(), testJob("unsafe"), 1, nil)
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckImage || !strings.Contains(res.Reason, "backing") {
		t.Fatalf("got %s/%s %q, want fail/image backing", res.Verdict, res.FailedCheck, res.Reason)
	}
	if res.Retryable {
		t.Error("an image fault must not be retryable")
	}
	if len(hv.Boots()) != 0 {
		t.Fatal("a domain was booted for an unsafe image")
	}
	assertCleanedUp(t, cfg, hv)
}

func TestRunClassifiesIngestErrors(t *testing.T) {
	cases := []struct {
		err       error
		verdict   jobs.Verdict
		retryable bool
	}{
		{&image.ChecksumMismatchError{File: "x", Algo: "sha256", Want: "00", Got: "11"}, jobs.VerdictError, false},
		{&image.SourceError{Field: "image.source", Err: os.ErrNotExist}, jobs.VerdictError, false},
		{&image.FetchError{URL: "https://x", Retryable: true, Err: errors.New("connection reset")}, jobs.VerdictError, true},
		{&image.FetchError{URL: "https://x", Retryable: false, Err: errors.New("404")}, jobs.VerdictError, false},
	}
	for _, c := range cases {
		hv := &fake.Hypervisor{}
		r, _ := newTestRunner(t, &fakeImages{err: c.err}, hv)
		res := r.Run(context.Background(), testJob("ingest"), 1, nil)
		if res.Verdict != c.verdict || res.Retryable != c.retryable || res.FailedCheck != jobs.CheckImage {
			t.Errorf("%T: got %s retryable=%v check=%s, want %s retryable=%v", c.err, res.Verdict, res.Retryable, res.FailedCheck, c.verdict, c.retryable)
		}
		if len(hv.Boots()) != 0 {
			t.Errorf("%T: booted anyway", c.err)
		}
	}
}

func TestRunInvalidJobIsNotRetried(t *testing.T) {
	imgs := &fakeImages{}
	r, _ := newTestRunner(t, imgs, &fake.Hypervisor{})
	job := testJob("bad")
	job.Guest.User = ""
	res := r.Run(context.Background(), job, 1, nil)
	if res.Verdict != jobs.VerdictError || res.Retryable || !strings.Contains(res.Reason, "guest.user") {
		t.Fatalf("got %s retryable=%v %q", res.Verdict, res.Retryable, res.Reason)
	}
	if imgs.fetches != 0 {
		t.Fatal("fetched the image of an invalid job")
	}
}

// A kernel panic on the console fails boot within a poll interval of the line, long
// before the SSH deadline, and the machine is destroyed.
func TestRunConsolePanicFailsFast(t *testing.T) {
	hv := &fake.Hypervisor{
		SSHAddr: closingListener(t),
		Console: []fake.Line{
			{After: 0, Text: "Linux version 6.1.0-28-cloud-amd64"},
			{After: 300 * time.Millisecond, Text: "[    1.234] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"},
		},
	}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	job := testJob("panic")
	job.Timeouts.Boot = jobs.Duration(60 * time.Second)
	job.Timeouts.Total = jobs.Duration(2 * time.Minute)
	start := time.Now()
	res := r.Run(context.Background(), job, 1, nil)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("panic verdict took %s; the console should end the job within seconds", took)
	}
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckBoot || !strings.Contains(res.Reason, "kernel panic") {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	if !strings.Contains(res.ConsoleTail, "Kernel panic") {
		t.Errorf("console tail lacks the panic line: %q", res.ConsoleTail)
	}
	// The result carries the kernel milestone, then the fatal line, each timed.
	if len(res.ConsoleMarks) != 2 || res.ConsoleMarks[0].Name != "kernel" || res.ConsoleMarks[1].Kind != jobs.MarkFatal ||
		!strings.Contains(res.ConsoleMarks[1].Line, "Kernel panic") || res.ConsoleMarks[1].At.Before(res.ConsoleMarks[0].At) {
		t.Errorf("console marks: %+v", res.ConsoleMarks)
	}
	assertCleanedUp(t, cfg, hv)
}

func TestRunNoSSHBannerFailsSSH(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t), Console: []fake.Line{{Text: "Linux version 6.1.0"}}}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	var events []jobs.Progress
	var mu sync.Mutex
	res := r.Run(context.Background(), testJob("nossh"), 2, func(p jobs.Progress) {
		mu.Lock()
		events = append(events, p)
		mu.Unlock()
	})
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckSSH || !strings.Contains(strings.ToLower(res.Reason), "banner") {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	if res.Attempt != 2 || res.Worker != "unit" || res.ImageFacts == nil || res.ImageFacts.OSHashValue != "cd" {
		t.Errorf("result lacks attempt/worker/facts: %+v", res)
	}
	if c := res.Check(jobs.CheckBoot); c == nil || c.Status != jobs.StatusPass {
		t.Errorf("boot should pass when the console is clean: %+v", c)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) < 4 || events[0].Stage != "fetch" || events[0].Event != "start" {
		t.Errorf("progress events missing: %+v", events)
	}
	// The console so far went out for the job's page while the guest ran.
	live := slices.IndexFunc(events, func(p jobs.Progress) bool {
		return p.Event == jobs.EventConsole && p.Console != nil && p.Console.Attempt == 2 &&
			strings.Contains(p.Console.Tail, "Linux version 6.1.0") && len(p.Console.Marks) > 0
	})
	if live < 0 {
		t.Errorf("no console event with the console so far and its marks: %+v", events)
	}
	assertCleanedUp(t, cfg, hv)
}

// A guest still booting when its boot deadline comes on a host running far more
// than its CPUs is the host's fault: a retryable error naming the load and how far
// the console got, not a fail of the image. On a quiet host the same guest fails
// ssh, and the reason says the console never showed the end of boot.
func TestRunStarvedAtBootDeadlineIsTheHosts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		load    func() (float64, int, error)
		verdict jobs.Verdict
		check   string
		want    string
	}{
		{"busy host", busyHost, jobs.VerdictError, jobs.CheckBoot, "load average was 9.5 on 2 CPUs"},
		{"quiet host", quietHost, jobs.VerdictFail, jobs.CheckSSH, "the console's last milestone was kernel started"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hv := &fake.Hypervisor{SSHAddr: closingListener(t), Console: []fake.Line{{Text: "Linux version 6.1.0"}}}
			r, cfg := newTestRunner(t, &fakeImages{}, hv)
			r.load = tc.load
			res := r.Run(context.Background(), testJob("slow"), 1, nil)
			if res.Verdict != tc.verdict || res.FailedCheck != tc.check || !strings.Contains(res.Reason, tc.want) {
				t.Fatalf("got %s/%s %q; want %s/%s containing %q", res.Verdict, res.FailedCheck, res.Reason, tc.verdict, tc.check, tc.want)
			}
			if res.Retryable != (tc.verdict == jobs.VerdictError) {
				t.Errorf("retryable = %v", res.Retryable)
			}
			assertCleanedUp(t, cfg, hv)
		})
	}
}

// A guest kernel that finds no working timer panics; under emulation that is the
// host starving it, so the job errors (retryable) instead of failing the image.
func TestRunStarvedTimerPanicIsTheHosts(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t), Console: []fake.Line{
		{Text: "Linux version 6.1.0"},
		{After: 200 * time.Millisecond, Text: "[    0.044000] Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug and send a report.  Then try booting with the 'noapic' option."},
	}}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	res := r.Run(context.Background(), testJob("timer"), 1, nil)
	if res.Verdict != jobs.VerdictError || !res.Retryable || res.FailedCheck != jobs.CheckBoot ||
		!strings.Contains(res.Reason, "no working timer") || !strings.Contains(res.Reason, "load average was 0.2 on 2 CPUs") {
		t.Fatalf("got %s/%s retryable=%v %q", res.Verdict, res.FailedCheck, res.Retryable, res.Reason)
	}
	assertCleanedUp(t, cfg, hv)
}

// A job whose publish.disk_format differs from the vendor's format asks the image
// store for the conversion, and its result describes the converted file (what
// booted, what is published) with the vendor's file beside it.
func TestRunRecordsConvertedAndVendorFile(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t)}
	imgs := &fakeImages{}
	r, cfg := newTestRunner(t, imgs, hv)
	job := testJob("raw")
	job.Publish.DiskFormat = jobs.FormatRaw
	res := r.Run(context.Background(), job, 1, nil)
	if len(imgs.srcs) != 1 || imgs.srcs[0].ConvertTo != jobs.FormatRaw || imgs.srcs[0].Format != "qcow2" {
		t.Fatalf("image store asked for %+v, want the qcow2 converted to raw", imgs.srcs)
	}
	f := res.ImageFacts
	if f == nil || f.Format != jobs.FormatRaw || f.OSHashValue != "01" || f.SHA256 != "ef" || f.Size != 1<<30 ||
		f.Vendor == nil || *f.Vendor != (jobs.VendorFile{Format: "qcow2", Size: 1 << 20, SHA256: "ab", SHA512: "cd"}) || f.SourceHash() != "cd" {
		t.Fatalf("image facts %+v (vendor %+v), want the raw conversion with the qcow2 as vendor", f, f.Vendor)
	}
	if c := res.Check(jobs.CheckImage); c == nil || c.Status != jobs.StatusPass || !strings.Contains(c.Reason, "converted from the vendor's qcow2") || !strings.Contains(c.Detail, "vendor qcow2 sha512:cd") {
		t.Fatalf("image check %+v, want it to name the conversion", c)
	}
	assertCleanedUp(t, cfg, hv)

	plain := testJob("plain")
	plain.Publish.DiskFormat = "qcow2"
	if res := r.Run(context.Background(), plain, 1, nil); res.ImageFacts == nil || res.ImageFacts.Vendor != nil || res.ImageFacts.Format != "qcow2" {
		t.Fatalf("disk_format equal to the vendor's: facts %+v, want the vendor's file, no Vendor", res.ImageFacts)
	}
}

// A machine that stops while SSH is awaited, without the guest printing that it
// powers off (its emulator died, or it was destroyed from outside), is a retryable
// infrastructure error, whichever path notices first (the SSH stage's end or the
// machine watch); with the power-off line it fails boot.
func TestRunGuestStoppedWithoutPowerOffIsInfrastructure(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t)}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	onFirstBoot(hv, func(m *fake.Machine) { m.Crash() })
	res := r.Run(context.Background(), testJob("stopped"), 1, nil)
	if res.Verdict != jobs.VerdictError || !res.Retryable || !strings.Contains(res.Reason, "vanished") {
		t.Fatalf("got %s/%s retryable=%v %q", res.Verdict, res.FailedCheck, res.Retryable, res.Reason)
	}
	assertCleanedUp(t, cfg, hv)

	hv = &fake.Hypervisor{SSHAddr: closingListener(t), Console: []fake.Line{{Text: "[    1.0] reboot: Power down"}}}
	r, cfg = newTestRunner(t, &fakeImages{}, hv)
	onFirstBoot(hv, func(m *fake.Machine) {
		time.Sleep(200 * time.Millisecond)
		m.Crash()
	})
	res = r.Run(context.Background(), testJob("poweredoff"), 1, nil)
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckBoot || !strings.Contains(res.Reason, "powered itself off") {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	assertCleanedUp(t, cfg, hv)
}

func TestRunBootErrorIsRetryableInfrastructure(t *testing.T) {
	hv := &fake.Hypervisor{BootErrs: []error{&vm.Error{Op: "boot", Retryable: true, Err: vm.ErrUnavailable}}}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	res := r.Run(context.Background(), testJob("libvirtdown"), 1, nil)
	if res.Verdict != jobs.VerdictError || !res.Retryable {
		t.Fatalf("got %s retryable=%v %q", res.Verdict, res.Retryable, res.Reason)
	}
	assertCleanedUp(t, cfg, hv)
}

// Cancelling the job (worker shutdown) mid-boot destroys the machine and reports a
// retryable error, and cleanup still runs on its own bounded context.
func TestRunCancelDestroysMachine(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t)}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	ctx, cancel := context.WithCancelCause(context.Background())
	onFirstBoot(hv, func(*fake.Machine) { cancel(errShutdown) })
	job := testJob("cancel")
	job.Timeouts.Boot = jobs.Duration(time.Minute)
	job.Timeouts.Total = jobs.Duration(2 * time.Minute)
	res := r.Run(ctx, job, 1, nil)
	if res.Verdict != jobs.VerdictError || !res.Retryable {
		t.Fatalf("got %s retryable=%v %q", res.Verdict, res.Retryable, res.Reason)
	}
	assertCleanedUp(t, cfg, hv)
}

func TestKeepFailedLeavesMachineAndSaysHowToReachIt(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t)}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	r.cfg.KeepFailed = true
	lock, err := owner.Acquire(cfg.StateDir, cfg.WorkerID)
	if err != nil {
		t.Fatal(err)
	}
	r.cfg.Owner = lock.Path()
	res := r.Run(context.Background(), testJob("keep"), 1, nil)
	if res.Verdict != jobs.VerdictFail || res.Kept == nil {
		t.Fatalf("got %s kept=%v", res.Verdict, res.Kept)
	}
	if !strings.Contains(res.Kept.SSHCommand, "ssh -i ") || !strings.Contains(res.Kept.SSHCommand, "debian@127.0.0.1") {
		t.Errorf("ssh command: %q", res.Kept.SSHCommand)
	}
	if hv.Running() != 1 {
		t.Fatalf("kept machine not running")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(res.Kept.ConsoleLog), "id_ed25519")); err != nil {
		t.Errorf("client key not kept: %v", err)
	}
	// The next process's startup sweep removes what was kept, once its owner is gone.
	if n, err := r.Sweep(context.Background()); err != nil || n != 0 {
		t.Fatalf("sweep while the owner lives: %d, %v", n, err)
	}
	lock.Release()
	next, err := owner.Acquire(cfg.StateDir, cfg.WorkerID)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Release()
	if n, err := r.Sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	assertCleanedUp(t, cfg, hv)
}

// errShutdown stands for the daemon's cancel cause at shutdown.
var errShutdown = errors.New("worker shutting down")

func TestClassify(t *testing.T) {
	cases := []struct {
		err   error
		class Class
		retry bool
	}{
		{&ImageFault{Check: "boot", Reason: "panic"}, ClassImage, false},
		{&jobs.InvalidError{Doc: "job"}, ClassJob, false},
		{&vm.Error{Op: "boot", Retryable: true, Err: vm.ErrTimeout}, ClassInfra, true},
		{&vm.Error{Op: "boot", Err: vm.ErrInvalidSpec}, ClassInfra, false},
		{errShutdown, ClassInfra, true},
		{errors.New("disk full"), ClassInfra, true},
		{&image.SignatureError{File: "SHA256SUMS", Err: keyring.ErrBadSignature}, ClassImage, false},
		{&image.SourceError{Field: image.FieldSumsSig, Err: errors.New("required")}, ClassJob, false},
		{&image.UnsafeImageError{Rule: image.ViolationBackingFile}, ClassImage, false},
		{fmt.Errorf("fetch: %w", &image.ChecksumMismatchError{Algo: "sha256"}), ClassJob, false},
		{&image.FetchError{URL: "u", Retryable: true, Err: errors.New("503")}, ClassInfra, true},
		{&image.FetchError{URL: "u", Err: errors.New("404")}, ClassInfra, false},
		// A wrapper that only carries context defers to what it wraps...
		{&image.FetchError{URL: "u", Retryable: true, Err: &image.SourceError{Field: "image.source", Err: errors.New("outside the roots")}}, ClassJob, false},
		{&vm.Error{Op: "boot", Retryable: true, Err: &JobFault{Err: errors.New("bad spec")}}, ClassJob, false},
		// ...one that knows better decides.
		{&TimeoutError{Stage: "boot", Err: &ImageFault{Check: "boot", Reason: "half a verdict"}}, ClassInfra, true},
		{&JobFault{Err: &image.FetchError{Retryable: true, Err: errors.New("x")}}, ClassJob, false},
		{fmt.Errorf("seed: %w", &cloudinit.FieldError{Field: "hostname", Err: errors.New("bad")}), ClassJob, false},
		{context.Canceled, ClassInfra, true},
		{nil, ClassInfra, false},
	}
	for _, c := range cases {
		class, retry := Classify(c.err)
		if class != c.class || retry != c.retry {
			t.Errorf("Classify(%v) = %s,%v; want %s,%v", c.err, class, retry, c.class, c.retry)
		}
	}
}

func TestKeyPoolHandsOutEachSetOnce(t *testing.T) {
	r, _ := newTestRunner(t, &fakeImages{}, &fake.Hypervisor{})
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		k, err := r.pool.get()
		if err != nil {
			t.Fatal(err)
		}
		fp := k.AuthorizedKeys()[0]
		if seen[fp] {
			t.Fatalf("key set handed out twice: %s", fp)
		}
		seen[fp] = true
	}
}

// sshServer is a minimal SSH server on 127.0.0.1 with its own host key, accepting
// any client key and answering every command with "ok": a guest whose own init
// never applied the seed's host keys.
func sshServer(t *testing.T) string {
	t.Helper()
	addr, _ := sshServerKey(t)
	return addr
}

// sshServerKey is sshServer, also returning its host key.
func sshServerKey(t *testing.T) (string, ssh.PublicKey) {
	t.Helper()
	return sshServerReplying(t, func(string) string { return "ok\n" })
}

// sshServerReplying is sshServerKey answering each command with reply(command).
func sshServerReplying(t *testing.T, reply func(cmd string) string) (string, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(signer)
	addr := loopbackListener(t, func(c net.Conn) {
		_, chans, reqs, err := ssh.NewServerConn(c, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go func() {
				for r := range creqs {
					r.Reply(r.Type == "exec", nil)
					if r.Type == "exec" {
						var exec struct{ Command string }
						ssh.Unmarshal(r.Payload, &exec)
						ch.Write([]byte(reply(exec.Command)))
						ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
						ch.Close()
					}
				}
			}()
		}
	})
	return addr, signer.PublicKey()
}

func TestHostKeyPolicy(t *testing.T) {
	addr := sshServer(t)
	job := testJob("hostkey")
	job.Checks.Skip = []string{jobs.CheckHostname, jobs.CheckMetadata, jobs.CheckCloudInit, jobs.CheckCommands}

	hv := &fake.Hypervisor{SSHAddr: addr}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	res := r.Run(context.Background(), job, 1, nil)
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckSSH || !strings.Contains(res.Reason, "host_key") {
		t.Fatalf("pinned: got %s/%s %q; want an ssh failure pointing at guest.host_key", res.Verdict, res.FailedCheck, res.Reason)
	}
	assertCleanedUp(t, cfg, hv)

	job.Guest.HostKey = jobs.HostKeyAny
	hv = &fake.Hypervisor{SSHAddr: addr}
	r, cfg = newTestRunner(t, &fakeImages{}, hv)
	res = r.Run(context.Background(), job, 1, nil)
	if res.Verdict != jobs.VerdictPass {
		t.Fatalf("any: got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	if c := res.Check(jobs.CheckSSH); c == nil || !strings.Contains(c.Reason, "SHA256:") {
		t.Errorf("the accepted host key's fingerprint is not recorded: %+v", c)
	}
	assertCleanedUp(t, cfg, hv)
}

// A worker shutting down while the in-guest checks run must not let the job pass
// with checks left unrun: it ends in a retryable error.
func TestRunShutdownDuringChecksIsNotAPass(t *testing.T) {
	addr := sshServer(t)
	job := testJob("shutdown-mid-checks")
	job.Guest.HostKey = jobs.HostKeyAny
	job.Checks.Skip = []string{jobs.CheckMetadata, jobs.CheckCloudInit}
	hv := &fake.Hypervisor{SSHAddr: addr}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	ctx, cancel := context.WithCancelCause(context.Background())
	res := r.Run(ctx, job, 1, func(p jobs.Progress) {
		if p.Stage == jobs.CheckSSH && p.Event == "pass" {
			cancel(errShutdown)
		}
	})
	if res.Verdict != jobs.VerdictError || !res.Retryable {
		t.Fatalf("got %s retryable=%v %s %q; want a retryable error", res.Verdict, res.Retryable, res.FailedCheck, res.Reason)
	}
	assertCleanedUp(t, cfg, hv)
}

func TestInstanceIDFitsCloudInit(t *testing.T) {
	for _, id := range []string{"x", strings.Repeat("a", 128)} {
		j := &jobRun{job: jobs.Job{ID: id}, rec: &recorder{res: jobs.Result{Attempt: 12}}}
		got := j.instanceID()
		if err := cloudinit.ValidateInstanceID(got); err != nil {
			t.Errorf("instance id %q for job %q: %v", got, id, err)
		}
	}
}

// A fatal console line while the job's commands run cuts them short: the commands
// check is still listed, as not run with the console's reason, and so is every
// check of the job that the failure kept from running; boot fails.
func TestFatalLineDuringCommandsListsThemNotRun(t *testing.T) {
	var hv *fake.Hypervisor
	addr, key := sshServerReplying(t, func(cmd string) string {
		if strings.Contains(cmd, "slow-job-command") {
			f, err := os.OpenFile(hv.Machines()[0].ConsoleLog(), os.O_APPEND|os.O_WRONLY, 0)
			if err == nil {
				f.WriteString("[   42.0] Kernel panic - not syncing: Fatal exception\n")
				f.Close()
			}
			time.Sleep(30 * time.Second)
		}
		return "ok\n"
	})
	hv = &fake.Hypervisor{SSHAddr: addr, Console: keysBlock(key)}
	job := testJob("fatal-commands")
	job.Checks.Skip = []string{jobs.CheckCloudInit, jobs.CheckHostname}
	job.Commands = []jobs.Command{{Run: "echo ok"}, {Run: "slow-job-command"}}
	job.Timeouts.Boot = jobs.Duration(20 * time.Second)
	job.Timeouts.Command = jobs.Duration(30 * time.Second)
	job.Timeouts.Total = jobs.Duration(2 * time.Minute)
	res, took := runFake(t, hv, job)
	if took > 20*time.Second {
		t.Errorf("took %s: the fatal line should end the job at once, not wait for the command", took)
	}
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckBoot || !strings.Contains(res.Reason, "kernel panic") {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	c := res.Check(jobs.CheckCommands)
	if c == nil || c.Status != jobs.StatusSkip || !strings.Contains(c.Reason, "not run: stopped by a fatal console line (kernel panic)") {
		t.Errorf("commands = %+v, want listed as not run with the console's reason", c)
	}
	var names []string
	for _, c := range res.Checks {
		names = append(names, c.Name)
	}
	for _, want := range job.RunsChecks() {
		if res.Check(want) == nil {
			t.Errorf("check %s missing from the result (%v)", want, names)
		}
	}
	if c := res.Check(jobs.CheckCloudInit); c == nil || c.Reason != "skipped by the job" {
		t.Errorf("cloud-init = %+v", c)
	}
	if c := res.Check(jobs.CheckMetadata); c == nil || c.Status == jobs.StatusSkip {
		t.Errorf("metadata = %+v, want judged: it ran before the commands", c)
	}
}

// A job that stops before its guest checks (here: no SSH) lists every check it has:
// those it never reached as not run, naming the check that failed.
func TestEarlyFailureListsEveryCheck(t *testing.T) {
	hv := &fake.Hypervisor{SSHAddr: closingListener(t), Console: []fake.Line{
		{Text: "Linux version 6.1.0"}, {After: 200 * time.Millisecond, Text: "vet-nossh login: "}}}
	job := loginJob("nossh-all")
	job.Checks.Skip = []string{jobs.CheckHostname}
	job.Commands = []jobs.Command{{Run: "true"}}
	res, _ := runFake(t, hv, job)
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckSSH {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	want := map[string]string{
		jobs.CheckImage: "", jobs.CheckBoot: "", jobs.CheckSSH: "",
		jobs.CheckHostname: "skipped by the job", jobs.CheckMetadata: "not run: ssh failed",
		jobs.CheckCloudInit: "not run: ssh failed", jobs.CheckCommands: "not run: ssh failed",
		jobs.CheckIdentity: "the inspection is off on this worker (--inspect=false)",
		jobs.CheckHygiene:  "the inspection is off on this worker (--inspect=false)",
	}
	if len(res.Checks) != len(want) {
		t.Errorf("checks %+v, want one each of %v", res.Checks, want)
	}
	for name, reason := range want {
		c := res.Check(name)
		switch {
		case c == nil:
			t.Errorf("check %s missing", name)
		case reason != "" && (c.Status != jobs.StatusSkip || c.Reason != reason):
			t.Errorf("check %s = %s %q, want skip %q", name, c.Status, c.Reason, reason)
		}
	}
	if c := res.Check(jobs.CheckIgnition); c != nil {
		t.Errorf("a cloud-init job lists the ignition check: %+v", c)
	}
}
