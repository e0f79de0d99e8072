package libvirt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/imagevet/imagevet/cloudinit"
	"github.com/imagevet/imagevet/worker/guest/metadata"
	"github.com/imagevet/imagevet/worker/vm"
)

const testPrefix = "imagevet-test"

// testKeys makes a job's key set, for a seed.
func testKeys(t testing.TB) *cloudinit.Keys {
	t.Helper()
	k, err := cloudinit.NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newHypervisor connects to the real libvirtd, or skips when there is none
// (fails instead under CI=true) and in -short mode (`make unit`).
func newHypervisor(t testing.TB, cfg Config) *Hypervisor {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: this test drives the real libvirtd and boots machines")
	}
	sock := cfg.Socket
	if sock == "" {
		sock = defaultSocket
	}
	if c, err := net.DialTimeout("unix", sock, time.Second); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("libvirtd not reachable at %s: %v", sock, err)
		}
		t.Skipf("libvirtd not reachable at %s: %v", sock, err)
	} else {
		c.Close()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func need(t testing.TB, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed", c)
			}
			t.Skipf("%s not installed", c)
		}
	}
}

// qemuDir returns a temp dir the qemu user (libvirt-qemu) can traverse:
// libvirt relabels the files it is given, never the directories above them.
func qemuDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// emptyDisk makes a blank qcow2: no OS, so SeaBIOS reports a non-bootable
// disk and falls through to the NIC's iPXE ROM.
func emptyDisk(t testing.TB, dir string) string {
	t.Helper()
	need(t, "qemu-img")
	p := filepath.Join(dir, "disk.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", p, "64M")
	return p
}

func testSpec(t testing.TB, dir, job string) vm.Spec {
	name := vm.DomainName(testPrefix, "it", job)
	return vm.Spec{
		Name: name, Worker: "it", Job: job,
		Disk:       emptyDisk(t, dir),
		Firmware:   vm.FirmwareBIOS,
		Accel:      vm.AccelTCG,
		VCPUs:      1,
		MemoryMiB:  256,
		MAC:        "52:54:00:12:34:56",
		ConsoleLog: filepath.Join(dir, "console.log"),
	}
}

// destroyOnCleanup destroys the domain named name however the test ends.
func destroyOnCleanup(t testing.TB, h *Hypervisor, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := h.Sweep(ctx, name); err != nil {
			t.Errorf("cleanup %s: %v", name, err)
		}
	})
}

// domainExists asks libvirtd whether a domain named name exists.
func domainExists(t testing.TB, h *Hypervisor, name string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.call(ctx, func(l *golibvirt.Libvirt) error {
		_, err := l.DomainLookupByName(name)
		return err
	})
	if golibvirt.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatalf("lookup %s: %v", name, err)
	}
	return true
}

