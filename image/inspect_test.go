package image

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInspectHandcraftedQCOW2(t *testing.T) {
	const cap64G = 64 << 30
	cs := int64(1 << 16)
	tests := []struct {
		name    string
		spec    qcowSpec
		rule    Violation // "" = accepted by Inspect and Check
		inCheck bool      // violation comes from Check, not Inspect
	}{
		{name: "valid empty v3", spec: qcowSpec{}},
		{name: "valid v2", spec: qcowSpec{version: 2}},
		{name: "valid with data", spec: qcowSpec{withData: true}},
		{name: "valid 512-byte clusters", spec: qcowSpec{clusterBits: 9, virtualSize: 1 << 20}},
		{name: "valid 2 MiB clusters", spec: qcowSpec{clusterBits: 21}},
		{name: "dirty bit is fine", spec: qcowSpec{incompat: incompatDirty}},
		{name: "backing file", spec: qcowSpec{backing: "/etc/passwd"}, rule: ViolationBackingFile},
		{name: "backing file on v2", spec: qcowSpec{version: 2, backing: "base.img"}, rule: ViolationBackingFile},
		{name: "data-file bit", spec: qcowSpec{incompat: incompatDataFile}, rule: ViolationDataFile},
		{name: "data-file extension without bit", spec: qcowSpec{dataFileExt: "/dev/sda"}, rule: ViolationDataFile},
		{name: "data-file bit and extension", spec: qcowSpec{incompat: incompatDataFile, dataFileExt: "/etc/shadow"}, rule: ViolationDataFile},
		{name: "unknown incompatible bit 5", spec: qcowSpec{incompat: 1 << 5}, rule: ViolationUnknownFeature},
		{name: "unknown incompatible bit 63", spec: qcowSpec{incompat: 1 << 63}, rule: ViolationUnknownFeature},
		{name: "corrupt bit", spec: qcowSpec{incompat: incompatCorrupt}, rule: ViolationCorrupt},
		{name: "encrypted aes", spec: qcowSpec{cryptMethod: 1}, rule: ViolationEncrypted},
		{name: "zstd bit without type", spec: qcowSpec{incompat: incompatCompress}, rule: ViolationBadHeader},
		{name: "huge virtual size", spec: qcowSpec{virtualSize: 1 << 40}, rule: ViolationVirtualSize, inCheck: true},
		{name: "absurd virtual size", spec: qcowSpec{virtualSize: 1 << 63, l1Size: 1}, rule: ViolationBadHeader},
		{name: "version 1", spec: qcowSpec{version: 1}, rule: ViolationFormatMismatch, inCheck: true},
		{name: "version 4", spec: qcowSpec{version: 4}, rule: ViolationBadHeader},
		{name: "cluster bits 8", spec: qcowSpec{clusterBits: 8}, rule: ViolationBadHeader},
		{name: "cluster bits 30", spec: qcowSpec{clusterBits: 22, virtualSize: 1 << 20}, rule: ViolationBadHeader},
		{name: "header length too short", spec: qcowSpec{headerLength: 96}, rule: ViolationBadHeader},
		{name: "L1 too small for virtual size", spec: qcowSpec{virtualSize: 4 << 30, l1Size: 1}, rule: ViolationBadHeader},
		{name: "no L1 for non-empty disk", spec: qcowSpec{l1Size: -1}, rule: ViolationBadHeader},
		{name: "header truncated at 50 bytes", spec: qcowSpec{cutAt: 50}, rule: ViolationTruncated},
		{name: "v3 header truncated at 90 bytes", spec: qcowSpec{cutAt: 90}, rule: ViolationTruncated},
		{name: "cut before refcount table", spec: qcowSpec{cutAt: cs}, rule: ViolationTruncated},
		{name: "cut inside refcount block", spec: qcowSpec{cutAt: 2*cs + 100}, rule: ViolationTruncated},
		{name: "cut inside L1 table", spec: qcowSpec{cutAt: 3*cs + 8}, rule: ViolationTruncated},
		{name: "cut inside L2 table", spec: qcowSpec{withData: true, cutAt: 4*cs + 10}, rule: ViolationTruncated},
		{name: "cut before data cluster", spec: qcowSpec{withData: true, cutAt: 5 * cs}, rule: ViolationTruncated},
		{name: "qcow2 plus ISO descriptor", spec: qcowSpec{extra: []byte("CD001"), extraAt: 0x8001}, rule: ViolationMultipleFormats},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := buildQCOW2(tc.spec)
			info, err := inspectBytes(t, b)
			if err == nil {
				err = info.Check(FormatQCOW2, cap64G)
				if tc.rule != "" && !tc.inCheck {
					t.Fatalf("Inspect accepted it; want %s from Inspect", tc.rule)
				}
			} else if tc.inCheck {
				t.Fatalf("Inspect: %v; want %s from Check", err, tc.rule)
			}
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				if info.Format != FormatQCOW2 || info.VirtualSize != int64(buildSpecSize(tc.spec)) {
					t.Fatalf("info = %+v", info)
				}
				return
			}
			ue := wantRule(t, err, tc.rule)
			if strings.Contains(ue.Reason, "\n") || ue.Reason == "" {
				t.Fatalf("reason must be one non-empty line: %q", ue.Reason)
			}
		})
	}
}

