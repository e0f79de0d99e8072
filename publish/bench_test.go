package publish

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/imagevet/imagevet/image"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/publish/glancetest"
)

// benchChildEnv carries a benchChild's settings (JSON) to the re-executed test binary.
const benchChildEnv = "IMAGEVET_PUBLISH_BENCH_CHILD"

// benchChild is what one measured publication needs, passed to a child process so
// that its peak RSS is the publisher's alone.
type benchChild struct {
	CloudsFile string      `json:"clouds_file"`
	CacheDir   string      `json:"cache_dir"`
	Root       string      `json:"root"`
	Method     string      `json:"method"`
	Result     jobs.Result `json:"result"`
}

// TestPublishBenchChild is the child side of BenchmarkPublishRaw2GiB: it publishes
// one result and exits. Without its variable it does nothing.
func TestPublishBenchChild(t *testing.T) {
	data := os.Getenv(benchChildEnv)
	if data == "" {
		t.Skip("the child process of BenchmarkPublishRaw2GiB")
	}
	var c benchChild
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store, err := image.NewStore(image.StoreConfig{Dir: c.CacheDir, FileRoots: []string{c.Root}})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := Login(ctx, Credentials{Cloud: glancetest.CloudName, CloudsFile: c.CloudsFile})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Cloud: cl, Store: store, UploadMethod: c.Method, PollEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := p.Publish(ctx, c.Result, false); err != nil || out.Status != StatusPublished {
		t.Fatalf("%+v %v", out, err)
	}
}

// BenchmarkPublishRaw2GiB publishes a 2 GiB raw disk (MBR, 512 MiB of random data,
// the rest a hole, as a converted cloud image is) to the loopback Glance with
// imagevet's publisher (plain upload, and glance-direct import) and with
// `openstack image create --file`, alternated, each in its own process: wall time and
// peak RSS of that process. Needs IMAGEVET_INTEGRATION=1 (Keystone and Glance) and
// python3-openstackclient; run with -bench PublishRaw2GiB -benchtime 1x.
func BenchmarkPublishRaw2GiB(b *testing.B) {
	if os.Getenv("IMAGEVET_INTEGRATION") != "1" {
		b.Skip("starts Keystone and Glance: set IMAGEVET_INTEGRATION=1")
	}
	if _, err := exec.LookPath("openstack"); err != nil {
		b.Skip("python3-openstackclient not installed: " + err.Error())
	}
	cloud := glancetest.Start(b)
	root := b.TempDir()
	path := filepath.Join(root, "bench.raw")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	// Written in small pieces: a child's peak RSS counts its parent's at the fork.
	mbr := make([]byte, 1<<20)
	copy(mbr[446:], []byte{0x80, 0, 0, 0, 0x83, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0x40, 0}) // one partition from sector 2048
	mbr[510], mbr[511] = 0x55, 0xAA
	if _, err := f.Write(mbr); err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, 511<<20); err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(2 << 30); err != nil {
		b.Fatal(err)
	}
	f.Close()
	h256, h512 := sha256.New(), sha512.New()
	rf, _ := os.Open(path)
	if _, err := io.Copy(io.MultiWriter(h256, h512), rf); err != nil {
		b.Fatal(err)
	}
	rf.Close()
	facts := &jobs.ImageFacts{Size: 2 << 30, VirtualSize: 2 << 30, Format: jobs.FormatRaw, SHA256: hex.EncodeToString(h256.Sum(nil)),
		OSHashAlgo: "sha512", OSHashValue: hex.EncodeToString(h512.Sum(nil)), Source: path}
	cache := filepath.Join(b.TempDir(), "cache")
	// The worker's cache holds the vetted file already, as in production.
	store, err := image.NewStore(image.StoreConfig{Dir: cache, FileRoots: []string{root}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := store.Fetch(ctx, image.Source{URL: path, Format: jobs.FormatRaw, Checksum: "sha512:" + facts.OSHashValue}, nil); err != nil {
		b.Fatal(err)
	}
	c, err := Login(ctx, Credentials{Cloud: glancetest.CloudName, CloudsFile: cloud.CloudsFile})
	if err != nil {
		b.Fatal(err)
	}
	clean := func() {
		pages, err := images.List(c.Image, images.ListOpts{}).AllPages(ctx)
		if err != nil {
			b.Fatal(err)
		}
		all, _ := images.ExtractImages(pages)
		for _, im := range all {
			_ = images.Delete(ctx, c.Image, im.ID).ExtractErr()
		}
	}
	measure := func(cmd *exec.Cmd) (time.Duration, int64) {
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", cmd.Args, err, out)
		}
		wall := time.Since(start)
		return wall, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
	}
	type stat struct {
		wall time.Duration
		rss  int64
		n    int
	}
	stats := map[string]*stat{}
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for i := range 2 * b.N {
		for _, who := range []string{"imagevet upload", "imagevet glance-direct", "openstack image create"} {
			clean()
			var cmd *exec.Cmd
			if strings.HasPrefix(who, "imagevet") {
				method := UploadPlain
				if strings.HasSuffix(who, "glance-direct") {
					method = UploadImport
				}
				r := passed(fmt.Sprintf("bench-%d-%s", i, method), "r1", day, facts, nil)
				child, _ := json.Marshal(benchChild{CloudsFile: cloud.CloudsFile, CacheDir: cache, Root: root, Method: method, Result: r})
				cmd = exec.Command(os.Args[0], "-test.run=^TestPublishBenchChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), benchChildEnv+"="+string(child))
			} else {
				cmd = exec.Command("openstack", "--os-cloud", glancetest.CloudName, "image", "create", "--file", path,
					"--disk-format", "raw", "--container-format", "bare", "--private", "bench-cli")
				cmd.Env = append(os.Environ(), "OS_CLIENT_CONFIG_FILE="+cloud.CloudsFile)
			}
			wall, rss := measure(cmd)
			s := stats[who]
			if s == nil {
				s = &stat{}
				stats[who] = s
			}
			s.wall += wall
			s.rss = max(s.rss, rss)
			s.n++
			b.Logf("%-24s %6.1f s  peak RSS %4d MiB", who, wall.Seconds(), rss>>10)
		}
	}
	cli := stats["openstack image create"]
	for _, who := range []string{"imagevet upload", "imagevet glance-direct", "openstack image create"} {
		s := stats[who]
		avg := s.wall / time.Duration(s.n)
		b.Logf("%-24s mean %6.1f s (%.2fx the CLI)  peak RSS %4d MiB (this benchmark's own: %d MiB)", who, avg.Seconds(),
			float64(s.wall)/float64(cli.wall), s.rss>>10, selfRSS()>>10)
		b.ReportMetric(avg.Seconds(), strings.ReplaceAll(who, " ", "_")+"_s")
	}
}

// selfRSS is this process's peak RSS in KiB: the floor of every child's figure.
func selfRSS() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss
}
