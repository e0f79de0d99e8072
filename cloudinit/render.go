package cloudinit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// Paths of seed files inside the ISO, exactly as Linux shows them.
const (
	NoCloudUserData      = "user-data"
	NoCloudMetaData      = "meta-data"
	NoCloudNetworkConfig = "network-config"

	ConfigDriveMetaData    = "meta_data.json"
	ConfigDriveUserData    = "user_data"
	ConfigDriveNetworkData = "network_data.json"
	ConfigDriveVendorData  = "vendor_data.json"
)

// ConfigDriveDirs returns the version directories of a ConfigDrive seed, each holding
// the same four files: openstack/latest and openstack/[ConfigDriveVersion].
func ConfigDriveDirs() []string {
	return []string{"openstack/latest", "openstack/" + ConfigDriveVersion}
}

// noCloudMetaData is NoCloud's meta-data.
type noCloudMetaData struct {
	InstanceID    string   `yaml:"instance-id"`
	LocalHostname string   `yaml:"local-hostname"`
	PublicKeys    []string `yaml:"public-keys"`
}

// networkConfig is a network-config version 2 document.
type networkConfig struct {
	Version   int                 `yaml:"version"`
	Ethernets map[string]ethernet `yaml:"ethernets"`
}

type ethernet struct {
	Match ethernetMatch `yaml:"match"`
	DHCP4 bool          `yaml:"dhcp4"`
}

type ethernetMatch struct {
	Name       string `yaml:"name"`
	MACAddress string `yaml:"macaddress"`
}

// primaryNIC is the network-config id of the guest NIC. Renderers that cannot match
// (ifupdown, sysconfig) name the interface found by MAC; when none has that MAC they
// fall back to this name, the old kernel default.
const primaryNIC = "eth0"

// openStackMetaData is Nova's meta_data.json.
type openStackMetaData struct {
	UUID             string            `json:"uuid"`
	Name             string            `json:"name"`
	Hostname         string            `json:"hostname"`
	LaunchIndex      int               `json:"launch_index"`
	AvailabilityZone string            `json:"availability_zone"`
	PublicKeys       map[string]string `json:"public_keys"`
	Keys             []openStackKey    `json:"keys"`
	Meta             map[string]string `json:"meta"`
	Files            []any             `json:"files"`
	Devices          []any             `json:"devices"`
}

type openStackKey struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Data string `json:"data"`
}

// openStackNetworkData is Nova's network_data.json.
type openStackNetworkData struct {
	Links    []openStackLink    `json:"links"`
	Networks []openStackNetwork `json:"networks"`
	Services []any              `json:"services"`
}

type openStackLink struct {
	ID                 string `json:"id"`
	VIFID              string `json:"vif_id"`
	Type               string `json:"type"`
	MTU                int    `json:"mtu"`
	EthernetMACAddress string `json:"ethernet_mac_address"`
}

type openStackNetwork struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Link      string `json:"link"`
	NetworkID string `json:"network_id"`
}

// keyNames names the client keys in meta-data, in AuthorizedKeys order.
var keyNames = []string{KeyComment, KeyComment + "-rsa"}

// KeyName is the name meta_data.json (and a metadata service's key listing) gives
// the i-th of Keys.AuthorizedKeys.
func KeyName(i int) string {
	if i >= 0 && i < len(keyNames) {
		return keyNames[i]
	}
	return fmt.Sprintf("%s-%d", KeyComment, i+1)
}

// Files renders every seed file, keyed by its path in the ISO as Linux shows it
// (e.g. "user-data", "openstack/latest/meta_data.json"). Like every renderer it
// validates the spec first and returns Validate's error.
func (s Spec) Files() (map[string][]byte, error) {
	job, err := s.check()
	if err != nil {
		return nil, err
	}
	userData, err := s.userData(job)
	if err != nil {
		return nil, err
	}
	if s.datasource() != NoCloud {
		// ConfigDrive, and for Metadata what the metadata service serves.
		return s.configDriveFiles(userData)
	}
	return s.noCloudFiles(userData)
}

