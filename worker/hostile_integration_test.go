package worker

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm"
)

// hostSample is one look at the host while a job runs.
type hostSample struct {
	processes    int    // every process on the host
	qemu         bool   // the job's qemu is running
	qemuCmdline  string // its command line, NULs as spaces
	qemuChildren int    // processes whose parent is the job's qemu
	rssKiB       int    // this test process (the worker) resident memory
	goroutines   int
}

// sampleHost counts processes in /proc, finds the qemu of domain and counts its
// children, and reads this process's VmRSS.
func sampleHost(domain string) hostSample {
	var s hostSample
	ents, _ := os.ReadDir("/proc")
	qemu := ""
	ppids := map[string]string{}
	for _, e := range ents {
		pid := e.Name()
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		s.processes++
		stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 {
			if f := strings.Fields(string(stat[i+1:])); len(f) > 1 {
				ppids[pid] = f[1]
			}
		}
		if cmd, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline")); err == nil &&
			bytes.Contains(cmd, []byte("guest="+domain+",")) {
			qemu = pid
			s.qemuCmdline = string(bytes.ReplaceAll(cmd, []byte{0}, []byte(" ")))
		}
	}
	if qemu != "" {
		s.qemu = true
		for _, ppid := range ppids {
			if ppid == qemu {
				s.qemuChildren++
			}
		}
	}
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				s.rssKiB, _ = strconv.Atoi(f[1])
			}
		}
	}
	s.goroutines = runtime.NumGoroutine()
	return s
}

// A guest that opens 1,000 connections to 169.254.169.254 (in waves of 200 held
// open at once: a 256 MiB guest cannot fork many more), then fetches metadata 20
// times, costs the host no process and bounded worker memory, and its metadata
// check and commands still pass: qemu forwards every connection into one chardev
// stream the worker serves (worker/guest/metadata).
func TestIntegrationMetadataFlood(t *testing.T) {
	env := newIntegrationEnv(t)
	job, _ := loadSample(t, "tiny-metadata-flood.json")
	domain := vm.DomainName(env.cfg.DomainPrefix, env.cfg.WorkerID, job.ID)

	base := sampleHost(domain)
	var (
		mu      sync.Mutex
		peak    hostSample
		samples int
		seenVM  bool
	)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			s := sampleHost(domain)
			mu.Lock()
			samples++
			peak.processes = max(peak.processes, s.processes)
			peak.qemuChildren = max(peak.qemuChildren, s.qemuChildren)
			peak.rssKiB = max(peak.rssKiB, s.rssKiB)
			peak.goroutines = max(peak.goroutines, s.goroutines)
			seenVM = seenVM || s.qemu
			peak.qemu = seenVM
			if s.qemuCmdline != "" {
				peak.qemuCmdline = s.qemuCmdline
			}
			mu.Unlock()
		}
	}()
	res, _ := env.runSample(t, "tiny-metadata-flood.json")
	stop()
	<-done

	mu.Lock()
	defer mu.Unlock()
	cmdline := peak.qemuCmdline
	peak.qemuCmdline = ""
	t.Logf("host before: %+v; peak during the job (%d samples): %+v", base, samples, peak)
	if !seenVM {
		t.Fatal("never saw the job's qemu process: the samples prove nothing")
	}
	// libvirt's own seccomp policy, spawn and privilege changes denied.
	if !strings.Contains(cmdline, "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny") ||
		strings.Contains(cmdline, "cmd:") {
		t.Errorf("qemu runs without libvirt's default seccomp policy, or with a command forward:\n%s", cmdline)
	}
	if c := res.Check(jobs.CheckMetadata); c == nil || c.Status != jobs.StatusPass {
		t.Errorf("metadata check: %+v", c)
	}
	if peak.qemuChildren != 0 {
		t.Errorf("qemu started %d processes for guest connections; want none", peak.qemuChildren)
	}
	// Other work shares this host, so the total may move a little; a process per
	// guest connection would add hundreds.
	if grew := peak.processes - base.processes; grew > 150 {
		t.Errorf("host process count grew by %d during the job (from %d)", grew, base.processes)
	}
	if grew := peak.rssKiB - base.rssKiB; grew > 64<<10 {
		t.Errorf("worker memory grew by %d KiB during the job", grew)
	}
	if grew := peak.goroutines - base.goroutines; grew > 100 {
		t.Errorf("worker goroutines grew by %d during the job", grew)
	}
}
