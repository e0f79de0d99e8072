// Package cloudinit builds the seed a guest's cloud-init reads on first boot: a NoCloud
// (`cidata`) or OpenStack ConfigDrive (`config-2`) ISO9660 image, plus the per-job SSH
// identities the worker logs in and pins host keys with.
//
// # Layout
//
// NoCloud puts user-data, meta-data and network-config at the ISO root. ConfigDrive
// writes Nova's layout: meta_data.json, user_data, network_data.json and
// vendor_data.json (always {}) under both openstack/latest and
// openstack/[ConfigDriveVersion] (cloud-init picks the newest dated directory it
// knows). meta_data.json carries the uuid (the instance id) cloud-init requires.
//
// The worker's metadata server serves the same bytes through [Spec.UserData],
// [Spec.OpenStackMetaData], [Spec.OpenStackNetworkData] and [Spec.OpenStackVendorData].
// Every renderer validates the spec first; a *FieldError (errors.Is [ErrInvalid])
// means the job is at fault.
//
// Both network-config and network_data.json enable DHCPv4 on the NIC with
// [Spec.MACAddress]; network-config also matches the name e*. Renderers other than
// netplan (ifupdown, sysconfig, networkd) find the interface by that MAC, and
// cloud-init's ConfigDrive code fails without it, so the worker must give the domain's
// interface exactly that MAC.
//
// # User-data and the merge rule
//
// user-data is "#cloud-config" followed by YAML encoded from typed structs with
// 2-space indentation: hostname (and fqdn for a dotted Hostname), ssh_authorized_keys
// (the client keys), ssh_keys (the ed25519 and RSA host keys; RSA as PKCS#1 so OpenSSH
// releases older than 6.5 read it), ssh_deletekeys, ssh_genkeytypes, disable_root, and
// package_update/package_upgrade/package_reboot_if_required off so a boot never waits
// on a mirror the sandboxed guest cannot reach.
//
// A job's [Spec.CloudConfig] must be one YAML mapping of at most [MaxUserDataSize]
// bytes (the #cloud-config line is optional; scripts, MIME multipart, #include and
// templates are refused) and is merged at the top level:
//
//   - hostname, fqdn, preserve_hostname, ssh_keys and ssh_deletekeys are ours: the job's
//     values are dropped, since the worker checks the hostname and pins the host keys;
//   - ssh_authorized_keys is the union, ours first, duplicates removed;
//   - any other key we also set takes the job's value (mappings merge key by key,
//     the job winning at the leaves; lists and scalars are replaced whole);
//   - every other job key (runcmd, write_files, users, unknown keys...) passes through
//     unchanged, scalars verbatim, in the job's order after ours.
//
// Aliases in the job's YAML are expanded and anchors dropped before the merge, so the
// output never points at an anchor that moved. A top-level merge key (<<) is refused:
// it could bring back keys we own.
//
// # Known limit of the ISO library
//
// github.com/kdomanski/iso9660 writes plain ISO9660 only: no Joliet and no Rock Ridge.
// Names are stored lowercase with a ";1" version suffix; Linux (isofs, map=normal)
// shows them lowercased with ";1" stripped, so every name this package writes is
// already lowercase and within ISO9660 length limits, and reaches the guest exactly as
// the seed contract spells it (user-data, openstack/latest/meta_data.json). Windows
// guests running cloudbase-init look for the config drive through Joliet names and
// will not read these seeds; vetting Windows images needs a Joliet-capable writer.
// The writer also leaves the path tables empty and file times zero, which Linux
// ignores (it walks directory records) but stricter readers may not.
package cloudinit
