package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/keyring"
)

// badInput is one hostile or broken input and the one error it must produce.
type badInput struct {
	name    string
	job     string // job document; {{ROOT}} is the suite's image directory
	keyring bool   // run on a worker that verifies checksum lists
	mutate  bool   // the image file changes while it is read
	verdict jobs.Verdict
	check   string // failed_check ("" for a document that never decodes)
	want    string // the error names the field or file: this must be in the reason
}

// qcow2Header writes a bare qcow2 v3 header with the given tables: enough for
// an inspector to judge, nothing a hypervisor could boot.
func qcow2Header(virtual uint64, l1Size uint32, l1Off, rcOff uint64, rcClusters uint32) []byte {
	b := make([]byte, 3<<16)
	be := binary.BigEndian
	copy(b, "QFI\xfb")
	be.PutUint32(b[4:], 3)           // version
	be.PutUint32(b[20:], 16)         // cluster bits
	be.PutUint64(b[24:], virtual)    // size
	be.PutUint32(b[36:], l1Size)     // l1 size
	be.PutUint64(b[40:], l1Off)      // l1 table offset
	be.PutUint64(b[48:], rcOff)      // refcount table offset
	be.PutUint32(b[56:], rcClusters) // refcount table clusters
	be.PutUint32(b[96:], 4)          // refcount order
	be.PutUint32(b[100:], 104)       // header length
	return b
}

// luksHeader returns a LUKS1 container header (magic, version, cipher, hash,
// payload offset) followed by zeros: what a vendor's encrypted raw disk starts
// with.
func luksHeader() []byte {
	b := make([]byte, 2<<20)
	copy(b, "LUKS\xba\xbe")
	binary.BigEndian.PutUint16(b[6:], 1)
	copy(b[8:], "aes")
	copy(b[40:], "xts-plain64")
	copy(b[72:], "sha256")
	binary.BigEndian.PutUint32(b[104:], 4096) // payload offset, sectors
	binary.BigEndian.PutUint32(b[108:], 64)   // key bytes
	return b
}

