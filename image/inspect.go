package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// Formats a job may claim.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// Info describes what Inspect found in an image file. It is filled as far as
// parsing got, also when Inspect returns an error.
type Info struct {
	Format         string // detected: qcow2, raw, qcow (v1), qed, vmdk, vhd, vhdx, vdi, luks, iso
	Size           int64  // file size in bytes
	VirtualSize    int64  // disk size the guest sees (0 when unknown)
	BackingFile    string // qcow2 backing file name, if any
	BackingFormat  string // qcow2 backing format extension, if any
	DataFile       string // qcow2 external data file name, if any
	BootSector     bool   // raw: 0x55AA signature at byte 510
	PartitionTable string // raw: "gpt", "mbr" or ""

	QCOW2Version         int    // 2 or 3
	ClusterSize          int64  // qcow2 cluster size in bytes
	IncompatibleFeatures uint64 // qcow2 incompatible feature bits
	Compression          string // qcow2 compression type: zlib or zstd
}

// Check applies the job's claim and the size cap to an inspected image:
// the detected format must equal the claimed one, a raw disk must carry a
// boot sector, and the virtual size must not exceed maxVirtualSize (when
// positive). Violations are *UnsafeImageError with File left empty.
func (i Info) Check(claimed string, maxVirtualSize int64) error {
	if i.Format != claimed {
		return unsafeErr("", ViolationFormatMismatch, "content is %s, but %s was claimed", describeFormat(i), claimed)
	}
	if i.Format == FormatRaw && !i.BootSector {
		return unsafeErr("", ViolationPartitionTable, "raw disk has no boot sector (no 0x55AA signature at byte 510), so it cannot boot")
	}
	if maxVirtualSize > 0 && i.VirtualSize > maxVirtualSize {
		return unsafeErr("", ViolationVirtualSize, "virtual size %d bytes exceeds the cap of %d bytes", i.VirtualSize, maxVirtualSize)
	}
	return nil
}

func describeFormat(i Info) string {
	switch {
	case i.Format == FormatRaw && i.Size > 0 && !i.BootSector:
		return "raw data (no known image header)"
	case i.Format == "qcow":
		return "qcow version 1"
	}
	return i.Format
}

const (
	probeLen        = 64 << 10
	qcowMagic       = "QFI\xfb"
	qcowMaxL1Bytes  = 32 << 20 // qemu's QCOW_MAX_L1_SIZE
	qcowMaxRefTable = 8 << 20  // qemu's QCOW_MAX_REFTABLE_SIZE
	l2WalkBudget    = 64 << 20 // bytes of L2 tables Inspect reads at most

	incompatDirty      = 1 << 0
	incompatCorrupt    = 1 << 1
	incompatDataFile   = 1 << 2
	incompatCompress   = 1 << 3
	incompatExtendedL2 = 1 << 4
	incompatKnown      = incompatDirty | incompatCorrupt | incompatDataFile | incompatCompress | incompatExtendedL2

	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extDataFile      = 0x44415441
	extEncryption    = 0x0537be77

	l2OffsetMask   = 0x00fffffffffffe00
	l2Compressed   = 1 << 62
	l1OffsetMask   = 0x00fffffffffffe00
	refBlockOffset = 0xfffffffffffffe00
)

// Inspect detects the format of the image in r (size bytes long) and checks
// it for what makes an image unsafe to hand to qemu, following Nova's format
// inspector rules: one format only, and for qcow2 no backing file, no
// external data file, no unknown incompatible features, no encryption, a
// sane header, and tables that lie inside the file. It reads only headers
// and metadata tables, never runs qemu. Unsafe content yields an
// *UnsafeImageError (File empty); read failures are returned wrapped.
func Inspect(r io.ReaderAt, size int64) (Info, error) {
	info := Info{Size: size, Format: FormatRaw}
	if size <= 0 {
		return info, unsafeErr("", ViolationEmpty, "file is empty (0 bytes)")
	}
	head := make([]byte, min(size, probeLen))
	if err := readAt(r, head, 0); err != nil {
		return info, err
	}
	formats, err := detectFormats(r, head, size)
	if err != nil {
		return info, err
	}
	info.BootSector = len(head) >= 512 && head[510] == 0x55 && head[511] == 0xaa

	switch len(formats) {
	case 0:
		return inspectRaw(head, info)
	case 1:
		info.Format = formats[0]
	default:
		info.Format = formats[0]
		return info, unsafeErr("", ViolationMultipleFormats, "headers of several formats found (%v); refusing ambiguous content", formats)
	}
	info.BootSector = false
	if info.Format == FormatQCOW2 {
		return inspectQCOW2(r, head, info)
	}
	info.VirtualSize = foreignVirtualSize(info.Format, head)
	return info, nil
}

