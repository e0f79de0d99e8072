package cloudinit

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Seed corpora live in testdata/fuzz/FuzzMerge and testdata/fuzz/FuzzRender.

// FuzzMerge merges arbitrary job cloud-config with ours. Either it is refused with a
// cloud_config FieldError, or the result parses, keeps our identity keys, authorizes
// our client keys first, keeps every other job key, and is a fixed point of the merge.
func FuzzMerge(f *testing.F) {
	f.Add([]byte("#cloud-config\nruncmd: [echo hi]\n"))
	f.Add([]byte("hostname: x\nssh_authorized_keys: [a, a, b]\n"))
	f.Add([]byte("a: &x {b: *x}\n"))
	keys := testKeys(f)
	f.Fuzz(func(t *testing.T, cloudConfig []byte) {
		s := Spec{InstanceID: "i-fuzz", Hostname: "fuzz.example", Keys: keys, CloudConfig: cloudConfig}
		out, err := s.UserData()
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "cloud_config" || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not a cloud_config FieldError", err)
			}
			return
		}
		if !bytes.HasPrefix(out, []byte("#cloud-config\n")) {
			t.Fatalf("no #cloud-config header:\n%s", out)
		}
		var m map[string]any
		if err := yaml.Unmarshal(out, &m); err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, out)
		}
		if m["hostname"] != "fuzz" || m["fqdn"] != "fuzz.example" || m["ssh_deletekeys"] != true || m["preserve_hostname"] != false {
			t.Fatalf("identity keys not ours:\n%s", out)
		}
		sk, _ := m["ssh_keys"].(map[string]any)
		want := keys.sshKeys()
		if len(sk) != 4 || sk["ed25519_private"] != want.ED25519Private || sk["rsa_private"] != want.RSAPrivate {
			t.Fatalf("ssh_keys not ours:\n%s", out)
		}
		ak, _ := m["ssh_authorized_keys"].([]any)
		if len(ak) < 2 || ak[0] != keys.AuthorizedKeys()[0] || ak[1] != keys.AuthorizedKeys()[1] {
			t.Fatalf("our authorized keys not first:\n%s", out)
		}
		job, err := parseJobConfig(cloudConfig)
		if err != nil || job == nil {
			return
		}
		outKeys := topLevelKeySet(t, out)
		for i := 0; i < len(job.Content); i += 2 {
			if k := job.Content[i].Value; !outKeys[k] {
				t.Fatalf("job key %q lost:\n%s", k, out)
			}
		}
		s.CloudConfig = out
		again, err := s.UserData()
		if err != nil {
			t.Fatalf("re-merging our own output: %v\n%s", err, out)
		}
		var m2 map[string]any
		if err := yaml.Unmarshal(again, &m2); err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("merge is not a fixed point (%v):\n%s\n---\n%s", err, out, again)
		}
	})
}

func topLevelKeySet(t *testing.T, doc []byte) map[string]bool {
	set := map[string]bool{}
	for _, k := range topLevelKeys(t, doc) {
		set[k] = true
	}
	return set
}

// FuzzRender renders whole seeds from arbitrary identities and job data: invalid input
// is refused by Validate with the same error Files returns; valid input yields exactly
// the contract's files, whose identities parse back unchanged.
func FuzzRender(f *testing.F) {
	f.Add("i-1", "vet", []byte(""), false)
	f.Add("0f5c3b2a-8d1e", "vet.example.test", []byte("runcmd: [x]\n"), true)
	keys := testKeys(f)
	f.Fuzz(func(t *testing.T, instanceID, hostname string, cloudConfig []byte, configDrive bool) {
		s := Spec{InstanceID: instanceID, Hostname: hostname, Keys: keys, CloudConfig: cloudConfig}
		if configDrive {
			s.Datasource = ConfigDrive
		}
		verr := s.Validate()
		files, err := s.Files()
		if (verr == nil) != (err == nil) {
			t.Fatalf("Validate: %v, Files: %v", verr, err)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		var names []string
		if configDrive {
			for _, d := range ConfigDriveDirs() {
				names = append(names, d+"/"+ConfigDriveMetaData, d+"/"+ConfigDriveNetworkData, d+"/"+ConfigDriveUserData, d+"/"+ConfigDriveVendorData)
			}
		} else {
			names = []string{NoCloudMetaData, NoCloudNetworkConfig, NoCloudUserData}
		}
		got := slices.Sorted(func(yield func(string) bool) {
			for n := range files {
				if !yield(n) {
					return
				}
			}
		})
		if slices.Sort(names); !slices.Equal(got, names) {
			t.Fatalf("files %q, want %q", got, names)
		}
		for _, n := range got {
			if strings.ToLower(n) != n || strings.ContainsAny(n, ";") {
				t.Fatalf("file name %q would not survive ISO9660 as is", n)
			}
		}
		if configDrive {
			var md struct {
				UUID     string `json:"uuid"`
				Hostname string `json:"hostname"`
			}
			if err := json.Unmarshal(files["openstack/latest/meta_data.json"], &md); err != nil || md.UUID != instanceID || md.Hostname != hostname {
				t.Fatalf("meta_data.json: %v %+v", err, md)
			}
			if !bytes.Equal(files["openstack/latest/meta_data.json"], files["openstack/"+ConfigDriveVersion+"/meta_data.json"]) {
				t.Fatal("dated meta_data.json differs from latest")
			}
			var vd map[string]string
			if err := json.Unmarshal(files["openstack/latest/vendor_data.json"], &vd); err != nil || len(vd) != 0 {
				t.Fatalf("vendor_data.json: %v %q", err, vd)
			}
			return
		}
		var md map[string]any
		if err := yaml.Unmarshal(files[NoCloudMetaData], &md); err != nil || md["instance-id"] != instanceID || md["local-hostname"] != hostname {
			t.Fatalf("meta-data: %v\n%s", err, files[NoCloudMetaData])
		}
	})
}
