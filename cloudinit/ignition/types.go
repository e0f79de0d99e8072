package ignition

// The types below are the Ignition config, spec 3.0 to 3.5, as Go structs: the union
// of the fields those versions define, each optional scalar a pointer so a job's config
// passes through the merge with exactly the fields it set. Ignition checks in the guest
// that a field exists in the version the config names; these types only know the
// union.

// Config is a whole Ignition config.
type Config struct {
	Ignition        Ignition         `json:"ignition"`
	KernelArguments *KernelArguments `json:"kernelArguments,omitempty"`
	Passwd          *Passwd          `json:"passwd,omitempty"`
	Storage         *Storage         `json:"storage,omitempty"`
	Systemd         *Systemd         `json:"systemd,omitempty"`
}

// Ignition is the config's own section: its spec version and how it is fetched.
type Ignition struct {
	Version  string          `json:"version"`
	Config   *IgnitionConfig `json:"config,omitempty"`
	Proxy    *Proxy          `json:"proxy,omitempty"`
	Security *Security       `json:"security,omitempty"`
	Timeouts *Timeouts       `json:"timeouts,omitempty"`
}

// IgnitionConfig names other configs to merge into or replace this one.
type IgnitionConfig struct {
	Merge   []Resource `json:"merge,omitempty"`
	Replace *Resource  `json:"replace,omitempty"`
}

// Proxy is the HTTP proxy Ignition fetches through.
type Proxy struct {
	HTTPProxy  *string  `json:"httpProxy,omitempty"`
	HTTPSProxy *string  `json:"httpsProxy,omitempty"`
	NoProxy    []string `json:"noProxy,omitempty"`
}

// Security holds the TLS settings of Ignition's fetches.
type Security struct {
	TLS *TLS `json:"tls,omitempty"`
}

// TLS lists extra certificate authorities.
type TLS struct {
	CertificateAuthorities []Resource `json:"certificateAuthorities,omitempty"`
}

// Timeouts bound Ignition's HTTP fetches, in seconds.
type Timeouts struct {
	HTTPResponseHeaders *int `json:"httpResponseHeaders,omitempty"`
	HTTPTotal           *int `json:"httpTotal,omitempty"`
}

// Resource is something Ignition fetches: a data:, http(s):, s3:, gs:, tftp: or arn: URL.
type Resource struct {
	Compression  *string       `json:"compression,omitempty"`
	HTTPHeaders  []HTTPHeader  `json:"httpHeaders,omitempty"`
	Source       *string       `json:"source,omitempty"`
	Verification *Verification `json:"verification,omitempty"`
}

// HTTPHeader is one header sent with a fetch.
type HTTPHeader struct {
	Name  string  `json:"name"`
	Value *string `json:"value,omitempty"`
}

// Verification is the hash ("sha512-<hex>") a fetched resource must have.
type Verification struct {
	Hash *string `json:"hash,omitempty"`
}

// KernelArguments are arguments the kernel command line must or must not have.
type KernelArguments struct {
	ShouldExist    []string `json:"shouldExist,omitempty"`
	ShouldNotExist []string `json:"shouldNotExist,omitempty"`
}

// Passwd holds the users and groups Ignition creates or changes.
type Passwd struct {
	Users  []User  `json:"users,omitempty"`
	Groups []Group `json:"groups,omitempty"`
}

// User is one account.
type User struct {
	Name              string   `json:"name"`
	Gecos             *string  `json:"gecos,omitempty"`
	Groups            []string `json:"groups,omitempty"`
	HomeDir           *string  `json:"homeDir,omitempty"`
	NoCreateHome      *bool    `json:"noCreateHome,omitempty"`
	NoLogInit         *bool    `json:"noLogInit,omitempty"`
	NoUserGroup       *bool    `json:"noUserGroup,omitempty"`
	PasswordHash      *string  `json:"passwordHash,omitempty"`
	PrimaryGroup      *string  `json:"primaryGroup,omitempty"`
	ShouldExist       *bool    `json:"shouldExist,omitempty"`
	SSHAuthorizedKeys []string `json:"sshAuthorizedKeys,omitempty"`
	Shell             *string  `json:"shell,omitempty"`
	System            *bool    `json:"system,omitempty"`
	UID               *int     `json:"uid,omitempty"`
}

// Group is one group.
type Group struct {
	Name         string  `json:"name"`
	Gid          *int    `json:"gid,omitempty"`
	PasswordHash *string `json:"passwordHash,omitempty"`
	ShouldExist  *bool   `json:"shouldExist,omitempty"`
	System       *bool   `json:"system,omitempty"`
}

// Storage holds disks, file systems and the files Ignition writes.
type Storage struct {
	Directories []Directory  `json:"directories,omitempty"`
	Disks       []Disk       `json:"disks,omitempty"`
	Files       []File       `json:"files,omitempty"`
	Filesystems []Filesystem `json:"filesystems,omitempty"`
	Links       []Link       `json:"links,omitempty"`
	Luks        []Luks       `json:"luks,omitempty"`
	Raid        []Raid       `json:"raid,omitempty"`
}