// detectFormats lists the formats whose headers (or, for a fixed VHD, footer)
// the file of size bytes has; head is its first bytes.
func detectFormats(r io.ReaderAt, head []byte, size int64) ([]string, error) {
	var formats []string
	if bytes.HasPrefix(head, []byte(qcowMagic)) {
		if len(head) >= 8 && binary.BigEndian.Uint32(head[4:]) == 1 {
			formats = append(formats, "qcow")
		} else {
			formats = append(formats, FormatQCOW2)
		}
	}
	for _, m := range []struct{ magic, format string }{
		{"QED\x00", "qed"},
		{"KDMV", "vmdk"},
		{"COWD", "vmdk"},
		{"# Disk DescriptorFile", "vmdk"},
		{"conectix", "vhd"},
		{"vhdxfile", "vhdx"},
		{"LUKS\xba\xbe", "luks"},
	} {
		if bytes.HasPrefix(head, []byte(m.magic)) {
			formats = append(formats, m.format)
		}
	}
	if len(head) >= 0x44 && binary.LittleEndian.Uint32(head[0x40:]) == 0xbeda107f {
		formats = append(formats, "vdi")
	}
	if !bytes.HasPrefix(head, []byte("conectix")) && size >= 512+512 {
		// A fixed VHD is raw data followed by a 512-byte footer.
		tail := make([]byte, 8)
		if err := readAt(r, tail, size-512); err != nil {
			return nil, err
		}
		if string(tail) == "conectix" {
			formats = append(formats, "vhd")
		}
	}
	if isISO(head) {
		formats = append(formats, "iso")
	}
	return formats, nil
}

// foreignVirtualSize is the virtual size the header of a format imagevet does
// not boot says, where it says one (0 otherwise).
func foreignVirtualSize(format string, head []byte) int64 {
	switch format {
	case "vhd":
		if len(head) >= 56 && bytes.HasPrefix(head, []byte("conectix")) {
			return int64(binary.BigEndian.Uint64(head[48:]))
		}
	case "vmdk":
		if len(head) >= 24 && bytes.HasPrefix(head, []byte("KDMV")) {
			return int64(binary.LittleEndian.Uint64(head[16:])) * 512
		}
	case "vdi":
		if len(head) >= 0x178 {
			return int64(binary.LittleEndian.Uint64(head[0x170:]))
		}
	case "iso":
		if len(head) >= 0x8084 && head[0x8000] == 1 {
			return int64(binary.LittleEndian.Uint32(head[0x8050:])) * int64(binary.LittleEndian.Uint16(head[0x8080:]))
		}
	}
	return 0
}

// isISO reports an ISO 9660 or UDF volume descriptor in the first three
// descriptor slots after the 32 KiB system area.
func isISO(head []byte) bool {
	for _, off := range []int{0x8001, 0x8801, 0x9001} {
		if len(head) < off+5 {
			return false
		}
		switch string(head[off : off+5]) {
		case "CD001", "NSR02", "NSR03", "BEA01":
			return true
		}
	}
	return false
}

