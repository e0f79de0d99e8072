package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm"

	"github.com/imagevet/imagevet/queue"
)

// The fault suite (RELIABILITY.md, "Faults"): real nats-server, the imagevet binary,
// real libvirtd and the tiny fixture, with processes killed mid-job. Every test ends
// with a tally (jobs submitted, results, duplicate runs, orphan domains) logged as a
// "FAULT" line; IMAGEVET_FAULT_REPORT names a file the tallies are appended to (JSON
// lines). IMAGEVET_FAULT_LONG=1 kills the worker 20 times instead of 2.
// IMAGEVET_FAULT_LIBVIRTD=1 enables the case that restarts libvirtd, which would hit
// every other VM on the host: `make test` sets it for CI, where nothing else runs.

// tally is what one fault run measured.
type tally struct {
	Fault     string  `json:"fault"`
	Submitted int     `json:"jobs_submitted"`
	Results   int     `json:"results"`
	OneEach   bool    `json:"exactly_one_result_each"`
	DupRuns   int     `json:"duplicate_runs"`
	Orphans   int     `json:"orphan_domains"`
	Kills     int     `json:"kills,omitempty"`
	Seconds   float64 `json:"seconds"`
}

// settle checks what every fault run must end with and records the tally: each
// job has exactly one result in the results stream, no job was run to a verdict
// twice (counted from the workers' "job reported" lines), and no machine of the
// given workers is left.
func settle(t *testing.T, q *queue.Queue, fault string, ids []string, workers []*workerProc, prefixes []string, kills int, start time.Time) tally {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tl := tally{Fault: fault, Submitted: len(ids), Kills: kills, OneEach: true}
	rs, err := q.Stream(ctx, queue.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		info, err := rs.Info(ctx, jetstream.WithSubjectFilter(queue.ResultSubject(id)))
		n := uint64(0)
		if err == nil {
			n = info.State.Subjects[queue.ResultSubject(id)]
		}
		if n != 1 {
			tl.OneEach = false
			t.Errorf("%s: job %s has %d results, want exactly 1 (%v)", fault, id, n, err)
		}
		tl.Results += int(n)
		// A run that reached a verdict logs "job reported"; more than one per
		// job is a duplicate run.
		reported := 0
		for _, w := range workers {
			for _, line := range strings.Split(w.output(), "\n") {
				if strings.Contains(line, "job reported") && strings.Contains(line, "job="+id+" ") {
					reported++
				}
			}
		}
		if reported > 1 {
			tl.DupRuns += reported - 1
		}
	}
	for _, p := range prefixes {
		waitFor(t, 2*time.Minute, "no machine of "+p+" left", func() bool { return len(domains(t, p)) == 0 })
		tl.Orphans += len(domains(t, p))
	}
	tl.Seconds = time.Since(start).Round(time.Second).Seconds()
	if tl.DupRuns != 0 {
		t.Errorf("%s: %d duplicate runs", fault, tl.DupRuns)
	}
	t.Logf("FAULT %s", report(tl))
	return tl
}

// report appends v as a JSON line to IMAGEVET_FAULT_REPORT (when set) and returns it.
func report(v any) []byte {
	line, _ := json.Marshal(v)
	if path := os.Getenv("IMAGEVET_FAULT_REPORT"); path != "" {
		if f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(f, "%s\n", line)
			f.Close()
		}
	}
	return line
}

// submitBooting submits a copy of the tiny job as id and waits until a machine with
// prefix exists (the job is mid-boot).
func submitBooting(t *testing.T, url, id, prefix string) {
	t.Helper()
	if code, _, errOut := run(t, time.Minute, "submit", "--nats", url, jobCopy(t, "tiny.json", id)); code != 0 {
		t.Fatal(errOut)
	}
	waitFor(t, 5*time.Minute, "a machine "+prefix+"* to boot", func() bool { return len(domains(t, prefix)) > 0 })
}

// waitResult waits for a job's result through the imagevet binary, as CI does. A
// submit that fails before it is accepted (a cluster electing leaders after a node
// died) is tried again for a minute, as a CI job would retry it.
func waitResult(t *testing.T, url, id string, timeout time.Duration) (int, jobs.Result) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		code, out, errOut := run(t, timeout+time.Minute, "submit", "--nats", url, "--wait", "--json", "--quiet",
			"--timeout", timeout.String(), jobCopy(t, "tiny.json", id))
		if code == 3 {
			t.Fatalf("job %s: no result in %s (lost?): %s", id, timeout, errOut)
		}
		if strings.TrimSpace(out) == "" && time.Now().Before(deadline) {
			t.Logf("submit --wait failed before acceptance, trying again: %s", strings.TrimSpace(errOut))
			time.Sleep(2 * time.Second)
			continue
		}
		if strings.TrimSpace(out) == "" {
			t.Fatalf("job %s: submit --wait: exit %d: %s", id, code, errOut)
		}
		return code, resultOf(t, out)
	}
}

