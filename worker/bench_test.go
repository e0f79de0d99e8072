package worker

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagevet/imagevet/cloudinit"
	"github.com/imagevet/imagevet/jobs"
)

// BenchmarkSetup measures a job's setup with the image already cached: from the
// start of Run until libvirt reports the domain running (fetch, keys, seed,
// overlay, metadata server, domain definition and start). Target: <= 0.2 s.
func BenchmarkSetup(b *testing.B) {
	env := newIntegrationEnv(b)
	job, _ := loadSample(b, "tiny.json")
	env.runner.Run(context.Background(), withID(job, "bench-warm"), 1, nil) // cache the image
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		start := time.Now()
		var setup time.Duration
		env.runner.Run(ctx, withID(job, fmt.Sprintf("bench-setup-%d", i)), 1, func(p jobs.Progress) {
			if p.Stage == "boot" && p.Event == "done" && setup == 0 {
				setup = time.Since(start)
				cancel()
			}
		})
		cancel()
		if setup == 0 {
			b.Fatal("the domain never started")
		}
		total += setup
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "setup-s/op")
}

// BenchmarkTimeToVerdict compares the time imagevet takes to a verdict on tiny
// (every check, cleanup included) with the floor: the same image and seed under
// plain qemu, SSH login polled every 20 ms. Runs alternate so machine load hits
// both alike. Target: ratio <= 1.05.
func BenchmarkTimeToVerdict(b *testing.B) {
	env := newIntegrationEnv(b)
	job, _ := loadSample(b, "tiny.json")
	base := filepath.Join(env.fixtures, "tiny.qcow2")
	env.runner.Run(context.Background(), withID(job, "bench-warm"), 1, nil)
	benchVersusFloor(b, env, job, "bench-ttv", func() (time.Duration, error) { return plainQemuTimeToSSH(b, base) })
}

// benchVersusFloor alternates floor runs with imagevet runs of job (which must
// pass) and reports both, imagevet's with and without its cleanup, and their ratios.
func benchVersusFloor(b *testing.B, env *integrationEnv, job jobs.Job, idPrefix string, floorRun func() (time.Duration, error)) {
	var ours, floor, decided time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := floorRun()
		if err != nil {
			b.Fatal(err)
		}
		floor += f
		res := env.runner.Run(context.Background(), withID(job, fmt.Sprintf("%s-%d", idPrefix, i)), 1, nil)
		if res.Verdict != jobs.VerdictPass {
			b.Fatalf("%s: %s %s %q", job.ID, res.Verdict, res.FailedCheck, res.Reason)
		}
		took := res.FinishedAt.Sub(res.StartedAt)
		ours += took
		for _, s := range res.Stages {
			if s.Name == "cleanup" {
				took -= s.Duration.D()
			}
		}
		decided += took
		b.Logf("%s: floor %.1f s; imagevet pass %.1f s decided, %.1f s returned", job.ID, f.Seconds(), took.Seconds(), res.FinishedAt.Sub(res.StartedAt).Seconds())
	}
	n := float64(b.N)
	b.ReportMetric(ours.Seconds()/n, "verdict-s/op")
	b.ReportMetric(decided.Seconds()/n, "decided-s/op")
	b.ReportMetric(floor.Seconds()/n, "floor-s/op")
	b.ReportMetric(ours.Seconds()/floor.Seconds(), "ratio")
	b.ReportMetric(decided.Seconds()/floor.Seconds(), "decided-ratio")
}

func withID(j jobs.Job, id string) jobs.Job {
	j.ID, j.Publish.Name = id, id
	return j
}

// plainGuest is base booted under plain qemu TCG with a NoCloud seed, exactly as a
// person would by hand: the floor the benchmarks compare imagevet with.
type plainGuest struct {
	cmd     *exec.Cmd
	keys    *cloudinit.Keys
	port    int
	console string
	start   time.Time
}