// inspectRaw applies Nova's MBR/GPT checks to a file with no known header.
func inspectRaw(head []byte, info Info) (Info, error) {
	info.VirtualSize = info.Size
	if !info.BootSector {
		return info, nil
	}
	// A FAT volume boot record carries the same signature but no partitions.
	if head[0x10] == 2 && head[0x15] == 0xf8 {
		return info, nil
	}
	var used []int
	gpt := false
	for i := range 4 {
		pte := head[446+16*i : 446+16*(i+1)]
		if boot := pte[0]; boot != 0x00 && boot != 0x80 {
			return info, unsafeErr("", ViolationPartitionTable, "MBR partition entry %d has invalid boot flag 0x%02x", i, boot)
		}
		ostype := pte[4]
		if ostype == 0 {
			continue
		}
		used = append(used, i)
		if ostype == 0xee {
			gpt = true
			if lba := binary.LittleEndian.Uint32(pte[8:]); lba != 1 {
				return info, unsafeErr("", ViolationPartitionTable, "GPT protective MBR starts at LBA %d, not 1", lba)
			}
		}
	}
	switch {
	case len(used) == 0:
		return info, unsafeErr("", ViolationPartitionTable, "MBR defines no partitions")
	case gpt && (len(used) != 1 || used[0] != 0):
		return info, unsafeErr("", ViolationPartitionTable, "GPT protective MBR defines extra partitions (hybrid MBR)")
	case gpt:
		info.PartitionTable = "gpt"
	default:
		info.PartitionTable = "mbr"
	}
	return info, nil
}

// qcowHeader is the fixed part of a qcow2 header (big-endian on disk).
type qcowHeader struct {
	Magic                 uint32
	Version               uint32
	BackingFileOffset     uint64
	BackingFileSize       uint32
	ClusterBits           uint32
	Size                  uint64
	CryptMethod           uint32
	L1Size                uint32
	L1TableOffset         uint64
	RefcountTableOffset   uint64
	RefcountTableClusters uint32
	NbSnapshots           uint32
	SnapshotsOffset       uint64
	// version 3 only
	IncompatibleFeatures uint64
	CompatibleFeatures   uint64
	AutoclearFeatures    uint64
	RefcountOrder        uint32
	HeaderLength         uint32
}

func inspectQCOW2(r io.ReaderAt, head []byte, info Info) (Info, error) {
	size := info.Size
	h, err := decodeQCOW2Header(head, size)
	info.QCOW2Version = int(h.Version)
	if err != nil {
		return info, err
	}
	info.IncompatibleFeatures = h.IncompatibleFeatures
	if err := checkQCOW2Geometry(&h, size, &info); err != nil {
		return info, err
	}
	cs := info.ClusterSize

	// The first cluster holds the header, its extensions and (usually) the
	// backing file name; read all of it that exists.
	first := head
	if int64(len(first)) < min(cs, size) {
		first = make([]byte, min(cs, size))
		if err := readAt(r, first, 0); err != nil {
			return info, err
		}
	}
	first = first[:min(int64(len(first)), cs, size)]

	if h.BackingFileOffset != 0 {
		info.BackingFile = "(unreadable)"
		end := h.BackingFileOffset + uint64(h.BackingFileSize)
		if h.BackingFileSize > 0 && h.BackingFileSize <= 1023 && end <= uint64(len(first)) {
			info.BackingFile = string(first[h.BackingFileOffset:end])
		}
	}
	compression := byte(0)
	if h.HeaderLength > 104 {
		compression = first[104]
	}
	extErr := parseExtensions(first, &h, &info)
	if err := qcow2Violation(&h, &info, compression, extErr); err != nil {
		return info, err
	}
	return info, checkQCOW2Tables(r, &h, info)
}

