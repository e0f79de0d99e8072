package libvirt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"libvirt.org/go/libvirtxml"

	"github.com/imagevet/imagevet/worker/vm"
)

// Why the backing chain is spelled out: left to probe it, libvirt chowns every
// image in the chain to the qemu user and restores only the top one, so the
// shared cached base would end up owned by libvirt-qemu. Describing the chain
// with relabel='no' leaves the base alone; qemu reads it through its
// permissions instead (world-readable file, world-searchable directories).

const maxChain = 8

// backingFile is one image under the overlay.
type backingFile struct {
	Path   string
	Format string // "qcow2" or "raw"
}

// backingChain returns the images below the qcow2 at path, nearest first.
func backingChain(path string) ([]backingFile, error) {
	var chain []backingFile
	cur, format := path, "qcow2"
	for format == "qcow2" {
		file, fmtName, err := qcow2Backing(cur)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", vm.ErrInvalidSpec, cur, err)
		}
		if file == "" {
			return chain, nil
		}
		if len(chain) == maxChain {
			return nil, fmt.Errorf("%w: %s: backing chain deeper than %d", vm.ErrInvalidSpec, path, maxChain)
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(filepath.Dir(cur), file)
		}
		switch fmtName {
		case "qcow2", "raw":
		case "":
			return nil, fmt.Errorf("%w: %s: backing file %s has no recorded format (create the overlay with -F)", vm.ErrInvalidSpec, cur, file)
		default:
			return nil, fmt.Errorf("%w: %s: backing format %q not supported", vm.ErrInvalidSpec, cur, fmtName)
		}
		chain = append(chain, backingFile{Path: file, Format: fmtName})
		cur, format = file, fmtName
	}
	return chain, nil
}

const (
	qcow2Magic         = 0x514649fb // "QFI\xfb"
	extBackingFormat   = 0xe2792aca
	extEnd             = 0
	qcow2V2HeaderLen   = 72
	maxBackingNameLen  = 1023 // qemu's limit
	maxHeaderExtLength = 1 << 16
)

// qcow2Backing reads the backing file name and format recorded in the qcow2
// header at path ("" if none).
func qcow2Backing(path string) (file, format string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	var h [104]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return "", "", fmt.Errorf("read qcow2 header: %w", err)
	}
	be := binary.BigEndian
	if be.Uint32(h[0:]) != qcow2Magic {
		return "", "", errors.New("not a qcow2 image")
	}
	version := be.Uint32(h[4:])
	off, size := be.Uint64(h[8:]), be.Uint32(h[16:])
	if off == 0 || size == 0 {
		return "", "", nil
	}
	if size > maxBackingNameLen {
		return "", "", fmt.Errorf("backing file name of %d bytes", size)
	}
	name := make([]byte, size)
	if _, err := f.ReadAt(name, int64(off)); err != nil {
		return "", "", fmt.Errorf("read backing file name: %w", err)
	}
	extOff := int64(qcow2V2HeaderLen)
	if version >= 3 {
		extOff = int64(be.Uint32(h[100:]))
	}
	for i := 0; i < 64; i++ {
		var eh [8]byte
		if _, err := f.ReadAt(eh[:], extOff); err != nil {
			return "", "", fmt.Errorf("read header extension: %w", err)
		}
		typ, n := be.Uint32(eh[0:]), be.Uint32(eh[4:])
		if typ == extEnd {
			break
		}
		if n > maxHeaderExtLength {
			return "", "", fmt.Errorf("header extension of %d bytes", n)
		}
		if typ == extBackingFormat {
			b := make([]byte, n)
			if _, err := f.ReadAt(b, extOff+8); err != nil {
				return "", "", fmt.Errorf("read backing format: %w", err)
			}
			format = string(b)
		}
		extOff += 8 + int64((n+7)&^7)
	}
	return string(name), format, nil
}

// backingStore describes chain for libvirt, each layer excluded from DAC
// relabelling, terminated by an empty element (no further backing).
func backingStore(chain []backingFile) *libvirtxml.DomainDiskBackingStore {
	end := &libvirtxml.DomainDiskBackingStore{}
	for i := len(chain) - 1; i >= 0; i-- {
		end = &libvirtxml.DomainDiskBackingStore{
			Format: &libvirtxml.DomainDiskFormat{Type: chain[i].Format},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{
				File:     chain[i].Path,
				SecLabel: []libvirtxml.DomainDeviceSecLabel{{Model: "dac", Relabel: "no"}},
			}},
			BackingStore: end,
		}
	}
	return end
}

// qemuReadable reports why the qemu user (not root, not the file's owner)
// could not open path for reading, or nil: the file must be world-readable
// and every directory above it world-searchable.
func qemuReadable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o004 == 0 {
		return fmt.Errorf("%s is mode %v: the qemu user needs it world-readable (0644)", path, fi.Mode().Perm())
	}
	return qemuSearchable(filepath.Dir(path))
}

// qemuSearchable reports why the qemu user could not traverse dir, or nil.
func qemuSearchable(dir string) error { return vm.QemuSearchable(dir) }