// faultQueue does what most fault cases start with: their prerequisites, a
// nats-server, the queue set up with args.
func faultQueue(t *testing.T, args ...string) (url string, q *queue.Queue, start time.Time) {
	t.Helper()
	enabled(t)
	besideOthers(t)
	needLibvirt(t)
	fixturesDir(t)
	start = time.Now()
	url = startNATS(t)
	queueSetup(t, url, args...)
	nc, q := openQueue(t, url)
	t.Cleanup(nc.Close)
	return url, q, start
}

func queueSetup(t *testing.T, url string, args ...string) {
	t.Helper()
	code, out, errOut := run(t, time.Minute, append([]string{"queue", "setup", "--nats", url}, args...)...)
	if code != 0 {
		t.Fatalf("queue setup: %s %s", out, errOut)
	}
}

// loaded lets tiny boot on a host whose cores other tests keep busy.
var loaded = []string{"--tcg-factor", "8"}

// fastFlags make a killed worker's job come back quickly.
var fastFlags = []string{"--ack-wait", "10s", "--max-deliver", "3"}

// TestFaultWorkerKilledMidBoot: kill -9 the worker while its guest boots, restart it
// on the same state directory; the job passes on the next attempt, the restarted
// worker sweeps the killed one's machine.
func TestFaultWorkerKilledMidBoot(t *testing.T) {
	kills := 2
	if os.Getenv("IMAGEVET_FAULT_LONG") == "1" {
		kills = 20
	}
	url, q, start := faultQueue(t, fastFlags...)
	const id = "fault-kill"
	prefix := vm.WorkerPrefix("imagevet-", id)
	state := stateDir(t)
	var workers []*workerProc
	var ids []string
	for i := range kills {
		job := fmt.Sprintf("fault-kill-%d", i)
		ids = append(ids, job)
		w := startWorkerIn(t, url, id, state, append(loaded, "--concurrency", "1")...)
		workers = append(workers, w)
		submitBooting(t, url, job, prefix)
		w.kill()
		w2 := startWorkerIn(t, url, id, state, append(loaded, "--concurrency", "1")...)
		workers = append(workers, w2)
		code, r := waitResult(t, url, job, 10*time.Minute)
		if code != 0 || r.Verdict != jobs.VerdictPass || r.Attempt != 2 {
			t.Errorf("kill %d: exit %d, %s attempt %d: %s", i+1, code, r.Verdict, r.Attempt, r.Reason)
		}
		report(map[string]any{"kill": i + 1, "job": job, "verdict": r.Verdict, "attempt": r.Attempt,
			"seconds": time.Since(start).Round(time.Second).Seconds()})
		w2.stop(40 * time.Second)
	}
	settle(t, q, "worker kill -9 mid-boot", ids, workers, []string{prefix}, kills, start)
}

// TestFaultKilledOnTheLastAttempt: with one attempt allowed, the worker dies on it;
// the next worker reports a final error naming what happened instead of leaving the
// job without a result.
func TestFaultKilledOnTheLastAttempt(t *testing.T) {
	url, q, start := faultQueue(t, "--ack-wait", "10s", "--max-deliver", "1")
	const id = "fault-last"
	prefix := vm.WorkerPrefix("imagevet-", id)
	state := stateDir(t)
	w := startWorkerIn(t, url, id, state, loaded...)
	submitBooting(t, url, "fault-last", prefix)
	w.kill()
	w2 := startWorkerIn(t, url, id, state, loaded...)
	code, r := waitResult(t, url, "fault-last", 5*time.Minute)
	if code != 2 || r.Verdict != jobs.VerdictError ||
		!strings.Contains(r.Reason, "gave up after 1 attempts: attempt 1 on worker "+id+" ended without a result") {
		t.Errorf("exit %d, %s: %s", code, r.Verdict, r.Reason)
	}
	settle(t, q, "kill -9 on the last allowed attempt", []string{"fault-last"}, []*workerProc{w, w2}, []string{prefix}, 1, start)
}

// natsServer is one Debian nats-server process with a file store.
type natsServer struct {
	p           *proc
	args        []string
	port, mon   int
	url         string
	storeDir    string
	name        string
	clusterPort int
}

func natsBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		missing(t, "nats-server not installed (Debian package nats-server)")
	}
	return bin
}