func buildSpecSize(s qcowSpec) uint64 {
	if s.virtualSize == 0 {
		return 1 << 30
	}
	return s.virtualSize
}

func TestInspectReportsNames(t *testing.T) {
	info, err := inspectBytes(t, buildQCOW2(qcowSpec{backing: "/etc/passwd"}))
	wantRule(t, err, ViolationBackingFile)
	if info.BackingFile != "/etc/passwd" {
		t.Fatalf("BackingFile = %q", info.BackingFile)
	}
	info, err = inspectBytes(t, buildQCOW2(qcowSpec{incompat: incompatDataFile, dataFileExt: "/dev/sda"}))
	ue := wantRule(t, err, ViolationDataFile)
	if info.DataFile != "/dev/sda" || !strings.Contains(ue.Reason, "/dev/sda") {
		t.Fatalf("DataFile = %q, reason %q", info.DataFile, ue.Reason)
	}
}

func TestInspectRaw(t *testing.T) {
	const mib = 1 << 20
	gptHybrid := mbrDisk(mib, [3]uint32{0, 0xee, 1}, [3]uint32{0x80, 0x83, 2048})
	fat := mbrDisk(mib)
	fat[0x10], fat[0x15] = 2, 0xf8
	kdmvVDI := append([]byte("KDMV"), make([]byte, 4096)...) // VDI magic at 0x40 too
	binary.LittleEndian.PutUint32(kdmvVDI[0x40:], 0xbeda107f)
	tests := []struct {
		name    string
		data    []byte
		claim   string
		rule    Violation
		table   string
		inspect bool // rule comes from Inspect
	}{
		{name: "mbr disk", data: mbrDisk(mib, [3]uint32{0x80, 0x83, 2048}), claim: FormatRaw, table: "mbr"},
		{name: "gpt disk", data: mbrDisk(mib, [3]uint32{0, 0xee, 1}), claim: FormatRaw, table: "gpt"},
		{name: "FAT volume with boot sector", data: fat, claim: FormatRaw},
		{name: "empty", data: nil, claim: FormatRaw, rule: ViolationEmpty, inspect: true},
		{name: "empty claimed qcow2", data: []byte{}, claim: FormatQCOW2, rule: ViolationEmpty, inspect: true},
		{name: "random claimed qcow2", data: randomBytes(mib, 1), claim: FormatQCOW2, rule: ViolationFormatMismatch},
		{name: "random claimed raw", data: randomBytes(mib, 2), claim: FormatRaw, rule: ViolationPartitionTable},
		{name: "zeros claimed raw", data: make([]byte, mib), claim: FormatRaw, rule: ViolationPartitionTable},
		{name: "tiny file claimed raw", data: []byte("hello"), claim: FormatRaw, rule: ViolationPartitionTable},
		{name: "raw disk claimed qcow2", data: mbrDisk(mib, [3]uint32{0x80, 0x83, 2048}), claim: FormatQCOW2, rule: ViolationFormatMismatch},
		{name: "qcow2 claimed raw", data: buildQCOW2(qcowSpec{}), claim: FormatRaw, rule: ViolationFormatMismatch},
		{name: "bad boot flag", data: mbrDisk(mib, [3]uint32{0x42, 0x83, 2048}), claim: FormatRaw, rule: ViolationPartitionTable, inspect: true},
		{name: "no partitions", data: mbrDisk(mib), claim: FormatRaw, rule: ViolationPartitionTable, inspect: true},
		{name: "gpt at wrong LBA", data: mbrDisk(mib, [3]uint32{0, 0xee, 7}), claim: FormatRaw, rule: ViolationPartitionTable, inspect: true},
		{name: "hybrid gpt", data: gptHybrid, claim: FormatRaw, rule: ViolationPartitionTable, inspect: true},
		{name: "vmdk magic", data: append([]byte("KDMV"), make([]byte, 4096)...), claim: FormatRaw, rule: ViolationFormatMismatch},
		{name: "vhdx magic", data: append([]byte("vhdxfile"), make([]byte, 4096)...), claim: FormatQCOW2, rule: ViolationFormatMismatch},
		{name: "qed magic", data: append([]byte("QED\x00"), make([]byte, 4096)...), claim: FormatQCOW2, rule: ViolationFormatMismatch},
		{name: "luks magic", data: append([]byte("LUKS\xba\xbe"), make([]byte, 4096)...), claim: FormatRaw, rule: ViolationFormatMismatch},
		{name: "fixed vhd footer on mbr disk", data: append(mbrDisk(mib, [3]uint32{0x80, 0x83, 2048}), append([]byte("conectix"), make([]byte, 504)...)...), claim: FormatRaw, rule: ViolationFormatMismatch},
		{name: "vmdk and vdi headers", data: kdmvVDI, claim: FormatRaw, rule: ViolationMultipleFormats, inspect: true},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := inspectBytes(t, tc.data)
			if tc.inspect {
				wantRule(t, err, tc.rule)
				return
			}
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			err = info.Check(tc.claim, 64<<30)
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if info.PartitionTable != tc.table || info.VirtualSize != int64(len(tc.data)) {
					t.Fatalf("info = %+v", info)
				}
				return
			}
			wantRule(t, err, tc.rule)
		})
	}
}