// waitConsole waits until the console log contains want, and returns it.
func waitConsole(t testing.TB, path, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("console %s lacks %q after %v; it has:\n%s", path, want, timeout, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metadataStream starts a metadata server whose user data is an iPXE script
// printing token, and returns the address qemu's guestfwd chardev connects to.
func metadataStream(t testing.TB, token string) string {
	t.Helper()
	s, err := metadata.Start(metadata.Config{Seed: cloudinit.Spec{InstanceID: "iid-netboot", Hostname: "netboot", Keys: testKeys(t)},
		UserData: []byte("#!ipxe\necho IMAGEVET-GUESTFWD-OK " + token + "\n")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s.StreamAddr()
}

// TestBootNetworkConsoleMetadata boots a diskless BIOS guest that network-boots
// iPXE: the console log grows live (SeaBIOS, then iPXE), the guest gets its
// address from the link-local slirp DHCP, and fetches its script from
// 169.254.169.254:80 through the guestfwd chardev stream, with libvirt's
// default seccomp policy in force.
func TestBootNetworkConsoleMetadata(t *testing.T) {
	h := newHypervisor(t, Config{})
	ctx := context.Background()
	dir := qemuDir(t)
	spec := testSpec(t, dir, "netboot")
	spec.Seed = filepath.Join(dir, "seed.iso")
	if err := os.WriteFile(spec.Seed, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	token := fmt.Sprintf("tok%d", time.Now().UnixNano())
	spec.MetadataAddr = metadataStream(t, token)
	destroyOnCleanup(t, h, spec.Name)

	m, err := h.boot(ctx, spec, bootOptions{
		netdevExtra: []string{"bootfile=http://169.254.169.254/latest/user-data"},
		nicExtra:    []string{"bootindex=3"},
	})
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	if up, err := m.Running(ctx); err != nil || !up {
		t.Fatalf("Running = %v, %v", up, err)
	}
	if !strings.HasPrefix(m.SSHAddr(), "127.0.0.1:") {
		t.Errorf("SSHAddr = %q", m.SSHAddr())
	}

	// The log grows while the guest runs.
	first := waitConsole(t, m.ConsoleLog(), "SeaBIOS", 30*time.Second)
	// iPXE's DHCP alone takes a minute when the host is busy emulating others.
	all := waitConsole(t, m.ConsoleLog(), "IMAGEVET-GUESTFWD-OK "+token, 3*time.Minute)
	if len(all) <= len(first) {
		t.Errorf("console did not grow: %d then %d bytes", len(first), len(all))
	}
	if !strings.Contains(all, "169.254.169.15") {
		t.Errorf("guest did not get 169.254.169.15 by DHCP:\n%s", all)
	}

	// The SSH forward is bound on loopback (nothing listens in this guest,
	// so slirp accepts and then drops the connection).
	c, err := net.DialTimeout("tcp", m.SSHAddr(), 5*time.Second)
	if err != nil {
		t.Errorf("dial ssh forward: %v", err)
	} else {
		c.Close()
	}

	if err := m.Destroy(ctx); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
	if up, err := m.Running(ctx); err != nil || up {
		t.Errorf("Running after Destroy = %v, %v", up, err)
	}
	if domainExists(t, h, spec.Name) {
		t.Error("domain still exists after Destroy")
	}
	if _, err := net.DialTimeout("tcp", m.SSHAddr(), time.Second); err == nil {
		t.Error("ssh forward still listening after Destroy")
	}
}

// TestBootUEFI boots OVMF with a per-machine NVRAM made from the template;
// the firmware writes to the serial console.
func TestBootUEFI(t *testing.T) {
	h := newHypervisor(t, Config{})
	if _, err := h.firmware(); err != nil {
		t.Skipf("no OVMF: %v", err)
	}
	ctx := context.Background()
	dir := qemuDir(t)
	spec := testSpec(t, dir, "uefi")
	spec.Firmware = vm.FirmwareUEFI
	spec.NVRAM = filepath.Join(dir, "nvram.fd")
	spec.MemoryMiB = 512
	spec.Seed = filepath.Join(dir, "seed.iso") // SATA CD-ROM on q35
	if err := os.WriteFile(spec.Seed, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	destroyOnCleanup(t, h, spec.Name)
	m, err := h.Boot(ctx, spec)
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	if fi, err := os.Stat(spec.NVRAM); err != nil || fi.Size() == 0 {
		t.Errorf("nvram not created: %v", err)
	}
	if up, err := m.Running(ctx); err != nil || !up {
		t.Fatalf("Running = %v, %v", up, err)
	}
	// OVMF's boot manager reports the blank disk on the serial console.
	waitConsole(t, m.ConsoleLog(), "BdsDxe", 90*time.Second)
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spec.NVRAM); err != nil {
		t.Errorf("Destroy removed the caller's nvram: %v", err)
	}
}

// TestBootTinySSH boots the tiny fixture from an overlay over the cached base,
// with a NoCloud seed on the SATA CD-ROM, and reads the SSH banner through the
// forward.
func TestBootTinySSH(t *testing.T) {
	fixtures := os.Getenv("IMAGEVET_FIXTURES")
	if fixtures == "" {
		fixtures = "/var/cache/imagevet/fixtures"
	}
	base := filepath.Join(fixtures, "tiny.qcow2")
	if _, err := os.Stat(base); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("tiny fixture missing (run fixtures/build): %v", err)
		}
		t.Skipf("tiny fixture missing (run fixtures/build): %v", err)
	}
	need(t, "qemu-img", "cloud-localds")
	h := newHypervisor(t, Config{})
	ctx := context.Background()
	dir := qemuDir(t)
	spec := testSpec(t, dir, "tiny-ssh")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, spec.Disk)
	os.WriteFile(filepath.Join(dir, "user-data"), []byte("#cloud-config\nhostname: tinyvm\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "meta-data"), []byte("instance-id: i-tiny\nlocal-hostname: tinyvm\n"), 0o644)
	spec.Seed = filepath.Join(dir, "seed.iso")
	run(t, "cloud-localds", spec.Seed, filepath.Join(dir, "user-data"), filepath.Join(dir, "meta-data"))
	destroyOnCleanup(t, h, spec.Name)

	start := time.Now()
	m, err := h.Boot(ctx, spec)
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	deadline := time.Now().Add(120 * time.Second)
	var banner string
	for banner == "" {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(m.ConsoleLog())
			t.Fatalf("no SSH banner on %s; console:\n%s", m.SSHAddr(), b)
		}
		banner = readBanner(m.SSHAddr())
		if banner == "" {
			time.Sleep(250 * time.Millisecond)
		}
	}
	if !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Errorf("banner = %q", banner)
	}
	t.Logf("SSH banner %q %v after Boot", banner, time.Since(start))
	// The guest found the seed on the (IDE, machine pc) CD-ROM and applied it.
	console := waitConsole(t, m.ConsoleLog(), "dropbear", 10*time.Second)
	if !strings.Contains(console, "DataSourceNoCloud") || !strings.Contains(console, "i-tiny") {
		t.Errorf("guest did not use the CD-ROM seed; console:\n%s", console)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
}

func readBanner(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return ""
	}
	return strings.TrimSpace(line)
}

// TestSweep removes a worker's leftovers (booted through another connection,
// as a crashed worker would leave them) and nothing of another worker's.
func TestSweep(t *testing.T) {
	h := newHypervisor(t, Config{})
	crashed := newHypervisor(t, Config{})
	ctx := context.Background()
	var names []string
	boot := func(worker, job string) vm.Machine {
		dir := qemuDir(t)
		s := testSpec(t, dir, job)
		s.Worker = worker
		s.Name = vm.DomainName(testPrefix, worker, job)
		destroyOnCleanup(t, h, s.Name)
		m, err := crashed.Boot(ctx, s)
		if err != nil {
			t.Fatalf("Boot %s: %v", s.Name, err)
		}
		names = append(names, s.Name)
		return m
	}
	boot("sweep", "a")
	boot("sweep", "b")
	other := boot("sweep-other", "a")
	crashed.Close()

	n, err := h.Sweep(ctx, vm.WorkerPrefix(testPrefix, "sweep"))
	if err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want 2", n, err)
	}
	if domainExists(t, h, names[0]) || domainExists(t, h, names[1]) {
		t.Error("swept domain still exists")
	}
	if !domainExists(t, h, other.Name()) {
		t.Error("Sweep removed another worker's machine")
	}
	if n, err := h.Sweep(ctx, vm.WorkerPrefix(testPrefix, "sweep")); err != nil || n != 0 {
		t.Errorf("second Sweep = %d, %v; want 0", n, err)
	}
	if _, err := h.Sweep(ctx, ""); !errors.Is(err, vm.ErrInvalidSpec) {
		t.Errorf("Sweep(\"\") = %v, want ErrInvalidSpec", err)
	}
}

// TestBootBadSpecLeavesNothing: specs that cannot boot fail with a
// classified error and leave no domain behind.
func TestBootBadSpecLeavesNothing(t *testing.T) {
	h := newHypervisor(t, Config{})
	ctx := context.Background()
	cases := []struct {
		name      string
		mutate    func(t *testing.T, dir string, s *vm.Spec)
		retryable bool
	}{
		{"missing disk", func(t *testing.T, dir string, s *vm.Spec) { s.Disk = filepath.Join(dir, "nope.qcow2") }, false},
		{"missing seed", func(t *testing.T, dir string, s *vm.Spec) { s.Seed = filepath.Join(dir, "nope.iso") }, false},
		{"no console dir", func(t *testing.T, dir string, s *vm.Spec) { s.ConsoleLog = filepath.Join(dir, "nodir", "c.log") }, false},
		{"zero vcpus", func(t *testing.T, dir string, s *vm.Spec) { s.VCPUs = 0 }, false},
		{"disk not qcow2", func(t *testing.T, dir string, s *vm.Spec) {
			os.WriteFile(s.Disk, []byte("not a qcow2 image"), 0o644)
		}, false},
		{"qcow2 version qemu refuses", func(t *testing.T, dir string, s *vm.Spec) {
			// Passes our checks; qemu refuses to open it, libvirtd
			// reports the failure and cleans up.
			f, err := os.OpenFile(s.Disk, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte{0, 0, 0, 99}, 4)
			f.Close()
		}, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := qemuDir(t)
			s := testSpec(t, dir, fmt.Sprintf("bad-%d", i))
			c.mutate(t, dir, &s)
			destroyOnCleanup(t, h, s.Name)
			m, err := h.Boot(ctx, s)
			if err == nil {
				m.Destroy(ctx)
				t.Fatal("Boot succeeded")
			}
			var ve *vm.Error
			if !errors.As(err, &ve) || ve.Op != "boot" {
				t.Fatalf("error %v is not a *vm.Error for boot", err)
			}
			if ve.Retryable != c.retryable {
				t.Errorf("Retryable = %v, want %v (%v)", ve.Retryable, c.retryable, err)
			}
			if !c.retryable && !errors.Is(err, vm.ErrInvalidSpec) {
				t.Errorf("error %v does not wrap ErrInvalidSpec", err)
			}
			if domainExists(t, h, s.Name) {
				t.Error("failed Boot left a domain")
			}
		})
	}
}

