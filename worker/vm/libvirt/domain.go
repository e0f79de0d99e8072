package libvirt

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/imagevet/imagevet/worker/vm"
)

// Guest network layout (ARCHITECTURE.md, "Guest networking"): a private slirp
// network on a link-local range so the metadata address is on-link, no route
// out (restrict=on), SSH reachable only through a loopback host forward.
const (
	netdevID     = "imv0"
	guestNet     = "169.254.169.0/24"
	guestHost    = "169.254.169.1"
	metadataIP   = "169.254.169.254"
	metadataPort = 80
	// nicAddr is a root-bus slot libvirt does not assign itself (it fills
	// slots from the bottom); without an explicit address qemu takes the
	// first free slot and libvirt's own device there then fails to start.
	nicAddr = "0x10"
)

// MetadataNamespace is the XML namespace of imagevet's element in a domain's
// <metadata>, holding the worker and job that own the machine.
const MetadataNamespace = "https://github.com/imagevet/imagevet/xmlns/machine/1"

// metadataReconnect is how soon (seconds) qemu's metadata chardev reconnects
// after the worker closed the stream (it does so when a guest broke the HTTP
// framing, see the metadata package).
const metadataReconnect = 1

// machineMeta is the element stored in <metadata>.
type machineMeta struct {
	XMLName xml.Name `xml:"imagevet:machine"`
	NS      string   `xml:"xmlns:imagevet,attr"`
	Worker  string   `xml:"imagevet:worker"`
	Job     string   `xml:"imagevet:job"`
	Owner   string   `xml:"imagevet:owner,omitempty"`
}

// firmware is the resolved UEFI firmware pair.
type firmware struct {
	Code string // read-only pflash image
	Vars string // NVRAM template
}

// domainParams is everything buildDomain needs beyond the spec: values
// resolved on the host at boot time.
type domainParams struct {
	Spec    vm.Spec
	UUID    string
	Accel   string        // vm.AccelKVM or vm.AccelTCG
	SSHPort int           // host port on 127.0.0.1 forwarded to guest port 22
	UEFI    *firmware     // required when Spec.Firmware is uefi
	Backing []backingFile // images under Spec.Disk, nearest first
	// NetdevExtra and NICExtra are additional -netdev user and -device
	// options (tests network-boot iPXE with bootfile= and bootindex=).
	NetdevExtra, NICExtra []string
}

// buildDomain returns the transient domain definition for p.
func buildDomain(p domainParams) (*libvirtxml.Domain, error) {
	s := p.Spec
	meta, err := xml.Marshal(machineMeta{NS: MetadataNamespace, Worker: s.Worker, Job: s.Job, Owner: s.Owner})
	if err != nil {
		return nil, fmt.Errorf("marshal metadata: %w", err)
	}
	d := &libvirtxml.Domain{
		Name:     s.Name,
		UUID:     p.UUID,
		Metadata: &libvirtxml.DomainMetadata{XML: string(meta)},
		Memory:   &libvirtxml.DomainMemory{Value: uint(s.MemoryMiB), Unit: "MiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: uint(s.VCPUs)},
		OS: &libvirtxml.DomainOS{
			Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: s.MachineType(), Type: "hvm"},
		},
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{},
			APIC: &libvirtxml.DomainFeatureAPIC{},
		},
		Clock:      &libvirtxml.DomainClock{Offset: "utc"},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices:    devices(s, p.Backing),
	}
	if err := setAccel(d, p.Accel); err != nil {
		return nil, err
	}
	if err := setFirmware(d, s, p.UEFI); err != nil {
		return nil, err
	}
	setQEMUArgs(d, p)
	return d, nil
}

// devices are the machine's devices: its disks, a serial console logged to
// s.ConsoleLog, an RNG; no USB, no balloon.
func devices(s vm.Spec, backing []backingFile) *libvirtxml.DomainDeviceList {
	return &libvirtxml.DomainDeviceList{
		Disks: disks(s, backing),
		Controllers: []libvirtxml.DomainController{
			{Type: "usb", Model: "none"},
		},
		Serials: []libvirtxml.DomainSerial{{
			Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
			Target: &libvirtxml.DomainSerialTarget{Port: new(uint)},
			// virtlogd writes everything the guest sends to the serial
			// port here, live, whether or not anyone reads the pty.
			Log: &libvirtxml.DomainChardevLog{File: s.ConsoleLog, Append: "off"},
		}},
		MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		RNGs: []libvirtxml.DomainRNG{{
			Model:   "virtio",
			Backend: &libvirtxml.DomainRNGBackend{Random: &libvirtxml.DomainRNGBackendRandom{Device: "/dev/urandom"}},
		}},
	}
}

// setAccel sets the domain type and CPU of the accelerator.
func setAccel(d *libvirtxml.Domain, accel string) error {
	switch accel {
	case vm.AccelKVM:
		d.Type = "kvm"
		d.CPU = &libvirtxml.DomainCPU{Mode: "host-passthrough", Check: "none"}
	case vm.AccelTCG:
		d.Type = "qemu"
		d.CPU = &libvirtxml.DomainCPU{Mode: "maximum"}
	default:
		return fmt.Errorf("accel %q: want %q or %q", accel, vm.AccelKVM, vm.AccelTCG)
	}
	return nil
}