// decodeQCOW2Header reads the header's fields from the file's first bytes (head)
// for a file of size bytes: version 2's, and version 3's after them. Its Version
// is set whenever the file holds the version 2 header.
func decodeQCOW2Header(head []byte, size int64) (qcowHeader, error) {
	var h qcowHeader
	if size < 72 {
		return h, unsafeErr("", ViolationTruncated, "qcow2 header truncated: file has %d bytes, the header needs 72", size)
	}
	v2 := head[:72]
	h.Version = binary.BigEndian.Uint32(v2[4:])
	h.BackingFileOffset = binary.BigEndian.Uint64(v2[8:])
	h.BackingFileSize = binary.BigEndian.Uint32(v2[16:])
	h.ClusterBits = binary.BigEndian.Uint32(v2[20:])
	h.Size = binary.BigEndian.Uint64(v2[24:])
	h.CryptMethod = binary.BigEndian.Uint32(v2[32:])
	h.L1Size = binary.BigEndian.Uint32(v2[36:])
	h.L1TableOffset = binary.BigEndian.Uint64(v2[40:])
	h.RefcountTableOffset = binary.BigEndian.Uint64(v2[48:])
	h.RefcountTableClusters = binary.BigEndian.Uint32(v2[56:])
	h.NbSnapshots = binary.BigEndian.Uint32(v2[60:])
	h.SnapshotsOffset = binary.BigEndian.Uint64(v2[64:])
	switch h.Version {
	case 2:
		h.RefcountOrder = 4
		h.HeaderLength = 72
	case 3:
		if size < 104 {
			return h, unsafeErr("", ViolationTruncated, "qcow2 v3 header truncated: file has %d bytes, the header needs 104", size)
		}
		v3 := head[:104]
		h.IncompatibleFeatures = binary.BigEndian.Uint64(v3[72:])
		h.CompatibleFeatures = binary.BigEndian.Uint64(v3[80:])
		h.AutoclearFeatures = binary.BigEndian.Uint64(v3[88:])
		h.RefcountOrder = binary.BigEndian.Uint32(v3[96:])
		h.HeaderLength = binary.BigEndian.Uint32(v3[100:])
		if h.HeaderLength < 104 || h.HeaderLength%8 != 0 {
			return h, unsafeErr("", ViolationBadHeader, "qcow2 header length %d is invalid", h.HeaderLength)
		}
	default:
		return h, unsafeErr("", ViolationBadHeader, "unsupported qcow2 version %d", h.Version)
	}
	return h, nil
}

// checkQCOW2Geometry checks the cluster size, the header's length and the virtual
// size against each other and the file's size, recording the sizes in info.
func checkQCOW2Geometry(h *qcowHeader, size int64, info *Info) error {
	if h.ClusterBits < 9 || h.ClusterBits > 21 {
		return unsafeErr("", ViolationBadHeader, "qcow2 cluster_bits %d outside 9..21", h.ClusterBits)
	}
	cs := int64(1) << h.ClusterBits
	info.ClusterSize = cs
	if int64(h.HeaderLength) > cs {
		return unsafeErr("", ViolationBadHeader, "qcow2 header length %d exceeds the cluster size %d", h.HeaderLength, cs)
	}
	if int64(h.HeaderLength) > size {
		return unsafeErr("", ViolationTruncated, "qcow2 header truncated: file has %d bytes, the header needs %d", size, h.HeaderLength)
	}
	if h.Size > 1<<62 {
		return unsafeErr("", ViolationBadHeader, "qcow2 virtual size %d is absurd", h.Size)
	}
	info.VirtualSize = int64(h.Size)
	return nil
}

// qcow2Violation is the header's most telling violation, if any: a backing file,
// an external data file, a bad header extension (extErr), unknown incompatible
// features, encryption, the corrupt bit, a compression type its feature bit
// contradicts, a refcount order out of range. It records the compression in info.
func qcow2Violation(h *qcowHeader, info *Info, compression byte, extErr error) error {
	if h.BackingFileOffset != 0 {
		return unsafeErr("", ViolationBackingFile, "qcow2 has a backing file %q", info.BackingFile)
	}
	if h.IncompatibleFeatures&incompatDataFile != 0 || info.DataFile != "" {
		name := info.DataFile
		if name == "" {
			name = "(unnamed)"
		}
		return unsafeErr("", ViolationDataFile, "qcow2 keeps its data in an external data file %q", name)
	}
	if extErr != nil {
		return extErr
	}
	if unknown := h.IncompatibleFeatures &^ incompatKnown; unknown != 0 {
		return unsafeErr("", ViolationUnknownFeature, "qcow2 has unknown incompatible feature bits 0x%x", unknown)
	}
	if h.CryptMethod != 0 {
		return unsafeErr("", ViolationEncrypted, "qcow2 is encrypted (crypt_method %d)", h.CryptMethod)
	}
	if h.IncompatibleFeatures&incompatCorrupt != 0 {
		return unsafeErr("", ViolationCorrupt, "qcow2 is marked corrupt")
	}
	// Non-zlib compression must be flagged incompatible, zlib must not be.
	switch flagged := h.IncompatibleFeatures&incompatCompress != 0; {
	case compression == 0 && !flagged:
		info.Compression = "zlib"
	case compression == 1 && flagged:
		info.Compression = "zstd"
	default:
		return unsafeErr("", ViolationBadHeader, "qcow2 compression type %d does not match its feature bit", compression)
	}
	if h.RefcountOrder > 6 {
		return unsafeErr("", ViolationBadHeader, "qcow2 refcount_order %d exceeds 6", h.RefcountOrder)
	}
	return nil
}