// TestBootCancelledLeavesNothing cancels Boot at several points, including
// while libvirtd is creating the domain, and checks nothing survives.
func TestBootCancelledLeavesNothing(t *testing.T) {
	h := newHypervisor(t, Config{})
	delays := []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 15 * time.Millisecond, 30 * time.Millisecond, 60 * time.Millisecond}
	for i, d := range delays {
		dir := qemuDir(t)
		s := testSpec(t, dir, fmt.Sprintf("cancel-%d", i))
		destroyOnCleanup(t, h, s.Name)
		ctx, cancel := context.WithCancel(context.Background())
		if d == 0 {
			cancel()
		} else {
			time.AfterFunc(d, cancel)
		}
		m, err := h.Boot(ctx, s)
		cancel()
		if err == nil {
			// Boot finished before the cancel: the machine is ours.
			if err := m.Destroy(context.Background()); err != nil {
				t.Fatalf("delay %v: Destroy: %v", d, err)
			}
		} else if !errors.Is(err, context.Canceled) || !vm.IsRetryable(err) {
			t.Errorf("delay %v: Boot error %v: want retryable context.Canceled", d, err)
		}
		if domainExists(t, h, s.Name) {
			t.Errorf("delay %v: domain left behind (boot err %v)", d, err)
		}
	}
}