// TestInspectQemuImgImages checks Inspect against images made by the real
// qemu-img, safe ones and unsafe ones.
func TestInspectQemuImgImages(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	data := mbrDisk(8<<20, [3]uint32{0x80, 0x83, 2048})
	copy(data[1<<20:], randomBytes(4<<20, 3))
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	img := func(name string, args ...string) string { // qemu-img create ARGS PATH 64M
		p := filepath.Join(dir, name)
		run(t, "qemu-img", append(append([]string{"create", "-q"}, args...), p, "64M")...)
		return p
	}
	convert := func(name string, opts ...string) string {
		p := filepath.Join(dir, name)
		args := append([]string{"convert", "-f", "raw", "-O", "qcow2"}, opts...)
		run(t, "qemu-img", append(args, raw, p)...)
		return p
	}
	good := map[string]string{
		"empty v3":      img("v3.qcow2", "-f", "qcow2"),
		"converted":     convert("conv.qcow2"),
		"compressed":    convert("comp.qcow2", "-c"),
		"zstd":          convert("zstd.qcow2", "-c", "-o", "compression_type=zstd"),
		"v2":            convert("v2.qcow2", "-o", "compat=0.10"),
		"4k clusters":   convert("4k.qcow2", "-o", "cluster_size=4096"),
		"2M clusters":   convert("2m.qcow2", "-o", "cluster_size=2M"),
		"extended L2":   convert("el2.qcow2", "-o", "extended_l2=on"),
		"refcount bits": convert("rc.qcow2", "-o", "refcount_bits=64"),
	}
	for name, p := range good {
		t.Run(name, func(t *testing.T) {
			info, err := inspectFile(t, p)
			if err == nil {
				err = info.Check(FormatQCOW2, 64<<30)
			}
			if err != nil {
				t.Fatalf("%s rejected: %v", p, err)
			}
			if info.Format != FormatQCOW2 || info.VirtualSize == 0 {
				t.Fatalf("info = %+v", info)
			}
			wantRule(t, info.Check(FormatRaw, 64<<30), ViolationFormatMismatch)
		})
	}
	rawInfo, err := inspectFile(t, raw)
	if err != nil || rawInfo.Check(FormatRaw, 64<<30) != nil || rawInfo.PartitionTable != "mbr" {
		t.Fatalf("raw disk: %+v %v", rawInfo, err)
	}

	unsafe := map[string]struct {
		path string
		rule Violation
	}{
		"backing":  {img("backing.qcow2", "-f", "qcow2", "-u", "-F", "raw", "-b", "/etc/passwd"), ViolationBackingFile},
		"datafile": {img("datafile.qcow2", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "data.raw")), ViolationDataFile},
		"vmdk":     {img("disk.vmdk", "-f", "vmdk"), ViolationFormatMismatch},
		"vpc":      {img("disk.vhd", "-f", "vpc"), ViolationFormatMismatch},
		"vhdx":     {img("disk.vhdx", "-f", "vhdx"), ViolationFormatMismatch},
		"qed":      {img("disk.qed", "-f", "qed"), ViolationFormatMismatch},
		"vdi":      {img("disk.vdi", "-f", "vdi"), ViolationFormatMismatch},
	}
	for name, u := range unsafe {
		t.Run("unsafe "+name, func(t *testing.T) {
			info, err := inspectFile(t, u.path)
			if err == nil {
				err = info.Check(FormatQCOW2, 64<<30)
			}
			wantRule(t, err, u.rule)
		})
	}

	// An encrypted qcow2: a real one with its crypt_method set to LUKS (2).
	// qemu-img's own encrypted creation times PBKDF2 on the host's CPU clock
	// and refuses where that clock is coarse.
	enc := filepath.Join(dir, "enc.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", enc, "64M")
	encBytes, err := os.ReadFile(enc)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(encBytes[32:], 2)
	if err := os.WriteFile(enc, encBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = inspectFile(t, enc)
	wantRule(t, err, ViolationEncrypted)

	// A real qcow2 with data, cut short at several points.
	conv := good["converted"]
	full, err := os.ReadFile(conv)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{50, 100, len(full) / 4, len(full) / 2, len(full) - 4096} {
		_, err := inspectBytes(t, full[:cut])
		wantRule(t, err, ViolationTruncated)
	}
}
