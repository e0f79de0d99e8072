package cloudinit

import (
	"bytes"
	"flag"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/golden")

var (
	fixedKeysOnce sync.Once
	fixedKeys     *Keys
	fixedKeysErr  error
)

// testKeys returns Keys parsed from the committed test-only PEMs under testdata/keys,
// so rendering is reproducible.
func testKeys(tb testing.TB) *Keys {
	tb.Helper()
	fixedKeysOnce.Do(func() {
		read := func(name string) []byte {
			b, err := os.ReadFile(filepath.Join("testdata", "keys", name))
			if err != nil && fixedKeysErr == nil {
				fixedKeysErr = err
			}
			return b
		}
		ce, cr, he, hr := read("client_ed25519"), read("client_rsa"), read("host_ed25519"), read("host_rsa")
		if fixedKeysErr == nil {
			fixedKeys, fixedKeysErr = ParseKeys(ce, cr, he, hr)
		}
	})
	if fixedKeysErr != nil {
		tb.Fatalf("test keys: %v", fixedKeysErr)
	}
	return fixedKeys
}

// goldenCase is one rendered seed checked against testdata/golden/<name>/.
type goldenCase struct {
	name string
	spec Spec
}

const jobCloudConfig = `#cloud-config
# A job's own cloud-config: ours must win on identity, the rest passes through.
hostname: evil
fqdn: evil.example.com
preserve_hostname: true
ssh_deletekeys: false
ssh_keys:
  ed25519_private: not-a-key
ssh_pwauth: yes
package_update: true
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm9Xzr5n1m0pFJm1n4cI3Tl7k0GmKkWr5GqvJ2c0c7M operator@example
  - &dup ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm9Xzr5n1m0pFJm1n4cI3Tl7k0GmKkWr5GqvJ2c0c7M operator@example
write_files:
  - path: /etc/imagevet-job
    permissions: '0644'
    content: |
      written by the job
runcmd:
  - [sh, -c, "echo job ran > /run/imagevet-job"]
bootcmd: &cmds
  - echo early
x_unknown_key:
  nested: {kept: true, when: on}
  again: *cmds
`

func goldenCases(tb testing.TB) []goldenCase {
	k := testKeys(tb)
	return []goldenCase{
		{"nocloud-basic", Spec{Datasource: NoCloud, InstanceID: "i-0123456789abcdef", Hostname: "vet-debian-12", Keys: k}},
		{"nocloud-merge", Spec{
			Datasource: NoCloud, InstanceID: "imagevet-job-42", Hostname: "vet1.images.example.test", Keys: k,
			CloudConfig: []byte(jobCloudConfig),
		}},
		{"configdrive-basic", Spec{Datasource: ConfigDrive, InstanceID: "0f5c3b2a-8d1e-4c7a-9b6f-2e4d1a3c5b7e", Hostname: "vet-centos", Keys: k}},
		{"configdrive-extras", Spec{
			Datasource: ConfigDrive, InstanceID: "imagevet-job-43", Hostname: "vet2.images.example.test", Keys: k,
			MAC: "52:54:00:AB:CD:EF", Name: "Vetting run 43", AvailabilityZone: "az-sandbox",
			CloudConfig: []byte("runcmd:\n  - echo hello\n"),
		}},
	}
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			files, err := tc.spec.Files()
			if err != nil {
				t.Fatalf("Files: %v", err)
			}
			dir := filepath.Join("testdata", "golden", tc.name)
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				for name, content := range files {
					p := filepath.Join(dir, filepath.FromSlash(name))
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, content, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			golden := map[string][]byte{}
			err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(dir, p)
				golden[filepath.ToSlash(rel)], err = os.ReadFile(p)
				return err
			})
			if err != nil {
				t.Fatalf("read golden files (run with -update to create them): %v", err)
			}
			if got, want := slices.Sorted(maps.Keys(files)), slices.Sorted(maps.Keys(golden)); !slices.Equal(got, want) {
				t.Fatalf("files = %q, golden has %q", got, want)
			}
			for name, want := range golden {
				if !bytes.Equal(files[name], want) {
					t.Errorf("%s differs from golden (run with -update if intended):\n--- got ---\n%s\n--- want ---\n%s", name, files[name], want)
				}
			}
		})
	}
}

// TestRenderersMatchFiles checks that what the worker's metadata server serves through
// the single-file renderers is byte-for-byte what the seed carries.
func TestRenderersMatchFiles(t *testing.T) {
	for _, tc := range goldenCases(t) {
		files, err := tc.spec.Files()
		if err != nil {
			t.Fatal(err)
		}
		type render func() ([]byte, error)
		var checks map[string]render
		if tc.spec.datasource() == ConfigDrive {
			checks = map[string]render{
				"openstack/latest/" + ConfigDriveMetaData:    tc.spec.OpenStackMetaData,
				"openstack/latest/" + ConfigDriveUserData:    tc.spec.UserData,
				"openstack/latest/" + ConfigDriveNetworkData: tc.spec.OpenStackNetworkData,
				"openstack/latest/" + ConfigDriveVendorData:  tc.spec.OpenStackVendorData,
			}
		} else {
			checks = map[string]render{NoCloudUserData: tc.spec.UserData, NoCloudNetworkConfig: tc.spec.NetworkConfig}
		}
		for name, r := range checks {
			got, err := r()
			if err != nil {
				t.Fatalf("%s %s: %v", tc.name, name, err)
			}
			if !bytes.Equal(got, files[name]) {
				t.Errorf("%s: renderer for %s differs from the seed file", tc.name, name)
			}
		}
	}
}