// Node is what files, directories and links share.
type Node struct {
	Path      string    `json:"path"`
	Overwrite *bool     `json:"overwrite,omitempty"`
	User      *NodeUser `json:"user,omitempty"`
	Group     *NodeUser `json:"group,omitempty"`
}

// NodeUser names a node's owner or group by id or name.
type NodeUser struct {
	ID   *int    `json:"id,omitempty"`
	Name *string `json:"name,omitempty"`
}

// File is a regular file.
type File struct {
	Node
	Append   []Resource `json:"append,omitempty"`
	Contents *Resource  `json:"contents,omitempty"`
	Mode     *int       `json:"mode,omitempty"`
}

// Directory is a directory.
type Directory struct {
	Node
	Mode *int `json:"mode,omitempty"`
}

// Link is a symbolic or hard link.
type Link struct {
	Node
	Hard   *bool   `json:"hard,omitempty"`
	Target *string `json:"target,omitempty"`
}

// Disk is a partitioned disk.
type Disk struct {
	Device     string      `json:"device"`
	Partitions []Partition `json:"partitions,omitempty"`
	WipeTable  *bool       `json:"wipeTable,omitempty"`
}

// Partition is one GPT partition.
type Partition struct {
	GUID               *string `json:"guid,omitempty"`
	Label              *string `json:"label,omitempty"`
	Number             int     `json:"number,omitempty"`
	Resize             *bool   `json:"resize,omitempty"`
	ShouldExist        *bool   `json:"shouldExist,omitempty"`
	SizeMiB            *int    `json:"sizeMiB,omitempty"`
	StartMiB           *int    `json:"startMiB,omitempty"`
	TypeGUID           *string `json:"typeGuid,omitempty"`
	WipePartitionEntry *bool   `json:"wipePartitionEntry,omitempty"`
}

// Filesystem is a file system Ignition makes or mounts.
type Filesystem struct {
	Device         string   `json:"device"`
	Format         *string  `json:"format,omitempty"`
	Label          *string  `json:"label,omitempty"`
	MountOptions   []string `json:"mountOptions,omitempty"`
	Options        []string `json:"options,omitempty"`
	Path           *string  `json:"path,omitempty"`
	UUID           *string  `json:"uuid,omitempty"`
	WipeFilesystem *bool    `json:"wipeFilesystem,omitempty"`
}

// Luks is an encrypted volume.
type Luks struct {
	Name        string    `json:"name"`
	Cex         *Cex      `json:"cex,omitempty"`
	Clevis      *Clevis   `json:"clevis,omitempty"`
	Device      *string   `json:"device,omitempty"`
	Discard     *bool     `json:"discard,omitempty"`
	KeyFile     *Resource `json:"keyFile,omitempty"`
	Label       *string   `json:"label,omitempty"`
	OpenOptions []string  `json:"openOptions,omitempty"`
	Options     []string  `json:"options,omitempty"`
	UUID        *string   `json:"uuid,omitempty"`
	WipeVolume  *bool     `json:"wipeVolume,omitempty"`
}

// Cex is an IBM Z crypto-express key for a LUKS volume.
type Cex struct {
	Enabled *bool `json:"enabled,omitempty"`
}

// Clevis binds a LUKS volume to Tang servers, a TPM2 or a custom pin.
type Clevis struct {
	Custom    *ClevisCustom `json:"custom,omitempty"`
	Tang      []Tang        `json:"tang,omitempty"`
	Threshold *int          `json:"threshold,omitempty"`
	Tpm2      *bool         `json:"tpm2,omitempty"`
}

// ClevisCustom is a custom Clevis pin.
type ClevisCustom struct {
	Config       *string `json:"config,omitempty"`
	NeedsNetwork *bool   `json:"needsNetwork,omitempty"`
	Pin          *string `json:"pin,omitempty"`
}

// Tang is one Tang server.
type Tang struct {
	URL           string  `json:"url"`
	Advertisement *string `json:"advertisement,omitempty"`
	Thumbprint    *string `json:"thumbprint,omitempty"`
}

// Raid is a software RAID array.
type Raid struct {
	Name    string   `json:"name"`
	Devices []string `json:"devices,omitempty"`
	Level   *string  `json:"level,omitempty"`
	Options []string `json:"options,omitempty"`
	Spares  *int     `json:"spares,omitempty"`
}

// Systemd holds the units Ignition writes, enables or masks.
type Systemd struct {
	Units []Unit `json:"units,omitempty"`
}

// Unit is one systemd unit.
type Unit struct {
	Name     string   `json:"name"`
	Contents *string  `json:"contents,omitempty"`
	Dropins  []Dropin `json:"dropins,omitempty"`
	Enabled  *bool    `json:"enabled,omitempty"`
	Mask     *bool    `json:"mask,omitempty"`
}

// Dropin is a unit drop-in file.
type Dropin struct {
	Name     string  `json:"name"`
	Contents *string `json:"contents,omitempty"`
}