// freezer is a unix-socket proxy to libvirtd that can stop forwarding, to
// simulate a hung daemon.
type freezer struct {
	path   string
	frozen atomic.Bool
	wg     sync.WaitGroup
}

func newFreezer(t *testing.T) *freezer {
	f := &freezer{path: filepath.Join(t.TempDir(), "libvirt.sock")}
	l, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); f.frozen.Store(false); f.wg.Wait() })
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", defaultSocket)
			if err != nil {
				c.Close()
				continue
			}
			f.wg.Add(2)
			go f.pipe(c, up)
			go f.pipe(up, c)
		}
	}()
	return f
}

func (f *freezer) pipe(src, dst net.Conn) {
	defer f.wg.Done()
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		for f.frozen.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestCallTimeoutAndReconnect: a hung libvirtd makes calls fail with a
// retryable ErrTimeout at the deadline (not hang), and the next call after it
// recovers reconnects by itself.
func TestCallTimeoutAndReconnect(t *testing.T) {
	newHypervisor(t, Config{}) // skip without libvirtd
	f := newFreezer(t)
	h := newHypervisor(t, Config{Socket: f.path, CallTimeout: 500 * time.Millisecond})
	ctx := context.Background()
	if n, err := h.Sweep(ctx, testPrefix+"-none-"); err != nil || n != 0 {
		t.Fatalf("Sweep through proxy = %d, %v", n, err)
	}
	f.frozen.Store(true)
	start := time.Now()
	_, err := h.Sweep(ctx, testPrefix+"-none-")
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("hung call returned after %v, want ~500ms", took)
	}
	if !errors.Is(err, vm.ErrTimeout) || !vm.IsRetryable(err) {
		t.Fatalf("hung call error = %v, want retryable ErrTimeout", err)
	}
	f.frozen.Store(false)
	if n, err := h.Sweep(ctx, testPrefix+"-none-"); err != nil || n != 0 {
		t.Fatalf("Sweep after recovery = %d, %v; want reconnect", n, err)
	}
}

