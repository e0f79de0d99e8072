package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

const benchSize = 256 << 20

// benchFile writes a 256 MiB raw disk (MBR + random bytes) and reads it once
// so both contenders start from the page cache.
func benchFile(b *testing.B) (root, name string) {
	b.Helper()
	root = b.TempDir()
	data := mbrDisk(benchSize, [3]uint32{0x80, 0x83, 2048})
	copy(data[1<<20:], randomBytes(benchSize-(1<<20), 7))
	p := writeFile(b, root, "bench.raw", data)
	if _, err := os.ReadFile(p); err != nil {
		b.Fatal(err)
	}
	return root, "bench.raw"
}

// ingestOnce runs a full uncached Fetch (stream, hash both, sync, inspect,
// publish) and removes the result afterwards, outside the timing. It returns
// wall time and the CPU time the process used meanwhile.
func ingestOnce(b *testing.B, root, name string) (wall, cpu time.Duration) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "cache")
	s, err := NewStore(StoreConfig{Dir: dir, FileRoots: []string{root}})
	if err != nil {
		b.Fatal(err)
	}
	c0 := processCPU()
	start := time.Now()
	img, err := s.Fetch(context.Background(), Source{URL: name, Format: FormatRaw}, nil)
	wall, cpu = time.Since(start), processCPU()-c0
	if err != nil || img.Cached {
		b.Fatalf("fetch: %+v %v", img, err)
	}
	b.StopTimer()
	os.RemoveAll(dir)
	b.StartTimer()
	return wall, cpu
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sha512sumOnce(b *testing.B, path string) (wall, cpu time.Duration) {
	b.Helper()
	start := time.Now()
	cmd := exec.Command("sha512sum", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("sha512sum: %v %s", err, out)
	}
	return time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// BenchmarkIngest measures an uncached ingest of a 256 MiB file source.
func BenchmarkIngest(b *testing.B) {
	root, name := benchFile(b)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for range b.N {
		ingestOnce(b, root, name)
	}
}

// BenchmarkSha512sum is the baseline: coreutils sha512sum on the same file.
func BenchmarkSha512sum(b *testing.B) {
	if _, err := exec.LookPath("sha512sum"); err != nil {
		b.Skip("sha512sum not installed")
	}
	root, name := benchFile(b)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for range b.N {
		sha512sumOnce(b, filepath.Join(root, name))
	}
}

// BenchmarkIngestVsSha512sum alternates both on the same file in the same
// run and reports the ratio of their median wall times (target: <= 1.2),
// and of their median CPU times (which a busy machine distorts less).
func BenchmarkIngestVsSha512sum(b *testing.B) {
	if _, err := exec.LookPath("sha512sum"); err != nil {
		b.Skip("sha512sum not installed")
	}
	root, name := benchFile(b)
	var ingWall, ingCPU, sumWall, sumCPU []time.Duration
	b.SetBytes(benchSize)
	b.ResetTimer()
	for range b.N {
		w, c := sha512sumOnce(b, filepath.Join(root, name))
		sumWall, sumCPU = append(sumWall, w), append(sumCPU, c)
		w, c = ingestOnce(b, root, name)
		ingWall, ingCPU = append(ingWall, w), append(ingCPU, c)
	}
	b.StopTimer()
	b.ReportMetric(median(ingWall).Seconds(), "ingest-s")
	b.ReportMetric(median(sumWall).Seconds(), "sha512sum-s")
	b.ReportMetric(float64(median(ingWall))/float64(median(sumWall)), "ratio")
	b.ReportMetric(float64(median(ingCPU))/float64(median(sumCPU)), "cpu-ratio")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkFetchCached measures a cache hit by checksum: the part of a job's
// setup time this package owns when the image is already cached.
func BenchmarkFetchCached(b *testing.B) {
	root := b.TempDir()
	ti := newTestImage()
	writeFile(b, root, "img.qcow2", ti.data)
	s := newStore(b, root)
	src := Source{URL: "img.qcow2", Format: FormatQCOW2, Checksum: "sha512:" + ti.sha512}
	if _, err := s.Fetch(context.Background(), src, nil); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		img, err := s.Fetch(context.Background(), src, nil)
		if err != nil || !img.Cached {
			b.Fatalf("%+v %v", img, err)
		}
	}
}

// BenchmarkOverlay measures creating a job's qcow2 overlay (qemu-img under
// prlimit) over a cached base.
func BenchmarkOverlay(b *testing.B) {
	needQemuImg(b)
	root := b.TempDir()
	writeFile(b, root, "img.qcow2", newTestImage().data)
	s := newStore(b, root)
	base, err := s.Fetch(context.Background(), Source{URL: "img.qcow2", Format: FormatQCOW2}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ov := filepath.Join(b.TempDir(), "overlay.qcow2")
	b.ResetTimer()
	for range b.N {
		if err := s.Overlay(context.Background(), base, ov); err != nil {
			b.Fatal(err)
		}
	}
}
