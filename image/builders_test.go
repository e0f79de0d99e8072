package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/imagevet/imagevet/internal/testenv"
)

// qcowSpec describes a handcrafted qcow2 file. The zero value (after
// defaults) is a valid empty 1 GiB qcow2 v3 laid out like qemu-img's:
// header cluster, refcount table, refcount block, L1 table.
type qcowSpec struct {
	version      uint32 // default 3
	clusterBits  uint32 // default 16
	virtualSize  uint64 // default 1 GiB
	backing      string // backing file name stored in the header cluster
	incompat     uint64
	dataFileExt  string // adds a DATA header extension
	cryptMethod  uint32
	l1Size       int64 // default: just enough for virtualSize; -1: forced 0
	headerLength uint32
	withData     bool  // one L2 table and one data cluster
	cutAt        int64 // truncate the result to this many bytes (0: no)
	extraAt      int64 // write extra at this offset (growing the file)
	extra        []byte
}

func buildQCOW2(s qcowSpec) []byte {
	if s.version == 0 {
		s.version = 3
	}
	if s.clusterBits == 0 {
		s.clusterBits = 16
	}
	if s.virtualSize == 0 {
		s.virtualSize = 1 << 30
	}
	cs := int64(1) << s.clusterBits
	perL1 := (cs / 8) * cs
	l1Size := (int64(s.virtualSize) + perL1 - 1) / perL1
	switch {
	case s.l1Size > 0:
		l1Size = s.l1Size
	case s.l1Size < 0:
		l1Size = 0
	}
	if s.headerLength == 0 {
		s.headerLength = 112
	}
	size := 3*cs + l1Size*8
	if s.withData {
		size = 6 * cs
	}
	b := make([]byte, size)
	be := binary.BigEndian
	copy(b, qcowMagic)
	be.PutUint32(b[4:], s.version)
	if s.backing != "" {
		be.PutUint64(b[8:], 1024)
		be.PutUint32(b[16:], uint32(len(s.backing)))
		copy(b[1024:], s.backing)
	}
	be.PutUint32(b[20:], s.clusterBits)
	be.PutUint64(b[24:], s.virtualSize)
	be.PutUint32(b[32:], s.cryptMethod)
	be.PutUint32(b[36:], uint32(l1Size))
	be.PutUint64(b[40:], uint64(3*cs))
	be.PutUint64(b[48:], uint64(cs))
	be.PutUint32(b[56:], 1)
	if s.version >= 3 {
		be.PutUint64(b[72:], s.incompat)
		be.PutUint32(b[96:], 4)
		be.PutUint32(b[100:], s.headerLength)
		off := int(s.headerLength)
		if s.dataFileExt != "" {
			be.PutUint32(b[off:], extDataFile)
			be.PutUint32(b[off+4:], uint32(len(s.dataFileExt)))
			copy(b[off+8:], s.dataFileExt)
			off += 8 + (len(s.dataFileExt)+7)&^7
		}
		_ = off // end marker: zero bytes already there
	}
	// Refcount table -> block at cluster 2; every used cluster has refcount 1.
	be.PutUint64(b[cs:], uint64(2*cs))
	for i := int64(0); i < (size+cs-1)/cs; i++ {
		be.PutUint16(b[2*cs+2*i:], 1)
	}
	if s.withData {
		be.PutUint64(b[3*cs:], uint64(4*cs)|1<<63)
		be.PutUint64(b[4*cs:], uint64(5*cs)|1<<63)
		for i := 5 * cs; i < 6*cs; i++ {
			b[i] = 0xab
		}
	}
	if s.extra != nil {
		if need := s.extraAt + int64(len(s.extra)); need > int64(len(b)) {
			b = append(b, make([]byte, need-int64(len(b)))...)
		}
		copy(b[s.extraAt:], s.extra)
	}
	if s.cutAt > 0 {
		b = b[:s.cutAt]
	}
	return b
}

// mbrDisk returns a raw disk of size bytes with an MBR whose partition
// entries are given as (boot flag, type, start LBA).
func mbrDisk(size int, parts ...[3]uint32) []byte {
	b := make([]byte, size)
	for i, p := range parts {
		e := b[446+16*i:]
		e[0] = byte(p[0])
		e[4] = byte(p[1])
		binary.LittleEndian.PutUint32(e[8:], p[2])
		binary.LittleEndian.PutUint32(e[12:], uint32(size/512)-p[2])
	}
	b[510], b[511] = 0x55, 0xaa
	return b
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func inspectBytes(t testing.TB, b []byte) (Info, error) {
	t.Helper()
	return Inspect(bytes.NewReader(b), int64(len(b)))
}

func inspectFile(t testing.TB, path string) (Info, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return Inspect(f, st.Size())
}

// wantRule fails unless err is an *UnsafeImageError for rule.
func wantRule(t testing.TB, err error, rule Violation) *UnsafeImageError {
	t.Helper()
	var ue *UnsafeImageError
	if !errors.As(err, &ue) {
		t.Fatalf("want *UnsafeImageError %s, got %T %v", rule, err, err)
	}
	if ue.Rule != rule {
		t.Fatalf("want rule %s, got %s (%s)", rule, ue.Rule, ue.Reason)
	}
	return ue
}

func needQemuImg(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		testenv.Missing(t, "qemu-img not installed (Debian package qemu-utils)")
	}
	return p
}

func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}