// TestCancelledCallSparesOthers: a caller that gives up on a slow call gets its
// context's error at once, and another call in flight on the same connection
// still completes (cancelling one job's poll must not interrupt another's
// destroy).
func TestCancelledCallSparesOthers(t *testing.T) {
	newHypervisor(t, Config{}) // skip without libvirtd
	f := newFreezer(t)
	h := newHypervisor(t, Config{Socket: f.path, CallTimeout: 10 * time.Second})
	if _, err := h.Sweep(context.Background(), testPrefix+"-none-"); err != nil {
		t.Fatalf("Sweep through proxy: %v", err)
	}
	f.frozen.Store(true)
	other := make(chan error, 1)
	go func() {
		_, err := h.Sweep(context.Background(), testPrefix+"-none-")
		other <- err
	}()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err := h.Sweep(ctx, testPrefix+"-none-")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call = %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("cancelled call returned after %v, want ~300ms", took)
	}
	f.frozen.Store(false)
	select {
	case err := <-other:
		if err != nil {
			t.Fatalf("the other call failed after a neighbour's cancellation: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the other call never returned")
	}
}

// TestUnavailable: no daemon at the socket is a retryable ErrUnavailable.
func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	_, err := New(ctx, Config{Socket: filepath.Join(t.TempDir(), "absent.sock"), CallTimeout: time.Second})
	if !errors.Is(err, vm.ErrUnavailable) || !vm.IsRetryable(err) {
		t.Fatalf("New = %v, want retryable ErrUnavailable", err)
	}
}

func TestAccel(t *testing.T) {
	h := newHypervisor(t, Config{})
	ctx := context.Background()
	if a, err := h.Accel(ctx, vm.AccelTCG); err != nil || a != vm.AccelTCG {
		t.Errorf("Accel(tcg) = %q, %v", a, err)
	}
	auto, err := h.Accel(ctx, vm.AccelAuto)
	if err != nil || (auto != vm.AccelKVM && auto != vm.AccelTCG) {
		t.Fatalf("Accel(auto) = %q, %v", auto, err)
	}
	kvm, err := h.Accel(ctx, vm.AccelKVM)
	if auto == vm.AccelKVM && (err != nil || kvm != vm.AccelKVM) {
		t.Errorf("auto is kvm but Accel(kvm) = %q, %v", kvm, err)
	}
	if auto == vm.AccelTCG && !errors.Is(err, vm.ErrUnsupported) {
		t.Errorf("auto is tcg but Accel(kvm) = %q, %v; want ErrUnsupported", kvm, err)
	}
	if _, err := h.Accel(ctx, "hvf"); !errors.Is(err, vm.ErrInvalidSpec) {
		t.Errorf("Accel(hvf) = %v", err)
	}
	t.Logf("auto resolves to %s", auto)
}