func startPlainQemu(tb testing.TB, base string, memMiB, vcpus int) (*plainGuest, error) {
	dir := tb.TempDir()
	keys, err := cloudinit.NewKeys()
	if err != nil {
		return nil, err
	}
	spec := cloudinit.Spec{InstanceID: "floor", Hostname: "floor", Keys: keys}
	seed := filepath.Join(dir, "seed.iso")
	if err := writeFile(seed, spec.WriteISO); err != nil {
		return nil, err
	}
	overlay := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("qemu-img: %v: %s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &plainGuest{keys: keys, port: ln.Addr().(*net.TCPAddr).Port, console: filepath.Join(dir, "console.log")}
	ln.Close()
	g.start = time.Now()
	g.cmd = exec.Command("qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-machine", "pc", "-m", fmt.Sprint(memMiB), "-smp", fmt.Sprint(vcpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "file:"+g.console, "-monitor", "none",
		"-drive", "file="+overlay+",if=virtio,format=qcow2",
		"-drive", "file="+seed+",media=cdrom,format=raw,readonly=on",
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22", g.port),
		"-device", "virtio-net-pci,netdev=n0,mac="+spec.MACAddress())
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	return g, nil
}

// stop kills the qemu this test started and reaps it.
func (g *plainGuest) stop() { g.cmd.Process.Kill(); g.cmd.Wait() }

// plainQemuTimeToSSH returns the time until an SSH login with the seeded key
// succeeds on a plain qemu boot of base, polling every 20 ms.
func plainQemuTimeToSSH(tb testing.TB, base string) (time.Duration, error) {
	g, err := startPlainQemu(tb, base, 256, 1)
	if err != nil {
		return 0, err
	}
	defer g.stop()
	keys := g.keys
	cfg := &ssh.ClientConfig{User: "debian", Auth: []ssh.AuthMethod{ssh.PublicKeys(keys.Signers()...)},
		HostKeyCallback: keys.HostKeyCallback(), HostKeyAlgorithms: keys.HostKeyAlgorithms(), Timeout: 5 * time.Second}
	deadline := g.start.Add(3 * time.Minute)
	var lastErr error
	for time.Now().Before(deadline) {
		var c *ssh.Client
		c, lastErr = dialWithDeadline(fmt.Sprintf("127.0.0.1:%d", g.port), cfg, 3*time.Second)
		if lastErr == nil {
			var s *ssh.Session
			if s, lastErr = c.NewSession(); lastErr == nil {
				var out []byte
				out, lastErr = s.Output("echo ok")
				s.Close()
				if lastErr == nil && strings.TrimSpace(string(out)) == "ok" {
					c.Close()
					return time.Since(g.start), nil
				}
			}
			c.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	console, _ := os.ReadFile(g.console)
	return 0, fmt.Errorf("plain qemu: no SSH within 3 minutes (last error: %v); console:\n%s", lastErr, console)
}

// plainQemuUntilConsole returns the time until a plain qemu boot of base prints a
// line matching want on its serial console, read every 20 ms.
func plainQemuUntilConsole(tb testing.TB, base string, memMiB, vcpus int, want *regexp.Regexp, limit time.Duration) (time.Duration, error) {
	g, err := startPlainQemu(tb, base, memMiB, vcpus)
	if err != nil {
		return 0, err
	}
	defer g.stop()
	for time.Since(g.start) < limit {
		if b, _ := os.ReadFile(g.console); want.Match(b) {
			return time.Since(g.start), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	console, _ := os.ReadFile(g.console)
	return 0, fmt.Errorf("plain qemu: no %q on the console within %s:\n%s", want, limit, console)
}

// dialWithDeadline logs in with the whole handshake bounded, which ssh.Dial's
// Timeout (connect only) does not do.
func dialWithDeadline(addr string, cfg *ssh.ClientConfig, d time.Duration) (*ssh.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(d))
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}