// suiteImages writes the hostile images and checksum lists into dir.
func suiteImages(t *testing.T, dir string, alice, stranger *openpgp.Entity) {
	t.Helper()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	qemuImg := func(args ...string) {
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v: %s", args, err, out)
		}
	}
	qemuImg("create", "-q", "-f", "vmdk", filepath.Join(dir, "vmdk.qcow2"), "16M")
	qemuImg("create", "-q", "-f", "vpc", filepath.Join(dir, "vhd.qcow2"), "16M")
	// A LUKS1 header written by hand: qemu-img's luks creation times PBKDF2 on
	// the host's CPU clock and refuses ("Unable to get accurate CPU usage") where
	// that clock is coarse.
	write("luks.qcow2", luksHeader())
	iso := make([]byte, 64<<10)
	copy(iso[0x8001:], "CD001")
	write("iso.qcow2", iso)
	write("hugel1.qcow2", qcow2Header(1<<30, 1<<28, 3<<16, 1<<16, 1))
	write("hugerefcount.qcow2", qcow2Header(1<<30, 16, 2<<16, 1<<16, 1<<30))
	// A sparse raw file of 2 TiB: nothing may read it through.
	f, err := os.Create(filepath.Join(dir, "absurd.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2 << 40); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// A small valid raw disk for the image that changes while it is read.
	disk := make([]byte, 4<<20)
	disk[510], disk[511] = 0x55, 0xaa
	copy(disk[446:], []byte{0x80, 0, 0, 0, 0x83})
	write("changing.raw", disk)

	// Checksum lists, all about the fixture unsafe-empty.qcow2 (the empty file),
	// so that a list that parses leads to a rejected image, never to a boot.
	empty := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	write("SUMS.badline", []byte("SHA256 (unsafe-empty.qcow2) = nothex\n"))
	write("SUMS.missing", []byte(empty+"  other.qcow2\n"))
	write("SUMS.two", []byte(empty+"  unsafe-empty.qcow2\n"+strings.Repeat("0", 64)+"  unsafe-empty.qcow2\n"))
	write("SUMS.sha1", []byte(strings.Repeat("a", 40)+"  unsafe-empty.qcow2\n"))
	write("SUMS.crlf", []byte("# vendor list\r\n"+empty+"  unsafe-empty.qcow2\r\n"))
	sums := []byte(empty + "  unsafe-empty.qcow2\n")
	write("SUMS", sums)
	sign := func(e *openpgp.Entity, data []byte) []byte {
		var buf bytes.Buffer
		if err := openpgp.ArmoredDetachSign(&buf, e, bytes.NewReader(data), nil); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	write("SUMS.asc", sign(alice, sums))
	write("SUMS.stranger.asc", sign(stranger, sums))
	write("SUMS.tampered", []byte(strings.Repeat("1", 64)+"  unsafe-empty.qcow2\n"))
	write("SUMS.garbage.asc", []byte("-----BEGIN PGP SIGNATURE-----\n\n!!!!\n-----END PGP SIGNATURE-----\n"))
	var kr bytes.Buffer
	if err := alice.Serialize(&kr); err != nil {
		t.Fatal(err)
	}
	write("keyring.gpg", kr.Bytes())
}

// mutatingImages is the real store, except that the file named by path is
// rewritten as soon as the store reports reading progress: a source that
// changes while it is being hashed.
type mutatingImages struct {
	*image.Store
	path string
	once sync.Once
}

func (m *mutatingImages) Fetch(ctx context.Context, src image.Source, progress func(done, total int64)) (*image.Image, error) {
	return m.Store.Fetch(ctx, src, func(done, total int64) {
		m.once.Do(func() {
			f, err := os.OpenFile(m.path, os.O_WRONLY, 0)
			if err == nil {
				f.WriteAt([]byte("changed"), 1<<20)
				f.Close()
			}
		})
		progress(done, total)
	})
}

// TestIntegrationBadInputs feeds the worker every kind of bad input the issue
// lists and holds each to the one clear error it must produce: a bad job names
// the field or file, an unsafe image fails the image check, nothing panics,
// nothing reaches libvirt, and the worker still vets the next job (tiny passes).
// RELIABILITY.md, "Bad inputs", lists the same cases.
func TestIntegrationBadInputs(t *testing.T) {
	env := newIntegrationEnv(t)
	dir, err := os.MkdirTemp("/var/tmp", "imagevet-badinput-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	alice, _ := openpgp.NewEntity("alice", "", "alice@example.org", nil)
	stranger, _ := openpgp.NewEntity("stranger", "", "stranger@example.org", nil)
	suiteImages(t, dir, alice, stranger)
	kr, err := keyring.Load(filepath.Join(dir, "keyring.gpg"))
	if err != nil {
		t.Fatal(err)
	}
	newStore := func(k *keyring.Keyring) *image.Store {
		s, err := image.NewStore(image.StoreConfig{Dir: filepath.Join(env.cfg.StateDir, "cache"),
			FileRoots: []string{env.fixtures, dir}, Keyring: k, MaxVirtualSize: 64 << 30})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	plain, signing := newStore(nil), newStore(kr)
	runner := func(imgs Images) *Runner {
		r := NewRunner(env.cfg, imgs, env.hv, nil)
		t.Cleanup(r.Close)
		return r
	}
	plainRunner, signingRunner := runner(plain), runner(signing)
	mutating := runner(&mutatingImages{Store: plain, path: filepath.Join(dir, "changing.raw")})

	// A valid job the cases start from.
	good := func(image, extra string) string {
		return `{"version":1,"id":"bad","image":` + image + `,"guest":{"user":"debian"}` + extra + `}`
	}
	img := `{"source":"unsafe-empty.qcow2","format":"qcow2","checksum":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}`
	// file names an image with its own digest pinned (a sparse file a made-up one:
	// it must be refused before anything reads it).
	file := func(path, format string) string {
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		sum := strings.Repeat("0", 64)
		if st, err := os.Stat(path); err == nil && st.Size() < 1<<30 {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			sum = fmt.Sprintf("%x", sha256.Sum256(data))
		}
		return fmt.Sprintf(`{"source":"%s","format":"%s","checksum":"sha256:%s"}`, path, format, sum)
	}
	fixture := func(name string) string { return file(filepath.Join(env.fixtures, name), "qcow2") }
	sumsJob := func(list, sig string) string {
		s := fmt.Sprintf(`{"source":"unsafe-empty.qcow2","format":"qcow2","sums_url":"%s/%s"`, dir, list)
		if sig != "" {
			s += fmt.Sprintf(`,"sums_signature":"%s/%s"`, dir, sig)
		}
		return s + "}"
	}
	E, F := jobs.VerdictError, jobs.VerdictFail
	doc := ""
	cases := []badInput{
		// Job documents.
		{name: "not JSON", job: `{"version":1,`, verdict: E, check: doc, want: "(document)"},
		{name: "empty document", job: ``, verdict: E, check: doc, want: "(document): empty"},
		{name: "trailing data", job: good(img, ``) + ` {}`, verdict: E, check: doc, want: "(document): not valid JSON (line 1): invalid character '{' after top-level value"},
		{name: "unknown field", job: good(img, `,"bogus":1`), verdict: E, check: doc, want: "bogus: unknown field"},
		{name: "unknown nested field", job: good(`{"source":"x.qcow2","format":"qcow2","sha":"1"}`, ``), verdict: E, check: doc, want: "image.sha: unknown field"},
		{name: "version of wrong type", job: `{"version":"1","id":"bad"}`, verdict: E, check: doc, want: "version"},
		{name: "unsupported version", job: `{"version":99,"id":"bad"}`, verdict: E, check: doc, want: "version: must be 1 (got 99)"},
		{name: "vcpus of wrong type", job: good(img, `,"machine":{"vcpus":"two"}`), verdict: E, check: doc, want: "machine.vcpus"},
		{name: "vcpus out of range", job: good(img, `,"machine":{"vcpus":1000}`), verdict: E, check: doc, want: "machine.vcpus"},
		{name: "memory out of range", job: good(img, `,"machine":{"memory_mib":1}`), verdict: E, check: doc, want: "machine.memory_mib"},
		{name: "firmware unknown", job: good(img, `,"machine":{"firmware":"coreboot"}`), verdict: E, check: doc, want: "machine.firmware"},
		{name: "id path traversal", job: strings.Replace(good(img, ``), `"id":"bad"`, `"id":"../../etc/passwd"`, 1), verdict: E, check: doc, want: "id:"},
		{name: "id shell", job: strings.Replace(good(img, ``), `"id":"bad"`, `"id":"$(reboot)"`, 1), verdict: E, check: doc, want: "id:"},
		{name: "id oversized", job: strings.Replace(good(img, ``), `"id":"bad"`, `"id":"`+strings.Repeat("a", 300)+`"`, 1), verdict: E, check: doc, want: "id:"},
		{name: "hostname hostile", job: good(img, `,"guest":{"user":"debian","hostname":"a b;rm -rf /"}`), verdict: E, check: doc, want: "guest"},
		{name: "user missing", job: `{"version":1,"id":"bad","image":` + img + `}`, verdict: E, check: doc, want: "guest.user: required"},
		{name: "cloud_config oversized", job: good(img, `,"cloud_config":"`+strings.Repeat("a", 300<<10)+`"`), verdict: E, check: doc, want: "cloud_config: larger than 256 KiB"},
		{name: "cloud_config oversized beyond the document cap", job: good(img, `,"cloud_config":"`+strings.Repeat("a", 2<<20)+`"`), verdict: E, check: doc, want: "(document): larger than 1048576 bytes"},
		{name: "timeout above the maximum", job: good(img, `,"timeouts":{"total":"8760h"}`), verdict: E, check: "job", want: "timeouts.total: 8760h0m0s exceeds this worker's maximum 4h0m0s"},
		{name: "timeout not a duration", job: good(img, `,"timeouts":{"boot":"soon"}`), verdict: E, check: doc, want: "timeouts.boot"},
		{name: "timeout negative", job: good(img, `,"timeouts":{"boot":"-5s"}`), verdict: E, check: doc, want: "timeouts.boot"},
		{name: "format unknown", job: good(`{"source":"x.qcow2","format":"vmdk","checksum":"sha256:`+strings.Repeat("0", 64)+`"}`, ``), verdict: E, check: doc, want: "image.format"},
		{name: "checksum md5", job: good(`{"source":"x.qcow2","format":"qcow2","checksum":"md5:`+strings.Repeat("0", 32)+`"}`, ``), verdict: E, check: doc, want: "image.checksum"},
		{name: "source scheme", job: good(`{"source":"ftp://example.org/x.qcow2","format":"qcow2","checksum":"sha256:`+strings.Repeat("0", 64)+`"}`, ``), verdict: E, check: doc, want: "image.source"},
		{name: "source outside roots", job: good(file("/etc/passwd", "raw"), ``), verdict: E, check: jobs.CheckImage, want: "image.source: \"/etc/passwd\" resolves to \"/etc/passwd\", outside the allowed file roots"},
		{name: "bad expect_output regex", job: good(img, `,"commands":[{"run":"true","expect_output":"/[/"}]`), verdict: E, check: doc, want: "commands[0].expect_output"},

		// Images: the unsafe fixtures, other formats labelled qcow2, hostile tables.
		{name: "qcow2 with backing file", job: good(fixture("unsafe-backing.qcow2"), ``), verdict: F, check: jobs.CheckImage, want: "backing file"},
		{name: "qcow2 with external data file", job: good(fixture("unsafe-datafile.qcow2"), ``), verdict: F, check: jobs.CheckImage, want: "data file"},
		{name: "raw labelled qcow2", job: good(fixture("unsafe-rawasqcow2.qcow2"), ``), verdict: F, check: jobs.CheckImage, want: "unsafe-rawasqcow2.qcow2"},
		{name: "truncated qcow2", job: good(fixture("unsafe-truncated.qcow2"), ``), verdict: F, check: jobs.CheckImage, want: "unsafe-truncated.qcow2"},
		{name: "empty file", job: good(img, ``), verdict: F, check: jobs.CheckImage, want: "unsafe-empty.qcow2"},
		{name: "random bytes", job: good(fixture("unsafe-random.qcow2"), ``), verdict: F, check: jobs.CheckImage, want: "unsafe-random.qcow2"},
		{name: "vmdk labelled qcow2", job: good(file("vmdk.qcow2", "qcow2"), ``), verdict: F, check: jobs.CheckImage, want: "vmdk.qcow2"},
		{name: "vhd labelled qcow2", job: good(file("vhd.qcow2", "qcow2"), ``), verdict: F, check: jobs.CheckImage, want: "vhd.qcow2"},
		{name: "iso labelled qcow2", job: good(file("iso.qcow2", "qcow2"), ``), verdict: F, check: jobs.CheckImage, want: "iso.qcow2"},
		{name: "luks labelled qcow2", job: good(file("luks.qcow2", "qcow2"), ``), verdict: F, check: jobs.CheckImage, want: "luks.qcow2"},
		{name: "qcow2 huge L1 table", job: good(file("hugel1.qcow2", "qcow2"), ``), verdict: F, check: jobs.CheckImage, want: "hugel1.qcow2"},
		{name: "qcow2 huge refcount table", job: good(file("hugerefcount.qcow2", "qcow2"), ``), verdict: F, check: jobs.CheckImage, want: "hugerefcount.qcow2"},
		{name: "sparse raw of 2 TiB", job: good(file("absurd.raw", "raw"), ``), verdict: F, check: jobs.CheckImage, want: "absurd.raw"},
		{name: "file changes while hashed", job: good(file("changing.raw", "raw"), ``), mutate: true, verdict: E, check: jobs.CheckImage, want: "changed while it was read"},

		// Checksum lists.
		{name: "sums malformed line", job: good(sumsJob("SUMS.badline", ""), ``), verdict: E, check: jobs.CheckImage, want: "image.sums_url: " + dir + "/SUMS.badline: line 1"},
		{name: "sums missing entry", job: good(sumsJob("SUMS.missing", ""), ``), verdict: E, check: jobs.CheckImage, want: "image.sums_name: \"unsafe-empty.qcow2\" not listed in " + dir + "/SUMS.missing"},
		{name: "sums two entries", job: good(sumsJob("SUMS.two", ""), ``), verdict: E, check: jobs.CheckImage, want: "two different sha256 digests for \"unsafe-empty.qcow2\""},
		{name: "sums wrong algorithm length", job: good(sumsJob("SUMS.sha1", ""), ``), verdict: E, check: jobs.CheckImage, want: "checksum algorithm \"sha1\": want sha256 or sha512"},
		{name: "sums CRLF parsed (image then judged)", job: good(sumsJob("SUMS.crlf", ""), ``), verdict: F, check: jobs.CheckImage, want: "unsafe-empty.qcow2"},
		{name: "sums over plain http", job: good(`{"source":"unsafe-empty.qcow2","format":"qcow2","sums_url":"http://127.0.0.1:9/SHA256SUMS"}`, ``), verdict: E, check: jobs.CheckImage, want: "image.sums_url: http://127.0.0.1:9/SHA256SUMS: a checksum list over plain http proves nothing"},

		// Signatures.
		{name: "signature but no keyring", job: good(sumsJob("SUMS", "SUMS.asc"), ``), verdict: E, check: jobs.CheckImage, want: "image.sums_signature: this worker has no OpenPGP keyring"},
		{name: "keyring but unsigned list", job: good(sumsJob("SUMS", ""), ``), keyring: true, verdict: E, check: jobs.CheckImage, want: "image.sums_signature: required"},
		{name: "bad signature", job: good(sumsJob("SUMS.tampered", "SUMS.asc"), ``), keyring: true, verdict: F, check: jobs.CheckImage, want: "SUMS.tampered: signature: bad signature"},
		{name: "signature by unknown key", job: good(sumsJob("SUMS", "SUMS.stranger.asc"), ``), keyring: true, verdict: F, check: jobs.CheckImage, want: "signed by a key not in the keyring"},
		{name: "malformed signature", job: good(sumsJob("SUMS", "SUMS.garbage.asc"), ``), keyring: true, verdict: F, check: jobs.CheckImage, want: "malformed OpenPGP data"},
		{name: "signature file missing", job: good(sumsJob("SUMS", "nope.asc"), ``), keyring: true, verdict: E, check: jobs.CheckImage, want: "image.sums_signature: \"" + dir + "/nope.asc\": no such file"},
		{name: "good signature (image then judged)", job: good(sumsJob("SUMS", "SUMS.asc"), ``), keyring: true, verdict: F, check: jobs.CheckImage, want: "unsafe-empty.qcow2"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			job, err := jobs.DecodeJob([]byte(c.job))
			var res jobs.Result
			switch {
			case err != nil:
				// What the daemon reports for a job that does not decode.
				if class, retry := Classify(err); class != ClassJob || retry {
					t.Errorf("decode error classified %s retry=%v", class, retry)
				}
				res = jobs.Result{Verdict: jobs.VerdictError, Reason: err.Error()}
			default:
				job.ID = fmt.Sprintf("bad-%d", i)
				r := plainRunner
				switch {
				case c.keyring:
					r = signingRunner
				case c.mutate:
					r = mutating
				}
				res = r.Run(context.Background(), job, 1, nil)
				if n := env.hv.bootsOf(job.ID); n != 0 {
					t.Errorf("reached libvirt %d times", n)
				}
			}
			if res.Verdict != c.verdict || (c.check != doc && res.FailedCheck != c.check) || !strings.Contains(res.Reason, c.want) {
				t.Errorf("got %s/%s %q\nwant %s/%s containing %q", res.Verdict, res.FailedCheck, res.Reason, c.verdict, c.check, c.want)
			}
			if strings.Contains(res.Reason, "internal error") {
				t.Errorf("panicked: %s", res.Reason)
			}
			if res.Verdict == jobs.VerdictError && res.Retryable != c.mutate {
				t.Errorf("retryable = %v", res.Retryable)
			}
			t.Logf("%-36s %s/%s %s", c.name, res.Verdict, res.FailedCheck, firstN(res.Reason, 160))
		})
	}
	if len(cases) < 40 {
		t.Fatalf("only %d bad inputs", len(cases))
	}
	// Still serving: the next good job passes (boot timeout raised for a host
	// busy emulating other guests).
	job, _ := loadSample(t, "tiny.json")
	job.Timeouts.Boot, job.Timeouts.Total = jobs.Duration(2*time.Minute), jobs.Duration(10*time.Minute)
	if res := plainRunner.Run(context.Background(), job, 1, nil); res.Verdict != jobs.VerdictPass {
		t.Fatalf("after the bad inputs, tiny: %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	t.Logf("%d bad inputs, then tiny passed", len(cases))
}

func firstN(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