// setFirmware sets the firmware: UEFI's code and variables, or SeaBIOS.
func setFirmware(d *libvirtxml.Domain, s vm.Spec, uefi *firmware) error {
	switch s.Firmware {
	case vm.FirmwareUEFI:
		if uefi == nil {
			return fmt.Errorf("uefi firmware not resolved")
		}
		d.OS.Loader = &libvirtxml.DomainLoader{Path: uefi.Code, Readonly: "yes", Secure: "no", Type: "pflash"}
		d.OS.NVRam = &libvirtxml.DomainNVRam{NVRam: s.NVRAM, Template: uefi.Vars}
	default:
		// SeaBIOS prints to the serial port too, so "no bootable disk"
		// shows up in the console log.
		d.OS.BIOS = &libvirtxml.DomainBIOS{UseSerial: "yes"}
	}
	return nil
}

// setQEMUArgs adds what libvirt's schema cannot say: the user-mode network with
// its forwards and the NIC, and the CPU read-back capability dropped.
func setQEMUArgs(d *libvirtxml.Domain, p domainParams) {
	s := p.Spec
	args := []string{
		"-netdev", netdevOption(s, p.SSHPort, p.NetdevExtra),
		"-device", nicOption(s, p.NICExtra),
	}
	caps := &libvirtxml.DomainQEMUCapabilities{Del: []libvirtxml.DomainQEMUCapabilitiesEntry{
		// After starting qemu, libvirt reads back the guest CPU. With this
		// capability it does so one property at a time (~800 QMP qom-get
		// calls, 0.3 s of every boot here); without it, it reads qemu's
		// feature words in two calls. Same -cpu, same guest.
		{Name: "cpu-unavailable-features"},
	}}
	d.QEMUCapabilities = caps
	d.QEMUCommandline = &libvirtxml.DomainQEMUCommandline{}
	for _, a := range args {
		d.QEMUCommandline.Args = append(d.QEMUCommandline.Args, libvirtxml.DomainQEMUCommandlineArg{Value: a})
	}
}

func disks(s vm.Spec, chain []backingFile) []libvirtxml.DomainDisk {
	out := []libvirtxml.DomainDisk{{
		Device: "disk",
		// The overlay is thrown away after the job: no need for qemu to
		// flush it to stable storage.
		Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2", Cache: "unsafe", Discard: "unmap"},
		Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: s.Disk}},
		// Spelled out so libvirt neither probes nor relabels the base.
		BackingStore: backingStore(chain),
		Target:       &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
		Boot:         &libvirtxml.DomainDeviceBoot{Order: 1},
	}}
	if s.Seed == "" {
		return out
	}
	seed := libvirtxml.DomainDisk{
		Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
		Source:   &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: s.Seed}},
		ReadOnly: &libvirtxml.DomainDiskReadOnly{},
		// The seed is not bootable, but it must be in the boot order: OVMF only
		// initialises controllers of listed devices, and an IDE channel it left
		// untouched hides the CD-ROM from Linux's ata_piix (seen with Debian 12
		// under OVMF on i440fx).
		Boot: &libvirtxml.DomainDeviceBoot{Order: 2},
	}
	if s.SeedBus == vm.SeedDisk {
		seed.Device = "disk"
		seed.Target = &libvirtxml.DomainDiskTarget{Dev: "vdb", Bus: "virtio"}
	} else if s.MachineType() == vm.MachineQ35 {
		seed.Device = "cdrom"
		seed.Target = &libvirtxml.DomainDiskTarget{Dev: "sda", Bus: "sata"}
	} else {
		seed.Device = "cdrom"
		seed.Target = &libvirtxml.DomainDiskTarget{Dev: "hdc", Bus: "ide"}
	}
	return append(out, seed)
}

// netdevOption is the -netdev value: restricted slirp on the link-local
// guest network, the SSH host forward, and the metadata guest forward.
func netdevOption(s vm.Spec, sshPort int, extra []string) string {
	opts := []string{
		"user",
		"id=" + netdevID,
		"restrict=on",
		"ipv6=off",
		"net=" + guestNet,
		"host=" + guestHost,
		"hostfwd=tcp:127.0.0.1:" + strconv.Itoa(sshPort) + "-:22",
	}
	if s.MetadataAddr != "" {
		// A chardev (legacy "tcp:HOST:PORT,opts" syntax), not "cmd:": qemu
		// keeps libvirt's seccomp policy (no spawn) and runs no process per
		// guest connection.
		chardev := fmt.Sprintf("tcp:%s,reconnect=%d", s.MetadataAddr, metadataReconnect)
		opts = append(opts, fmt.Sprintf("guestfwd=tcp:%s:%d-%s", metadataIP, metadataPort, optEscape(chardev)))
	}
	for _, e := range extra {
		opts = append(opts, optEscape(e))
	}
	return strings.Join(opts, ",")
}

func nicOption(s vm.Spec, extra []string) string {
	bus := "pci.0"
	if s.MachineType() == vm.MachineQ35 {
		bus = "pcie.0"
	}
	opts := []string{"virtio-net-pci", "netdev=" + netdevID, "bus=" + bus, "addr=" + nicAddr}
	if s.MAC != "" {
		opts = append(opts, "mac="+strings.ToLower(s.MAC))
	}
	for _, e := range extra {
		opts = append(opts, optEscape(e))
	}
	return strings.Join(opts, ",")
}

// optEscape escapes a value inside a qemu option list: a literal comma is
// written twice.
func optEscape(v string) string { return strings.ReplaceAll(v, ",", ",,") }