func (s *natsServer) start(t *testing.T) {
	t.Helper()
	s.p = start(t, 10*time.Second, s.name, s.args...)
	addr := fmt.Sprintf("127.0.0.1:%d", s.port)
	waitFor(t, 30*time.Second, s.name+" to listen", func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// TestFaultNATSRestartedMidJob: nats-server is killed -9 while a job boots and
// restarted on its file store; the worker reconnects and the job ends in one result.
func TestFaultNATSRestartedMidJob(t *testing.T) {
	enabled(t)
	besideOthers(t)
	needLibvirt(t)
	fixturesDir(t)
	start := time.Now()
	port := freePort(t)
	s := &natsServer{name: "nats-server", port: port, storeDir: t.TempDir(), url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	s.args = []string{natsBin(t), "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", s.storeDir}
	s.start(t)
	queueSetup(t, s.url, "--ack-wait", "20s", "--max-deliver", "3")
	const id = "fault-nats"
	prefix := vm.WorkerPrefix("imagevet-", id)
	w := startWorker(t, s.url, id, loaded...)
	submitBooting(t, s.url, "fault-nats", prefix)
	s.p.kill()
	time.Sleep(3 * time.Second)
	s.start(t)
	code, r := waitResult(t, s.url, "fault-nats", 10*time.Minute)
	if code != 0 || r.Verdict != jobs.VerdictPass {
		t.Errorf("exit %d, %s attempt %d: %s", code, r.Verdict, r.Attempt, r.Reason)
	}
	nc, q := openQueue(t, s.url)
	defer nc.Close()
	settle(t, q, "nats-server kill -9 and restart mid-job (file store)", []string{"fault-nats"}, []*workerProc{w}, []string{prefix}, 1, start)
}

// TestFaultClusterNodeKilledMidJob: a three-node JetStream cluster on loopback, the
// queue set up with three replicas; the node the worker is connected to is killed
// while the job boots. The job ends in one result.
func TestFaultClusterNodeKilledMidJob(t *testing.T) {
	enabled(t)
	besideOthers(t)
	needLibvirt(t)
	fixturesDir(t)
	start := time.Now()
	bin := natsBin(t)
	nodes := make([]*natsServer, 3)
	for i := range nodes {
		nodes[i] = &natsServer{name: fmt.Sprintf("nats-%d", i), port: freePort(t), mon: freePort(t), clusterPort: freePort(t), storeDir: t.TempDir()}
		nodes[i].url = fmt.Sprintf("nats://127.0.0.1:%d", nodes[i].port)
	}
	var urls []string
	for i, n := range nodes {
		var routes []string
		for j, o := range nodes {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.clusterPort))
			}
		}
		n.args = []string{bin, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-m", strconv.Itoa(n.mon),
			"-n", n.name, "-js", "-sd", n.storeDir, "--cluster_name", "imagevet-fault",
			"-cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.clusterPort), "-routes", strings.Join(routes, ",")}
		urls = append(urls, n.url)
	}
	for _, n := range nodes {
		n.start(t)
	}
	all := strings.Join(urls, ",")
	// JetStream needs a meta leader before streams can be made.
	waitFor(t, 3*time.Minute, "the cluster to elect a JetStream leader", func() bool {
		code, _, _ := run(t, time.Minute, "queue", "setup", "--nats", all, "--replicas", "3", "--ack-wait", "20s", "--max-deliver", "3")
		return code == 0
	})
	const id = "fault-cluster"
	prefix := vm.WorkerPrefix("imagevet-", id)
	w := startWorker(t, all, id, loaded...)
	submitBooting(t, all, "fault-cluster", prefix)
	victim := -1
	for i, n := range nodes {
		if connectedHere(t, n.mon, "imagevet-worker "+id) {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatal("the worker is connected to no node")
	}
	nodes[victim].p.kill()
	t.Logf("killed %s, the worker's node", nodes[victim].name)
	var rest []string
	for i, u := range urls {
		if i != victim {
			rest = append(rest, u)
		}
	}
	code, r := waitResult(t, strings.Join(rest, ","), "fault-cluster", 10*time.Minute)
	if code != 0 || r.Verdict != jobs.VerdictPass {
		t.Errorf("exit %d, %s attempt %d: %s", code, r.Verdict, r.Attempt, r.Reason)
	}
	nc, q := openQueue(t, strings.Join(rest, ","))
	defer nc.Close()
	settle(t, q, "3-node cluster, R3, worker's node killed mid-job", []string{"fault-cluster"}, []*workerProc{w}, []string{prefix}, 1, start)
}

// connectedHere reports whether a client named name is connected to the server whose
// monitoring port is mon.
func connectedHere(t *testing.T, mon int, name string) bool {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/connz", mon))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var connz struct {
		Connections []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	if json.NewDecoder(resp.Body).Decode(&connz) != nil {
		return false
	}
	for _, c := range connz.Connections {
		if c.Name == name {
			return true
		}
	}
	return false
}

// TestFaultLibvirtdRestartedMidJob: libvirtd is killed and restarted (as
// scripts/setup-host starts it) while a job boots. Only with IMAGEVET_FAULT_LIBVIRTD=1:
// on a shared host it would disturb everyone's machines.
func TestFaultLibvirtdRestartedMidJob(t *testing.T) {
	enabled(t)
	if os.Getenv("IMAGEVET_FAULT_LIBVIRTD") != "1" {
		t.Skip("restarts libvirtd, which every VM on this host depends on: set IMAGEVET_FAULT_LIBVIRTD=1 (make test does, for CI)")
	}
	needLibvirt(t)
	fixturesDir(t)
	if others := domains(t, ""); len(others) > 0 {
		missing(t, "libvirtd runs other machines (%v): restarting it would disturb them", others)
	}
	start := time.Now()
	url := startNATS(t)
	queueSetup(t, url, "--ack-wait", "20s", "--max-deliver", "3")
	nc, q := openQueue(t, url)
	defer nc.Close()
	const id = "fault-libvirtd"
	prefix := vm.WorkerPrefix("imagevet-", id)
	w := startWorker(t, url, id, loaded...)
	submitBooting(t, url, "fault-libvirtd", prefix)
	restartLibvirtd(t)
	code, r := waitResult(t, url, "fault-libvirtd", 10*time.Minute)
	if code != 0 || r.Verdict != jobs.VerdictPass {
		t.Errorf("exit %d, %s attempt %d: %s", code, r.Verdict, r.Attempt, r.Reason)
	}
	settle(t, q, "libvirtd killed and restarted mid-job", []string{"fault-libvirtd"}, []*workerProc{w}, []string{prefix}, 1, start)
}

// restartLibvirtd kills the running libvirtd by its pid file and starts it again
// the way scripts/setup-host does (`libvirtd -d`), then waits for its socket.
func restartLibvirtd(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile("/run/libvirtd.pid")
	if err != nil {
		t.Fatalf("libvirtd pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("libvirtd pid %q: %v", data, err)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("kill libvirtd %d: %v", pid, err)
	}
	waitFor(t, 30*time.Second, "libvirtd to exit", func() bool {
		_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
		return err != nil
	})
	time.Sleep(2 * time.Second)
	if out, err := exec.Command("libvirtd", "-d").CombinedOutput(); err != nil {
		t.Fatalf("libvirtd -d: %v %s", err, out)
	}
	waitFor(t, time.Minute, "libvirtd to answer", func() bool {
		return exec.Command("virsh", "-c", "qemu:///system", "version").Run() == nil
	})
}

// TestFaultRunBesideABusyWorker: `imagevet run` with the same worker id and state
// directory as a worker (both default to the host name) starts while the worker's
// guest boots; the run's start-up sweep leaves the worker's machine alone and the
// worker's job passes on its first attempt.
func TestFaultRunBesideABusyWorker(t *testing.T) {
	url, q, start := faultQueue(t, fastFlags...)
	const id = "fault-beside"
	prefix := vm.WorkerPrefix("imagevet-", id)
	state := stateDir(t)
	w := startWorkerIn(t, url, id, state, append(loaded, "--concurrency", "1")...)
	submitBooting(t, url, "fault-beside", prefix)
	code, out, errOut := run(t, 10*time.Minute, "run", "--json", "--worker-id", id, "--state-dir", state,
		"--image-root", fixturesDir(t), "--accel", "tcg", "--tcg-factor", "8", jobCopy(t, "tiny-panic.json", "fault-beside-run"))
	var rr jobs.Result
	if err := json.Unmarshal([]byte(out), &rr); err != nil || code != 1 || rr.Verdict != jobs.VerdictFail {
		t.Errorf("run beside the worker: exit %d, %+v %v: %s", code, rr.Verdict, err, tail(errOut, 2000))
	}
	wcode, r := waitResult(t, url, "fault-beside", 10*time.Minute)
	if wcode != 0 || r.Verdict != jobs.VerdictPass || r.Attempt != 1 {
		t.Errorf("the worker's job: exit %d, %s attempt %d: %s", wcode, r.Verdict, r.Attempt, r.Reason)
	}
	settle(t, q, "imagevet run beside a busy worker", []string{"fault-beside"}, []*workerProc{w}, []string{prefix}, 0, start)
}
