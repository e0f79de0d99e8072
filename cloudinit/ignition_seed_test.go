package cloudinit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/imagevet/imagevet/cloudinit/ignition"
)

// Ignition seeds: a config-2 drive (or only the metadata service) whose user_data is
// the Ignition config.
func TestIgnitionSeedConfigDrive(t *testing.T) {
	k := testKeys(t)
	s := Spec{Provisioning: Ignition, InstanceID: "i-flatcar-1", Hostname: "vet-flatcar", Keys: k,
		IgnitionConfig: []byte(`{"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "/etc/motd", "contents": {"source": "data:,hi"}}]}}`)}
	if s.Label() != "config-2" || !s.HasSeed() {
		t.Fatalf("an Ignition seed defaults to the config drive: label %q", s.Label())
	}
	label, files := readISO(t, writeTempISO(t, s))
	if label != "config-2" {
		t.Errorf("label %q", label)
	}
	ud := files["openstack/latest/user_data"]
	var c ignition.Config
	if err := json.Unmarshal(ud, &c); err != nil {
		t.Fatalf("user_data is not an Ignition config: %v\n%s", err, ud)
	}
	if c.Ignition.Version != "3.3.0" || c.Passwd.Users[0].Name != "core" || len(c.Storage.Files) != 2 {
		t.Errorf("user_data = %s", ud)
	}
	for _, key := range k.AuthorizedKeys() {
		if !strings.Contains(string(ud), key) {
			t.Errorf("user_data lacks the client key %q", key)
		}
	}
	// The metadata service serves the same bytes.
	if served, err := s.UserData(); err != nil || !bytes.Equal(served, ud) {
		t.Errorf("UserData() differs from the seed's user_data: %v", err)
	}
	// meta_data.json still carries the keys, for images with an afterburn-like agent.
	if !strings.Contains(string(files["openstack/latest/meta_data.json"]), k.AuthorizedKeys()[0]) {
		t.Error("meta_data.json lacks the client keys")
	}
	cfg, err := s.Ignition()
	if err != nil {
		t.Fatal(err)
	}
	if users, paths := cfg.Expected(); strings.Join(users, ",") != "core" || strings.Join(paths, ",") != "/etc/hostname,/etc/motd" {
		t.Errorf("Expected() = %v %v", users, paths)
	}
}

func TestIgnitionSeedMetadataOnly(t *testing.T) {
	s := Spec{Provisioning: Ignition, Datasource: Metadata, User: "admin", InstanceID: "i-flatcar-2", Hostname: "vet-fc", Keys: testKeys(t)}
	if s.HasSeed() {
		t.Fatal("the metadata datasource has no seed disk")
	}
	var buf bytes.Buffer
	if err := s.WriteISO(&buf); !errors.Is(err, ErrInvalid) {
		t.Fatalf("WriteISO for the metadata datasource = %v, want a field error", err)
	}
	ud, err := s.UserData()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ud), `"name": "admin"`) {
		t.Errorf("user_data does not create the job's user:\n%s", ud)
	}
}

func TestIgnitionSpecRefuses(t *testing.T) {
	k := testKeys(t)
	for name, tc := range map[string]struct {
		spec  Spec
		field string
		want  string
	}{
		"nocloud":             {Spec{Provisioning: Ignition, Datasource: NoCloud}, "datasource", "not a NoCloud seed"},
		"cloud_config":        {Spec{Provisioning: Ignition, CloudConfig: []byte("runcmd: []\n")}, "cloud_config", "give ignition_config"},
		"bad JSON":            {Spec{Provisioning: Ignition, IgnitionConfig: []byte(`{"ignition":`)}, "ignition_config", "invalid JSON"},
		"spec 2":              {Spec{Provisioning: Ignition, IgnitionConfig: []byte(`{"ignition": {"version": "2.2.0"}}`)}, "ignition_config", "spec 2.x"},
		"user":                {Spec{Provisioning: Ignition, User: "Core"}, "user", "not a valid login name"},
		"ignition on c-i":     {Spec{IgnitionConfig: []byte(`{"ignition": {"version": "3.3.0"}}`)}, "ignition_config", "only read by Ignition images"},
		"metadata on c-i":     {Spec{Datasource: Metadata}, "datasource", "for Ignition images"},
		"unknown provisioner": {Spec{Provisioning: "afterburn"}, "provisioning", "not one of"},
	} {
		t.Run(name, func(t *testing.T) {
			s := tc.spec
			s.InstanceID, s.Hostname, s.Keys = "i-1", "vet-1", k
			err := s.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %s: …%s", err, tc.field, tc.want)
			}
		})
	}
}
