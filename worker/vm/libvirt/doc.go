// Package libvirt implements vm.Hypervisor on a local libvirtd: transient
// qemu domains defined with libvirtxml, started over go-libvirt's RPC protocol
// on the local socket, with user-mode networking passed to qemu directly (no
// libvirt network). Every RPC runs under a deadline; a call that overruns it
// closes the connection (so the call returns), fails with vm.ErrTimeout, and
// the next call reconnects.
//
// # The machine
//
// Machine type pc (i440fx, seed on an IDE CD-ROM: what OpenStack gives BIOS
// guests, and what images without AHCI drivers can read) for BIOS, q35 (seed
// on a SATA CD-ROM) for UEFI; Spec.Machine overrides. OVMF from the usual
// distribution paths, with a per-machine NVRAM copied from its template. A
// virtio disk (the overlay, cache=unsafe: it is thrown away), serial console
// on a pty logged by virtlogd to Spec.ConsoleLog (live, whether or not anyone
// reads the pty; SeaBIOS writes there too), virtio-rng, no balloon, USB or
// graphics. Type qemu with <cpu mode='maximum'/> for TCG, type kvm with
// host-passthrough for KVM.
//
// Networking is qemu's slirp with restrict=on on 169.254.169.0/24 (guest gets
// 169.254.169.15 by DHCP), SSH forwarded from a free 127.0.0.1 port, and when
// Spec.MetadataAddr is set, guestfwd=tcp:169.254.169.254:80-tcp:ADDR,reconnect=1
// (a chardev socket to the worker's metadata stream). Both go
// through <qemu:commandline>; the NIC sits at a fixed root-bus slot (0x10)
// because qemu would otherwise take the slot libvirt assigns to its own
// first device.
//
// # What the host must allow (found on Debian 12, libvirt 9.0, QEMU 7.2)
//
// qemu runs as libvirt-qemu:libvirt-qemu (groups kvm). libvirt chowns the
// files it is handed (overlay, seed, NVRAM) for the run and restores them
// after, but never the directories above them: every directory on those paths
// must be world-searchable (0755 or 0711). Boot checks this and fails with
// vm.ErrInvalidSpec instead of libvirt's later error.
//
// Backing images: probing the chain itself, libvirt chowns every layer to
// libvirt-qemu and restores only the top one, so a shared cached base would
// stay owned by libvirt-qemu for good. Boot reads the chain from the qcow2
// headers and spells it out with <seclabel model='dac' relabel='no'/> on each
// layer: the base keeps its owner, and qemu reads it through its mode, so base
// images must be world-readable (0644) in world-searchable directories. The
// overlay must record its backing format (qemu-img create -F).
//
// The console log is written by virtlogd (root), created 0600 root: its
// directory needs no qemu access, and its reader must be root.
//
// The metadata forward is a chardev, not a command ("cmd:"): libslirp hands
// every guest connection to 169.254.169.254:80 to the one socket qemu opened to
// Spec.MetadataAddr, and the worker serves that stream (see the metadata
// package). qemu runs no process per guest connection, so libvirt's default
// seccomp policy (-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,
// resourcecontrol=deny) stays in force: a guest opening a thousand connections
// costs the host a thousand small slirp sockets inside qemu and nothing else.
// (The earlier "cmd:" forward forked and exec'd a helper per connection, which
// needs spawn and elevateprivileges allowed and had no bound.) libvirt logs
// these domains as tainted (custom-argv); that is expected.
//
// /dev/kvm must be root:kvm 0660 (what udev sets). If it is 0600, libvirt
// probes KVM as root (works) but checks it as libvirt-qemu (fails), judges its
// qemu capability cache stale on every read and re-probes qemu: 2-4 s per RPC,
// about 65 s per domain start. New logs a warning when it sees this.
//
// Boot also drops libvirt's cpu-unavailable-features capability: with it,
// libvirt reads the started guest's CPU back one property at a time (about
// 800 QMP calls, 0.3 s per boot); without it, in two calls.
//
// Destroy waits for qemu's exit to be reaped; where PID 1 reaps late (some
// sandboxes) that alone takes about 1.5 s.
package libvirt