// parseExtensions walks the header extensions in the first cluster and
// records the data file and backing format names.
func parseExtensions(first []byte, h *qcowHeader, info *Info) error {
	off := int(h.HeaderLength)
	limit := len(first)
	if h.BackingFileOffset != 0 && h.BackingFileOffset < uint64(limit) {
		limit = int(h.BackingFileOffset)
	}
	for off+8 <= limit {
		typ := binary.BigEndian.Uint32(first[off:])
		n := int(binary.BigEndian.Uint32(first[off+4:]))
		if typ == extEnd {
			return nil
		}
		data := off + 8
		if n < 0 || data+n > limit {
			return unsafeErr("", ViolationBadHeader, "qcow2 header extension 0x%08x overruns the header cluster", typ)
		}
		val := first[data : data+n]
		switch typ {
		case extDataFile:
			info.DataFile = string(val)
			if info.DataFile == "" {
				info.DataFile = "(unnamed)"
			}
		case extBackingFormat:
			info.BackingFormat = string(val)
		case extEncryption:
			return unsafeErr("", ViolationEncrypted, "qcow2 carries a full disk encryption header")
		}
		off = data + (n+7)&^7
	}
	// qemu tolerates a header without an end marker when it is cut by the
	// cluster end; so do we.
	return nil
}

// checkQCOW2Tables verifies that the L1, refcount and L2 tables and the
// clusters they point to lie inside the file. It reads at most l2WalkBudget
// bytes of L2 tables.
func checkQCOW2Tables(r io.ReaderAt, h *qcowHeader, info Info) error {
	size := info.Size
	cs := info.ClusterSize
	entryBytes := int64(8)
	if h.IncompatibleFeatures&incompatExtendedL2 != 0 {
		entryBytes = 16
	}
	if err := checkL1(h, cs, entryBytes, size); err != nil {
		return err
	}
	if err := checkRefcountTable(r, h, cs, size); err != nil {
		return err
	}
	if h.NbSnapshots > 0 && (int64(h.SnapshotsOffset)%cs != 0 || h.SnapshotsOffset >= uint64(size)) {
		return unsafeErr("", ViolationTruncated, "qcow2 snapshot table at %d lies outside the file (%d bytes)", h.SnapshotsOffset, size)
	}
	if h.L1Size == 0 {
		return nil
	}
	return walkL1(r, h, cs, entryBytes, size)
}

// checkL1 checks that the L1 table covers the virtual size, fits qemu's limit and
// lies, aligned, inside the file.
func checkL1(h *qcowHeader, cs, entryBytes, size int64) error {
	if int64(h.L1Size)*8 > qcowMaxL1Bytes {
		return unsafeErr("", ViolationBadHeader, "qcow2 L1 table of %d entries exceeds qemu's limit", h.L1Size)
	}
	perL1 := cs / entryBytes * cs
	need := (int64(h.Size) + perL1 - 1) / perL1
	if int64(h.L1Size) < need {
		return unsafeErr("", ViolationBadHeader, "qcow2 L1 table has %d entries, virtual size needs %d", h.L1Size, need)
	}
	if h.L1Size == 0 {
		return nil
	}
	if int64(h.L1TableOffset)%cs != 0 {
		return unsafeErr("", ViolationBadHeader, "qcow2 L1 table offset 0x%x is not cluster aligned", h.L1TableOffset)
	}
	if end, ok := addNoOverflow(h.L1TableOffset, uint64(h.L1Size)*8); !ok || end > uint64(size) {
		return unsafeErr("", ViolationTruncated, "qcow2 L1 table ends at %d, beyond the end of the file (%d bytes)", end, size)
	}
	return nil
}