// BenchmarkBoot measures Boot() from call to a running domain, with the
// overlay and seed already in place (the worker's setup path).
func BenchmarkBoot(b *testing.B) {
	h := newHypervisor(b, Config{})
	ctx := context.Background()
	dir := qemuDir(b)
	spec := testSpec(b, dir, "bench")
	spec.Seed = filepath.Join(dir, "seed.iso")
	os.WriteFile(spec.Seed, make([]byte, 64<<10), 0o644)
	destroyOnCleanup(b, h, spec.Name)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, err := h.Boot(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := m.Destroy(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// TestBootDuplicateName: a second Boot under a running machine's name fails
// with a retryable ErrExists and leaves the first machine alone.
func TestBootDuplicateName(t *testing.T) {
	h := newHypervisor(t, Config{})
	ctx := context.Background()
	spec := testSpec(t, qemuDir(t), "dup")
	destroyOnCleanup(t, h, spec.Name)
	m, err := h.Boot(ctx, spec)
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	second := spec
	second.Disk = emptyDisk(t, qemuDir(t))
	second.ConsoleLog = filepath.Join(filepath.Dir(second.Disk), "console.log")
	if _, err := h.Boot(ctx, second); !errors.Is(err, vm.ErrExists) || !vm.IsRetryable(err) {
		t.Errorf("duplicate Boot = %v, want retryable ErrExists", err)
	}
	if up, err := m.Running(ctx); err != nil || !up {
		t.Errorf("first machine Running = %v, %v", up, err)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestKVMProbe: the probe's verdict agrees with Accel, says why, and leaves no
// guest behind. On a host whose nested KVM cannot run a guest (as these build
// machines), auto must fall back to tcg.
func TestKVMProbe(t *testing.T) {
	h := newHypervisor(t, Config{})
	ctx := context.Background()
	start := time.Now()
	ok, why, err := h.KVM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if why == "" {
		t.Fatal("the probe gave no reason")
	}
	t.Logf("kvm usable=%v in %s: %s", ok, time.Since(start).Round(time.Millisecond), why)
	if time.Since(start) > kvmProbeTimeout+30*time.Second {
		t.Errorf("the probe took %s", time.Since(start))
	}
	auto, err := h.Accel(ctx, vm.AccelAuto)
	if err != nil || (ok && auto != vm.AccelKVM) || (!ok && auto != vm.AccelTCG) {
		t.Fatalf("Accel(auto) = %q, %v with kvm usable=%v", auto, err, ok)
	}
	if _, err := h.Accel(ctx, vm.AccelKVM); !ok && (!errors.Is(err, vm.ErrUnsupported) || !strings.Contains(err.Error(), why)) {
		t.Errorf("Accel(kvm) on a host whose kvm cannot run a guest = %v, want ErrUnsupported saying %q", err, why)
	}
	out, err := exec.Command("virsh", "-c", "qemu:///system", "list", "--all", "--name").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "imagevet-kvmprobe-") {
		t.Fatalf("the probe left its guest behind:\n%s", out)
	}
}

// Sweep (tests only) destroys every domain whose name starts with prefix; see
// vm.Hypervisor. It keeps going past failures and reports them joined.
func (h *Hypervisor) Sweep(ctx context.Context, prefix string) (int, error) {
	doms, err := h.listPrefixed(ctx, prefix)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, d := range doms {
		if err := h.destroyDomain(ctx, d); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.Name, err))
			continue
		}
		h.log.Info("swept orphan machine", "domain", d.Name)
		n++
	}
	if len(errs) > 0 {
		return n, classify("sweep", "", errors.Join(errs...))
	}
	return n, nil
}
