package cloudinit

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Tests in this file run the real cloud-init (Debian's package, 22.4 here): its schema
// validator, its datasource readers and its network renderers.

// cloudInitPython returns the interpreter cloud-init runs under (its script's #!), so
// `import cloudinit` works even when another python3 comes first in PATH.
func cloudInitPython(t *testing.T) string {
	t.Helper()
	ci := requireTool(t, "cloud-init")
	b, err := os.ReadFile(ci)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(strings.TrimPrefix(first, "#!"))
	if !strings.HasPrefix(first, "#!") || len(fields) == 0 {
		t.Fatalf("%s has no #! line", ci)
	}
	if filepath.Base(fields[0]) == "env" && len(fields) > 1 {
		return fields[1]
	}
	return fields[0]
}

// schemaCheck runs `cloud-init schema --config-file` on a cloud-config document.
func schemaCheck(t *testing.T, doc []byte) (string, error) {
	t.Helper()
	ci := requireTool(t, "cloud-init")
	p := filepath.Join(t.TempDir(), "cloud-config")
	if err := os.WriteFile(p, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ci, "schema", "--config-file", p).CombinedOutput()
	return string(out), err
}

func TestCloudInitSchema(t *testing.T) {
	// The validator must be able to fail, or passing proves nothing.
	if out, err := schemaCheck(t, []byte("#cloud-config\npackage_update: maybe\n")); err == nil {
		t.Fatalf("cloud-init schema accepted an invalid document:\n%s", out)
	}
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			files, err := tc.spec.Files()
			if err != nil {
				t.Fatal(err)
			}
			docs := map[string][]byte{}
			for name, b := range files {
				if bytes.HasPrefix(b, []byte(cloudConfigHeader+"\n")) {
					docs[name] = b
				}
			}
			if len(docs) == 0 {
				t.Fatal("no cloud-config rendered")
			}
			for name, doc := range docs {
				if out, err := schemaCheck(t, doc); err != nil || !strings.Contains(out, "Valid cloud-config") {
					t.Errorf("cloud-init schema %s: %v\n%s\n%s", name, err, out, doc)
				}
			}
		})
	}
}

// seedView is what testdata/cloudinit/read_seed.py reports cloud-init saw.
type seedView struct {
	Version          string   `json:"version"`
	InstanceID       string   `json:"instance_id"`
	LocalHostname    string   `json:"local_hostname"`
	PublicKeys       []string `json:"public_keys"`
	UserData         string   `json:"userdata"`
	VendorData       *string  `json:"vendordata"`
	AvailabilityZone string   `json:"availability_zone"`
	LaunchIndex      int      `json:"launch_index"`
	Interfaces       []struct {
		Name       string   `json:"name"`
		MACAddress string   `json:"mac_address"`
		Subnets    []string `json:"subnets"`
	} `json:"interfaces"`
	CloudConfig struct {
		Hostname          string   `json:"hostname"`
		FQDN              *string  `json:"fqdn"`
		SSHAuthorizedKeys []string `json:"ssh_authorized_keys"`
		SSHKeys           []string `json:"ssh_keys"`
	} `json:"cloud_config"`
}

// TestCloudInitReadsSeed writes each seed as an ISO, takes the files back out of it
// under their Linux names, and has cloud-init's own NoCloud / ConfigDrive code read them.
func TestCloudInitReadsSeed(t *testing.T) {
	python := cloudInitPython(t)
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, files := readISO(t, writeTempISO(t, tc.spec))
			seed := t.TempDir()
			for name, b := range files {
				p := filepath.Join(seed, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			kind := string(tc.spec.datasource())
			cmd := exec.Command(python, filepath.Join("testdata", "cloudinit", "read_seed.py"), kind, seed, tc.spec.MACAddress())
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("cloud-init rejected the seed: %v\n%s", err, stderr.String())
			}
			var v seedView
			if err := json.Unmarshal(out, &v); err != nil {
				t.Fatalf("decode %s: %v", out, err)
			}
			spec := tc.spec
			if v.InstanceID != spec.InstanceID {
				t.Errorf("instance-id = %q, want %q", v.InstanceID, spec.InstanceID)
			}
			if v.LocalHostname != spec.Hostname {
				t.Errorf("local-hostname = %q, want %q", v.LocalHostname, spec.Hostname)
			}
			if want := spec.Keys.AuthorizedKeys(); !slices.Equal(sortedCopy(v.PublicKeys), sortedCopy(want)) {
				t.Errorf("public keys = %q, want %q", v.PublicKeys, want)
			}
			wantUD := files[map[Datasource]string{NoCloud: NoCloudUserData, ConfigDrive: "openstack/latest/" + ConfigDriveUserData}[spec.datasource()]]
			if v.UserData != string(wantUD) {
				t.Errorf("user-data differs:\n%s", v.UserData)
			}
			if v.VendorData != nil {
				t.Errorf("vendor data = %q, want none", *v.VendorData)
			}
			if spec.datasource() == ConfigDrive {
				if v.Version != ConfigDriveVersion {
					t.Errorf("cloud-init selected version %q, want %q", v.Version, ConfigDriveVersion)
				}
				if v.AvailabilityZone != spec.availabilityZone() || v.LaunchIndex != 0 {
					t.Errorf("az, launch_index = %q, %d", v.AvailabilityZone, v.LaunchIndex)
				}
			}
			if len(v.Interfaces) != 1 || v.Interfaces[0].MACAddress != spec.MACAddress() || !slices.Equal(v.Interfaces[0].Subnets, []string{"dhcp4"}) {
				t.Errorf("network = %+v, want one dhcp4 interface with MAC %s", v.Interfaces, spec.MACAddress())
			}
			host, _, dotted := strings.Cut(spec.Hostname, ".")
			if v.CloudConfig.Hostname != host {
				t.Errorf("cloud-config hostname = %q, want %q", v.CloudConfig.Hostname, host)
			}
			if dotted != (v.CloudConfig.FQDN != nil) || dotted && *v.CloudConfig.FQDN != spec.Hostname {
				t.Errorf("cloud-config fqdn = %v for hostname %q", v.CloudConfig.FQDN, spec.Hostname)
			}
			for _, k := range spec.Keys.AuthorizedKeys() {
				if !slices.Contains(v.CloudConfig.SSHAuthorizedKeys, k) {
					t.Errorf("ssh_authorized_keys lacks %q", k)
				}
			}
			if want := []string{"ed25519_private", "ed25519_public", "rsa_private", "rsa_public"}; !slices.Equal(v.CloudConfig.SSHKeys, want) {
				t.Errorf("ssh_keys = %q, want %q", v.CloudConfig.SSHKeys, want)
			}
		})
	}
}

