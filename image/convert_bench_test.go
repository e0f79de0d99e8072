package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// convertBenchQCOW2 returns a root holding the qcow2 the conversion benchmark
// converts: $IMAGEVET_BENCH_QCOW2 when set (a real image, e.g. the debian12
// fixture), else a generated 1 GiB disk holding 320 MiB of random data in five
// extents between zeros, the way an OS image's data lies in its partition.
func convertBenchQCOW2(b *testing.B) (root, name string) {
	b.Helper()
	needQemuImg(b)
	if p := os.Getenv("IMAGEVET_BENCH_QCOW2"); p != "" {
		return filepath.Dir(p), filepath.Base(p)
	}
	root = b.TempDir()
	raw := filepath.Join(b.TempDir(), "bench.raw")
	f, err := os.Create(raw)
	if err != nil {
		b.Fatal(err)
	}
	const size = 1 << 30
	if _, err := f.Write(mbrDisk(1<<20, [3]uint32{0x80, 0x83, 2048})); err != nil {
		b.Fatal(err)
	}
	for i := range 5 {
		if _, err := f.WriteAt(randomBytes(64<<20, uint64(i+1)), int64(i)*(200<<20)+(8<<20)); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	run(b, "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, filepath.Join(root, "bench.qcow2"))
	os.Remove(raw)
	return root, "bench.qcow2"
}

// childrenCPU is the CPU time of the waited-for child processes (qemu-img).
func childrenCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkConvertVsQemuImg alternates, on the same qcow2 (already in the
// cache, as after a job's fetch), the worker's conversion to raw (Fetch with
// ConvertTo: qemu-img convert, both digests of the result, inspection,
// publication in the cache) and a plain `qemu-img convert -O raw` of the same
// file, and reports their median wall times, the ratio, and the CPU ratio
// (this process and its children). A sparse input converts in a fraction of
// the time its raw takes to hash, and the worker must hash every byte of the
// raw (its sha512 is the os_hash_value), so it also reports the plain
// conversion followed by `sha512sum` of its output (ratio-vs-hashed).
func BenchmarkConvertVsQemuImg(b *testing.B) {
	root, name := convertBenchQCOW2(b)
	s := newStore(b, root)
	ctx := context.Background()
	vendor, err := s.Fetch(ctx, Source{URL: name, Format: FormatQCOW2}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer vendor.Release()
	src := Source{URL: name, Format: FormatQCOW2, Checksum: "sha512:" + vendor.SHA512, ConvertTo: FormatRaw}
	out := filepath.Join(b.TempDir(), "plain.raw")
	var convWall, convCPU, plainWall, plainCPU, hashedWall []time.Duration
	b.ResetTimer()
	for range b.N {
		c0, start := processCPU()+childrenCPU(), time.Now()
		cmd := exec.Command("qemu-img", "convert", "-q", "-f", FormatQCOW2, "-O", FormatRaw, vendor.Path, out)
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("qemu-img convert: %v %s", err, o)
		}
		plainWall, plainCPU = append(plainWall, time.Since(start)), append(plainCPU, processCPU()+childrenCPU()-c0)
		// What it takes to know the os_hash_value of that raw: sha512sum of it.
		w, _ := sha512sumOnce(b, out)
		hashedWall = append(hashedWall, plainWall[len(plainWall)-1]+w)

		c0, start = processCPU()+childrenCPU(), time.Now()
		img, err := s.Fetch(ctx, src, nil)
		if err != nil || img.Cached || img.Vendor == nil {
			b.Fatalf("conversion: %+v %v", img, err)
		}
		convWall, convCPU = append(convWall, time.Since(start)), append(convCPU, processCPU()+childrenCPU()-c0)

		b.StopTimer()
		img.Release()
		os.Remove(out)
		for _, p := range []string{img.Path, s.factsPath("sha256", img.SHA256, FormatRaw), s.factsPath("sha512", img.SHA512, FormatRaw),
			s.conversionPath(digest{Algo: "sha256", Hex: vendor.SHA256}, FormatQCOW2, FormatRaw),
			s.conversionPath(digest{Algo: "sha512", Hex: vendor.SHA512}, FormatQCOW2, FormatRaw)} {
			if err := os.Remove(p); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(median(convWall).Seconds(), "convert-s")
	b.ReportMetric(median(plainWall).Seconds(), "qemu-img-s")
	b.ReportMetric(float64(median(convWall))/float64(median(plainWall)), "ratio")
	b.ReportMetric(float64(median(convCPU))/float64(median(plainCPU)), "cpu-ratio")
	b.ReportMetric(median(hashedWall).Seconds(), "qemu-img+sha512sum-s")
	b.ReportMetric(float64(median(convWall))/float64(median(hashedWall)), "ratio-vs-hashed")
}