func (s Spec) noCloudFiles(userData []byte) (map[string][]byte, error) {
	var meta, netcfg bytes.Buffer
	if err := encodeYAML(&meta, noCloudMetaData{
		InstanceID:    s.InstanceID,
		LocalHostname: s.Hostname,
		PublicKeys:    s.Keys.AuthorizedKeys(),
	}); err != nil {
		return nil, fmt.Errorf("encode meta-data: %w", err)
	}
	if err := encodeYAML(&netcfg, s.networkConfig()); err != nil {
		return nil, fmt.Errorf("encode network-config: %w", err)
	}
	files := map[string][]byte{
		NoCloudUserData:      userData,
		NoCloudMetaData:      meta.Bytes(),
		NoCloudNetworkConfig: netcfg.Bytes(),
	}
	return files, nil
}

// NetworkConfig renders NoCloud's network-config: version 2, DHCPv4 on the ethernet
// named e* with the spec's MAC.
func (s Spec) NetworkConfig() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := encodeYAML(&buf, s.networkConfig()); err != nil {
		return nil, fmt.Errorf("encode network-config: %w", err)
	}
	return buf.Bytes(), nil
}

func (s Spec) networkConfig() networkConfig {
	return networkConfig{
		Version: 2,
		Ethernets: map[string]ethernet{
			primaryNIC: {Match: ethernetMatch{Name: "e*", MACAddress: s.MACAddress()}, DHCP4: true},
		},
	}
}

func (s Spec) configDriveFiles(userData []byte) (map[string][]byte, error) {
	meta, err := s.openStackMetaData()
	if err != nil {
		return nil, err
	}
	netData, err := s.openStackNetworkData()
	if err != nil {
		return nil, err
	}
	vendor, err := s.openStackVendorData()
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, dir := range ConfigDriveDirs() {
		files[path.Join(dir, ConfigDriveMetaData)] = meta
		files[path.Join(dir, ConfigDriveUserData)] = userData
		files[path.Join(dir, ConfigDriveNetworkData)] = netData
		files[path.Join(dir, ConfigDriveVendorData)] = vendor
	}
	return files, nil
}

// OpenStackMetaData renders Nova's meta_data.json, as written to a ConfigDrive seed
// and served by the worker's metadata server.
func (s Spec) OpenStackMetaData() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s.openStackMetaData()
}

func (s Spec) openStackMetaData() ([]byte, error) {
	md := openStackMetaData{
		UUID:             s.InstanceID,
		Name:             s.name(),
		Hostname:         s.Hostname,
		AvailabilityZone: s.availabilityZone(),
		PublicKeys:       map[string]string{},
		Meta:             map[string]string{},
		Files:            []any{},
		Devices:          []any{},
	}
	for i, line := range s.Keys.AuthorizedKeys() {
		name := KeyName(i)
		md.PublicKeys[name] = line
		md.Keys = append(md.Keys, openStackKey{Name: name, Type: "ssh", Data: line})
	}
	return marshalJSON(md)
}

// OpenStackNetworkData renders Nova's network_data.json: one link with the spec's
// MAC and an ipv4_dhcp network on it.
func (s Spec) OpenStackNetworkData() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s.openStackNetworkData()
}

func (s Spec) openStackNetworkData() ([]byte, error) {
	id := "tap" + strings.ReplaceAll(s.MACAddress(), ":", "")
	return marshalJSON(openStackNetworkData{
		Links: []openStackLink{{
			ID: id, VIFID: s.InstanceID, Type: "ethernet", MTU: 1500,
			EthernetMACAddress: s.MACAddress(),
		}},
		Networks: []openStackNetwork{{ID: "network0", Type: "ipv4_dhcp", Link: id, NetworkID: "imagevet"}},
		Services: []any{},
	})
}

// OpenStackVendorData renders vendor_data.json: {}, as a Nova without vendor data
// serves it.
func (s Spec) OpenStackVendorData() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s.openStackVendorData()
}

func (s Spec) openStackVendorData() ([]byte, error) {
	return marshalJSON(map[string]string{})
}

func marshalJSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	return append(b, '\n'), nil
}