func sortedCopy(s []string) []string { return slices.Sorted(slices.Values(s)) }

// TestNetworkConfigRenderers feeds network-config through cloud-init's renderers for
// the distro families we vet: each must bring up DHCP on the NIC with our MAC.
func TestNetworkConfigRenderers(t *testing.T) {
	ci := requireTool(t, "cloud-init")
	spec := Spec{InstanceID: "i-net", Hostname: "net", Keys: testKeys(t), MAC: "52:54:00:12:34:56"}
	netcfg, err := spec.NetworkConfig()
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "network-config")
	if err := os.WriteFile(in, netcfg, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ renderer, distro, want string }{
		{"eni", "debian", "inet dhcp"},
		{"netplan", "ubuntu", "dhcp4: true"},
		{"networkd", "debian", "DHCP=ipv4"},
		{"sysconfig", "centos", "BOOTPROTO=dhcp"},
	} {
		t.Run(r.renderer, func(t *testing.T) {
			outDir := t.TempDir()
			out, err := exec.Command(ci, "devel", "net-convert", "-p", in, "-k", "yaml", "-d", outDir, "-D", r.distro, "-O", r.renderer).CombinedOutput()
			if err != nil {
				t.Fatalf("net-convert: %v\n%s", err, out)
			}
			var all strings.Builder
			err = filepath.WalkDir(outDir, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				b, err := os.ReadFile(p)
				all.Write(b)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{r.want, "52:54:00:12:34:56"} {
				if !strings.Contains(all.String(), want) {
					t.Errorf("%s output lacks %q:\n%s", r.renderer, want, all.String())
				}
			}
		})
	}
}

// TestYAML11Readback has PyYAML, cloud-init's YAML reader (YAML 1.1), load strings that
// YAML 1.1 would turn into numbers, booleans or dates (a MAC of digits is base-60!);
// our YAML 1.2 encoder must quote them so each comes back as the same string.
func TestYAML11Readback(t *testing.T) {
	python := cloudInitPython(t)
	ids := []string{"1_000", "0x1F", "010", "0b101", "1.", "2024-01-01", "12", "on", "yes", "n", "-1", ".5", "i-abc"}
	hosts := []string{"on", "yes", "no", "off", "true", "123", "0x1f", "vet"}
	var specs []Spec
	for i, id := range ids {
		specs = append(specs, Spec{InstanceID: id, Hostname: hosts[i%len(hosts)], Keys: testKeys(t), MAC: "52:54:00:12:34:56"})
	}
	script := `import sys, json, yaml
docs = json.load(sys.stdin)
print(json.dumps([yaml.safe_load(d) for d in docs], default=repr))`
	var docs []string
	for _, s := range specs {
		files, err := s.Files()
		if err != nil {
			t.Fatalf("%q: %v", s.InstanceID, err)
		}
		docs = append(docs, string(files[NoCloudMetaData]), string(files[NoCloudUserData]), string(files[NoCloudNetworkConfig]))
	}
	in, _ := json.Marshal(docs)
	cmd := exec.Command(python, "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	var got []map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	for i, s := range specs {
		meta, user, net := got[3*i], got[3*i+1], got[3*i+2]
		if meta["instance-id"] != s.InstanceID || meta["local-hostname"] != s.Hostname {
			t.Errorf("meta-data read back as instance-id %#v, local-hostname %#v; want %q, %q", meta["instance-id"], meta["local-hostname"], s.InstanceID, s.Hostname)
		}
		if user["hostname"] != s.Hostname {
			t.Errorf("user-data hostname read back as %#v, want %q", user["hostname"], s.Hostname)
		}
		eth := net["ethernets"].(map[string]any)[primaryNIC].(map[string]any)["match"].(map[string]any)
		if eth["macaddress"] != "52:54:00:12:34:56" {
			t.Errorf("network-config macaddress read back as %#v", eth["macaddress"])
		}
	}
}
