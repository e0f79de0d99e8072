package e2e

import (
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

// TestWatchQueuesNewReleases: a loopback vendor mirror publishes a new "release" of
// the tiny fixture (CirrOS layout), of the debian12 fixture (a Debian cloud suite,
// signed), and of tiny again with a digest that does not match its bytes (a CHECKSUM
// feed). `imagevet watch --once` queues exactly one job for each; a worker (Debian's
// nats-server, the imagevet binary, libvirtd, TCG) vets them: tiny and debian12 pass,
// the wrong digest ends in the image check's non-retryable error (the job's
// digest is at fault, as for fixtures/jobs/tiny-badsum.json). `imagevet status` shows each family's
// upstream version and verdict, and a second `--once` queues nothing.
func TestWatchQueuesNewReleases(t *testing.T) {
	enabled(t)
	besideOthers(t)
	needLibvirt(t)
	dir := fixturesDir(t)
	url := startNATS(t)
	m, err := mirror.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	signer, err := mirror.NewSigner("Debian Cloud Team test key")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	keyring := filepath.Join(work, "debian-cloud.asc")
	if err := signer.WriteKeyring(keyring); err != nil {
		t.Fatal(err)
	}
	tiny, deb := filepath.Join(dir, "tiny.qcow2"), filepath.Join(dir, "debian12.qcow2")
	if _, err := os.Stat(deb); err != nil {
		missing(t, "debian12 fixture missing (%v): run scripts/setup-host", err)
	}
	if err := m.Cirros("/tiny/", mirror.Release{Version: "1.0.1", Name: "tiny-1.0.1-x86_64-disk.img", Image: tiny}); err != nil {
		t.Fatal(err)
	}
	if err := m.Debian("/images/cloud/bookworm/", mirror.Release{Version: "20261120-1234", Name: "debian-12-genericcloud-amd64-20261120-1234.qcow2", Image: deb}, signer); err != nil {
		t.Fatal(err)
	}
	if err := m.Checksum("/badsum/CHECKSUM", true, mirror.Release{Name: "Tiny-Cloud-1.0-20261120.0.x86_64.qcow2", Image: tiny, WrongDigest: true}, nil); err != nil {
		t.Fatal(err)
	}
	catalog := filepath.Join(work, "families.yaml")
	if err := os.WriteFile(catalog, []byte(strings.NewReplacer("MIRROR", m.URL(), "KEYRING", keyring).Replace(e2eCatalog)), 0o644); err != nil {
		t.Fatal(err)
	}
	startWorker(t, url, "e2e-watch")

	start := time.Now()
	code, out, errOut := run(t, 2*time.Minute, "watch", "--once", "--json", "--nats", url, "--catalog", catalog)
	if code != 0 {
		t.Fatalf("watch --once: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("watch --once over 3 new releases took %s", time.Since(start).Round(time.Millisecond))
	var outcomes []struct {
		Family, State, Release string
		JobID                  string `json:"job_id"`
	}
	if err := json.Unmarshal([]byte(out), &outcomes); err != nil || len(outcomes) != 3 {
		t.Fatalf("watch --once output %q: %v", out, err)
	}
	ids := map[string]string{}
	for _, o := range outcomes {
		if o.State != "queued" {
			t.Errorf("%s: %s, want queued", o.Family, o.State)
		}
		ids[o.Family] = o.JobID
	}

	want := map[string]jobs.Verdict{"tiny": jobs.VerdictPass, "debian-12": jobs.VerdictPass, "tiny-badsum": jobs.VerdictError}
	for fam, verdict := range want {
		code, out, errOut := run(t, time.Minute, "status", "--nats", url, "--job", ids[fam], "--json")
		for deadline := time.Now().Add(26 * time.Minute); code == exitNoVerdict && time.Now().Before(deadline); {
			time.Sleep(2 * time.Second)
			code, out, errOut = run(t, time.Minute, "status", "--nats", url, "--job", ids[fam], "--json")
		}
		var r jobs.Result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%s: status --job: exit %d %q %s", fam, code, out, errOut)
		}
		if r.Verdict != verdict {
			t.Errorf("%s (%s): %s %s: %s, want %s", fam, ids[fam], r.Verdict, r.FailedCheck, r.Reason, verdict)
		}
		if fam == "tiny-badsum" && (r.FailedCheck != jobs.CheckImage || r.Retryable || !strings.Contains(r.Reason, "mismatch")) {
			t.Errorf("wrong digest: %s %q retryable=%v, want the image check's mismatch, not retryable", r.FailedCheck, r.Reason, r.Retryable)
		}
		if r.Publish.Family != fam || r.Publish.Release == "" {
			t.Errorf("%s: result publication %+v", fam, r.Publish)
		}
	}

	code, out, _ = run(t, time.Minute, "status", "--nats", url)
	for _, s := range []string{"UPSTREAM", "1.0.1", "20261120-1234", "1.0-20261120.0"} {
		if !strings.Contains(out, s) {
			t.Errorf("status lacks %q (exit %d):\n%s", s, code, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "debian-12 ") && !strings.Contains(l, " pass") {
			t.Errorf("status line for debian-12: %q", l)
		}
	}

	// Nothing new upstream: nothing queued, one conditional request per family.
	code, out, errOut = run(t, time.Minute, "watch", "--once", "--json", "--nats", url, "--catalog", catalog)
	if code != 0 {
		t.Fatalf("second watch --once: exit %d\n%s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &outcomes); err != nil {
		t.Fatal(err)
	}
	for _, o := range outcomes {
		if o.State != "unchanged" {
			t.Errorf("second --once %s: %s", o.Family, o.State)
		}
	}
	nc, q := openQueue(t, url)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := q.Stream(ctx, queue.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := rs.Info(ctx); err != nil || info.State.Msgs != 3 {
		t.Errorf("results: %v %v, want exactly 3", info, err)
	}
}

// exitNoVerdict is status's exit code for a job without a result yet.
const exitNoVerdict = 4

// e2eCatalog is the catalog the end-to-end test watches; MIRROR and KEYRING are
// replaced. The job templates are fixtures/jobs/tiny.json's and debian12.json's, with
// boot timeouts that leave room for a machine shared with other TCG guests.
const e2eCatalog = `families:
  tiny:
    name: Tiny
    feed: {kind: cirros, url: "MIRROR/tiny/", arch: x86_64, artefact: "tiny-{version}-{arch}-disk.img"}
    job: &tiny
      machine: {vcpus: 1, memory_mib: 256}
      guest: {user: debian}
      timeouts: {boot: 60s, cloud_init: 60s, command: 30s, total: 10m}
      commands:
        - {run: uname -s, expect_output: "/^Linux$/"}
        - {run: ". /etc/os-release && echo $ID", expect_output: tiny}
    publish: {visibility: private, properties: {os_distro: tiny, os_type: linux}}
  tiny-badsum:
    name: Tiny with a wrong digest
    feed: {kind: checksum, url: "MIRROR/badsum/CHECKSUM", arch: x86_64, artefact: "Tiny-Cloud-{version}.{arch}.qcow2"}
    job: *tiny
    publish: {visibility: private}
  debian-12:
    name: Debian 12 Bookworm (fixture)
    feed:
      kind: debian
      url: MIRROR/images/cloud/bookworm/
      arch: amd64
      artefact: debian-12-genericcloud-{arch}-{version}.qcow2
      keyring: KEYRING
    job:
      machine: {vcpus: 2, memory_mib: 1024}
      guest: {user: debian}
      checks: {required: [image, boot, ssh, hostname, metadata, cloud-init, commands]}
      timeouts: {boot: 200s, cloud_init: 100s, command: 30s, total: 25m}
      commands:
        - {run: uname -s, expect_output: "/^Linux$/"}
        - {run: ". /etc/os-release && echo $VERSION_ID", expect_output: "12"}
    publish:
      visibility: private
      glance: true
      properties: {os_distro: debian, os_version: "12", os_type: linux, hw_firmware_type: bios}
      rotation: {keep: 2, older: community}
`
