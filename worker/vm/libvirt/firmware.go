package libvirt

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/imagevet/imagevet/worker/vm"
)

// ovmfPairs are UEFI firmware images and their matching NVRAM templates, as
// distributions install them; the first pair present wins.
var ovmfPairs = []firmware{
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},         // Debian 12, Ubuntu 22.04+
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},               // older Debian/Ubuntu
	{"/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"},     // Fedora, RHEL
	{"/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"}, // Arch
}

// firmware returns the configured or first installed OVMF pair.
func (h *Hypervisor) firmware() (firmware, error) {
	pairs := ovmfPairs
	if h.cfg.OVMFCode != "" {
		pairs = []firmware{{h.cfg.OVMFCode, h.cfg.OVMFVars}}
	}
	return findFirmware(pairs)
}

func findFirmware(pairs []firmware) (firmware, error) {
	var looked []string
	for _, p := range pairs {
		if isFile(p.Code) && isFile(p.Vars) {
			return p, nil
		}
		looked = append(looked, p.Code)
	}
	return firmware{}, fmt.Errorf("%w: UEFI firmware (OVMF) not found (install the ovmf package); looked for %s",
		vm.ErrUnsupported, strings.Join(looked, ", "))
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// ensureNVRAM creates the per-machine UEFI variable store at path from the
// template, unless it already exists (a retried boot keeps its variables).
func ensureNVRAM(path, template string) error {
	src, err := os.Open(template)
	if err != nil {
		return fmt.Errorf("%w: nvram template: %w", vm.ErrUnsupported, err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: create nvram: %w", vm.ErrInvalidSpec, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		os.Remove(path)
		return fmt.Errorf("copy nvram template: %w", err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("copy nvram template: %w", err)
	}
	return nil
}