// checkRefcountTable checks the refcount table: present, aligned, within qemu's
// limit, and every refcount block it names lies inside the file.
func checkRefcountTable(r io.ReaderAt, h *qcowHeader, cs, size int64) error {
	if h.RefcountTableClusters == 0 {
		return unsafeErr("", ViolationBadHeader, "qcow2 has no refcount table")
	}
	rtBytes := int64(h.RefcountTableClusters) * cs
	if rtBytes > qcowMaxRefTable {
		return unsafeErr("", ViolationBadHeader, "qcow2 refcount table of %d clusters exceeds qemu's limit", h.RefcountTableClusters)
	}
	if int64(h.RefcountTableOffset)%cs != 0 {
		return unsafeErr("", ViolationBadHeader, "qcow2 refcount table offset 0x%x is not cluster aligned", h.RefcountTableOffset)
	}
	if h.RefcountTableOffset >= uint64(size) {
		return unsafeErr("", ViolationTruncated, "qcow2 refcount table at %d lies beyond the end of the file (%d bytes)", h.RefcountTableOffset, size)
	}
	rt := make([]byte, min(rtBytes, size-int64(h.RefcountTableOffset)))
	if err := readAt(r, rt, int64(h.RefcountTableOffset)); err != nil {
		return err
	}
	for i := 0; i+8 <= len(rt); i += 8 {
		off := binary.BigEndian.Uint64(rt[i:]) & refBlockOffset
		if off == 0 {
			continue
		}
		if err := clusterInFile(off, cs, size, "refcount block"); err != nil {
			return err
		}
	}
	return nil
}

// walkL1 walks L1 -> L2 -> data clusters: every L2 table inside the file, and
// the entries of as many as l2WalkBudget allows pointing inside it.
func walkL1(r io.ReaderAt, h *qcowHeader, cs, entryBytes, size int64) error {
	l1 := make([]byte, int64(h.L1Size)*8)
	if err := readAt(r, l1, int64(h.L1TableOffset)); err != nil {
		return err
	}
	compressedBits := 62 - (h.ClusterBits - 8)
	l2 := make([]byte, cs)
	budget := int64(l2WalkBudget)
	for i := 0; i < len(l1); i += 8 {
		off := binary.BigEndian.Uint64(l1[i:]) & l1OffsetMask
		if off == 0 {
			continue
		}
		if err := clusterInFile(off, cs, size, "L2 table"); err != nil {
			return err
		}
		if budget < cs {
			continue
		}
		budget -= cs
		if err := readAt(r, l2, int64(off)); err != nil {
			return err
		}
		if err := checkL2(l2, cs, entryBytes, compressedBits, size); err != nil {
			return err
		}
	}
	return nil
}

// checkL2 checks that every cluster an L2 table names, compressed or not, lies
// inside the file.
func checkL2(l2 []byte, cs, entryBytes int64, compressedBits uint32, size int64) error {
	for j := int64(0); j < cs; j += entryBytes {
		e := binary.BigEndian.Uint64(l2[j:])
		if e&l2Compressed != 0 {
			host := e & (1<<compressedBits - 1)
			if host >= uint64(size) {
				return unsafeErr("", ViolationTruncated, "qcow2 compressed cluster at %d lies beyond the end of the file (%d bytes)", host, size)
			}
			continue
		}
		host := e & l2OffsetMask
		if host == 0 {
			continue
		}
		// qemu always writes whole data clusters, so a partial one at
		// the end means the file was cut.
		if err := clusterInFile(host, cs, size, "data cluster"); err != nil {
			return err
		}
	}
	return nil
}

func clusterInFile(off uint64, cs, size int64, what string) error {
	if off%uint64(cs) != 0 {
		return unsafeErr("", ViolationCorrupt, "qcow2 %s offset 0x%x is not cluster aligned", what, off)
	}
	if end, ok := addNoOverflow(off, uint64(cs)); !ok || end > uint64(size) {
		return unsafeErr("", ViolationTruncated, "qcow2 %s at %d..%d extends beyond the end of the file (%d bytes)", what, off, off+uint64(cs), size)
	}
	return nil
}

func addNoOverflow(a, b uint64) (uint64, bool) {
	s, carry := bits.Add64(a, b, 0)
	return s, carry == 0
}

// readAt fills p from offset off; a short file is an error.
func readAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return unsafeErr("", ViolationTruncated, "file ends at %d while reading %d bytes at offset %d", off+int64(n), len(p), off)
	}
	return fmt.Errorf("read image at offset %d: %w", off, err)
}
