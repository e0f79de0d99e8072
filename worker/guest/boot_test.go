package guest_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/cloudinit"
	"github.com/imagevet/imagevet/console"
	"github.com/imagevet/imagevet/fixtures"
	"github.com/imagevet/imagevet/worker/guest"
	"github.com/imagevet/imagevet/worker/guest/metadata"
	"github.com/imagevet/imagevet/worker/guest/sshprobe"
)

// machine is one qemu process under TCG with restricted user networking: SSH via a
// forward on 127.0.0.1, the metadata address forwarded to a per-test server.
type machine struct {
	sshAddr string
	console string
}

func bootFixture(t *testing.T, name string, spec cloudinit.Spec, metadataAddr string) machine {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM under TCG: skipped in -short mode")
	}
	for _, c := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed: %v", c, err)
		}
	}
	image := fixtures.Path(name)
	if _, err := os.Stat(image); err != nil {
		t.Skipf("fixture %s missing (run `fixtures/build %s`): %v", image, name, err)
	}
	dir := t.TempDir()
	overlay := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image, overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	seed := filepath.Join(dir, "seed.iso")
	f, err := os.Create(seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.WriteISO(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	m := machine{sshAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), console: filepath.Join(dir, "console.log")}
	netdev := "user,id=n0,restrict=on,net=169.254.169.0/24,host=169.254.169.1,hostfwd=tcp:127.0.0.1:" + strconv.Itoa(port) + "-:22"
	if metadataAddr != "" {
		// One chardev socket carries every guest connection (see the
		// metadata package): no host process per connection.
		netdev += ",guestfwd=tcp:169.254.169.254:80-tcp:" + metadataAddr + ",,reconnect=1"
	}
	cmd := exec.Command("qemu-system-x86_64",
		"-accel", "tcg", "-machine", "pc", "-cpu", "max", "-m", "256", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
		"-serial", "file:"+m.console,
		"-drive", "file="+overlay+",if=virtio,format=qcow2",
		"-drive", "file="+seed+",media=cdrom,if=ide,format=raw,readonly=on",
		"-netdev", netdev,
		"-device", "virtio-net-pci,netdev=n0,mac="+spec.MACAddress())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("kill qemu pid %d: %v", cmd.Process.Pid, err)
			}
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(m.console)
			t.Logf("qemu stderr: %s\nconsole:\n%s", stderr.String(), b)
		}
	})
	return m
}

func newSpec(t *testing.T, instanceID, hostname string) cloudinit.Spec {
	t.Helper()
	keys, err := cloudinit.NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	return cloudinit.Spec{InstanceID: instanceID, Hostname: hostname, Keys: keys}
}

// TestTinyGuest runs every guest check against the tiny fixture under qemu: the
// console is watched live, SSH is probed through the loopback forward, and the
// guest fetches metadata through guestfwd's chardev stream from a real server.
func TestTinyGuest(t *testing.T) {
	spec := newSpec(t, "iid-guest-tiny", "vet-guest-tiny")
	srv, err := metadata.Start(metadata.Config{Seed: spec})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())

	start := time.Now()
	m := bootFixture(t, "tiny", spec, srv.StreamAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	con := console.Watch(ctx, m.console, console.DefaultRules())
	defer con.Close()

	bootCtx, bootCancel := context.WithTimeout(ctx, 2*time.Minute)
	defer bootCancel()
	type probed struct {
		c   *sshprobe.Client
		rep sshprobe.ProbeReport
		err error
	}
	done := make(chan probed, 1)
	go func() {
		c, rep, err := sshprobe.Probe(bootCtx, sshprobe.ProbeConfig{Addr: m.sshAddr, User: "debian",
			Signers: spec.Keys.Signers(), HostKeys: spec.Keys.HostKeys(), Interval: 100 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))})
		done <- probed{c, rep, err}
	}()
	var p probed
	select {
	case fm := <-con.Failed():
		t.Fatalf("console: %s", fm)
	case p = <-done:
	}
	if p.err != nil {
		t.Fatalf("probe: %v\nreport %+v", p.err, p.rep)
	}
	defer p.c.Close()
	t.Logf("ssh up after %v, %d attempts, stages %+v, server %s", time.Since(start).Round(time.Millisecond), p.rep.Attempts, p.rep.Stages, p.rep.ServerVersion)
	if p.rep.Attempts < 2 {
		t.Errorf("SSH answered on the first attempt: the probe did not wait for a booting guest?")
	}
	for _, ms := range con.Milestones() {
		t.Logf("milestone %-26s %8v  %s", ms.Check, ms.Elapsed.Round(time.Millisecond), ms.Line)
	}
	if _, ok := con.Milestone(console.MilestoneKernel); !ok {
		t.Error("no kernel milestone on the console")
	}

	checkCtx, checkCancel := context.WithTimeout(ctx, time.Minute)
	defer checkCancel()
	results := []guest.CheckResult{
		guest.CheckHostname(checkCtx, p.c, spec.Hostname),
		guest.CheckMetadata(checkCtx, p.c, guest.DefaultMetadataURL, spec.InstanceID),
		guest.CheckCloudInit(checkCtx, p.c, guest.CloudInitWant{InstanceID: spec.InstanceID, Hostname: spec.Hostname, Datasource: "nocloud", PollInterval: 500 * time.Millisecond}),
		guest.RunCommands(checkCtx, p.c, []guest.Command{{Run: "uname -s", ExpectOutput: "/^Linux$/"}, {Run: "exit 3", ExpectExit: 3}}),
	}
	for _, r := range results {
		t.Logf("%-10s %-4s %v  %s", r.Name, r.Status, r.Duration.Round(time.Millisecond), r.Reason)
		if r.Status == guest.StatusFail || r.Status == guest.StatusError {
			t.Errorf("%s: %s %s\n%s", r.Name, r.Status, r.Reason, r.Detail)
		}
	}
	var fromGuest bool
	for _, r := range srv.Requests() {
		if r.Path == "/openstack/latest/meta_data.json" && r.Status == 200 {
			fromGuest = true
		}
	}
	if !fromGuest {
		t.Errorf("the metadata server saw no guest request: %+v", srv.Requests())
	}
	if m, ok := con.Fatal(); ok {
		t.Errorf("console fatal on a good boot: %s", m)
	}
}

// TestPanicGuestFailsFast boots the panic fixture: the console scanner must report
// the panic within a poll interval of the line landing in the log.
func TestPanicGuestFailsFast(t *testing.T) {
	spec := newSpec(t, "iid-guest-panic", "vet-guest-panic")
	m := bootFixture(t, "tiny-panic", spec, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	con := console.Watch(ctx, m.console, console.DefaultRules())
	defer con.Close()
	select {
	case fm := <-con.Failed():
		t.Logf("fatal after %v: %s", fm.Elapsed.Round(time.Millisecond), fm)
		if fm.Check != "kernel-panic" {
			t.Errorf("check = %q, want kernel-panic", fm.Check)
		}
		if !strings.Contains(fm.Line, "Kernel panic - not syncing") {
			t.Errorf("line = %q", fm.Line)
		}
	case <-ctx.Done():
		t.Fatalf("no fatal console match; tail:\n%s", con.Tail(30))
	}
}
