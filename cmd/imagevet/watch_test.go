package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/watch/mirror"

	"github.com/imagevet/imagevet/queue"
)

// TestWatchOnceThenStatus: `watch --once` queues the new release of each family (a
// worker with a scripted runner vets it), `status` shows each family's upstream
// release and verdict, a second `--once` queues nothing. The mirror and NATS are
// real (loopback); only the runner is scripted.
func TestWatchOnceThenStatus(t *testing.T) {
	url := startWorker(t)
	m, dir := cirrosMirror(t)
	catalogYAML := `families:
  cirros:
    name: CirrOS
    feed:
      kind: cirros
      url: ` + m.URL() + `/cirros/
      arch: x86_64
      artefact: cirros-{version}-{arch}-disk.img
    job:
      guest: {user: cirros}
  missing:
    name: Missing
    feed: {kind: cirros, url: "` + m.URL() + `/nothing/", arch: x86_64, artefact: "c-{version}.img"}
    job:
      guest: {user: cirros}
`
	cat := filepath.Join(dir, "families.yaml")
	os.WriteFile(cat, []byte(catalogYAML), 0o644)
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := dispatch(context.Background(), args, Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
		return code, out.String(), errOut.String()
	}
	code, out, errOut := run("watch", "--once", "--json", "--nats", url, "--catalog", cat, "--request-timeout", "2s", "--attempts", "1")
	if code != exitFail {
		t.Errorf("exit %d with a failing feed, want %d\n%s", code, exitFail, errOut)
	}
	var outcomes []outcomeJSON
	if err := json.Unmarshal([]byte(out), &outcomes); err != nil || len(outcomes) != 2 {
		t.Fatalf("%q: %v", out, err)
	}
	got := map[string]outcomeJSON{}
	for _, o := range outcomes {
		got[o.Family] = o
	}
	if o := got["cirros"]; o.State != "queued" || o.Release != "0.6.3" || o.JobID == "" || o.TookSeconds <= 0 {
		t.Errorf("cirros: %+v", o)
	}
	if o := got["missing"]; o.State != "failed" || !strings.Contains(o.Error, "404") {
		t.Errorf("missing: %+v", o)
	}
	jobID := got["cirros"].JobID

	nc, err := queue.Connect(queue.ConnectOptions{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := queue.Open(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := q.Wait(ctx, jobID, nil); err != nil || r.Verdict != jobs.VerdictPass {
		t.Fatalf("verdict: %+v %v", r, err)
	}
	code, out, _ = run("status", "--nats", url)
	if code != 0 || !strings.Contains(out, "UPSTREAM") || !strings.Contains(out, "cirros  ") ||
		!strings.Contains(out, "0.6.3") || !strings.Contains(out, "pass") || !strings.Contains(out, "404") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	code, out, _ = run("status", "--nats", url, "--families", "--json")
	var lines []familyLine
	if err := json.Unmarshal([]byte(out), &lines); code != 0 || err != nil || len(lines) != 2 || lines[0].Family != "cirros" ||
		lines[0].Verdict != "pass" || lines[0].Release != "0.6.3" || lines[1].FeedError == "" {
		t.Errorf("status --families --json: exit %d %v\n%s", code, err, out)
	}

	// Nothing new: the second run queues nothing.
	code, out, errOut = run("watch", "--once", "--nats", url, "--catalog", cat, "--request-timeout", "2s", "--attempts", "1")
	if code != exitFail || !strings.Contains(out, "unchanged") || strings.Contains(out, "queued") || !strings.Contains(out, "TOOK") {
		t.Errorf("second --once: exit %d\n%s\n%s", code, out, errOut)
	}

	// --family narrows the poll; a family the catalog lacks is refused.
	code, out, _ = run("watch", "--once", "--json", "--nats", url, "--catalog", cat, "--family", "cirros")
	if code != 0 || !strings.Contains(out, `"cirros"`) || strings.Contains(out, "missing") {
		t.Errorf("--family cirros: exit %d\n%s", code, out)
	}
	if code, _, errOut = run("watch", "--once", "--nats", url, "--catalog", cat, "--family", "gentoo"); code != exitError || !strings.Contains(errOut, "gentoo: not in the catalog") {
		t.Errorf("--family gentoo: exit %d %s", code, errOut)
	}

	// A catalog error names the file, line and field; nothing is polled.
	os.WriteFile(cat, []byte(strings.Replace(catalogYAML, "kind: cirros", "kind: gentoo", 1)), 0o644)
	code, _, errOut = run("watch", "--once", "--nats", url, "--catalog", cat)
	if code != exitError || !strings.Contains(errOut, "families.yaml:5: families.cirros.feed.kind") {
		t.Errorf("bad catalog: exit %d %s", code, errOut)
	}
}

// cirrosMirror starts a loopback vendor mirror serving CirrOS 0.6.3 under /cirros/
// and returns it with a directory for the test's files.
func cirrosMirror(t *testing.T) (*mirror.Mirror, string) {
	t.Helper()
	m, err := mirror.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, []byte("disk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Cirros("/cirros/", mirror.Release{Version: "0.6.3", Name: "cirros-0.6.3-x86_64-disk.img", Image: img}); err != nil {
		t.Fatal(err)
	}
	return m, dir
}
