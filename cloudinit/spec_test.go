package cloudinit

import (
	"errors"
	"strings"
	"testing"
)

func validSpec(t testing.TB) Spec {
	return Spec{InstanceID: "i-1", Hostname: "vet", Keys: testKeys(t)}
}

func TestValidate(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	for _, tc := range []struct {
		name   string
		mutate func(*Spec)
		field  string // "" = valid
		msg    string // substring of the error
	}{
		{"ok", func(s *Spec) {}, "", ""},
		{"ok fqdn", func(s *Spec) { s.Hostname = "a-1.b2.example" }, "", ""},
		{"ok max label", func(s *Spec) { s.Hostname = long(63) + ".x" }, "", ""},
		{"ok max hostname", func(s *Spec) { s.Hostname = strings.Repeat(long(62)+".", 4) + "a" }, "", ""},
		{"ok numeric", func(s *Spec) { s.Hostname = "123" }, "", ""},
		{"ok id chars", func(s *Spec) { s.InstanceID = "A.b_c-9" }, "", ""},
		{"ok id max", func(s *Spec) { s.InstanceID = long(64) }, "", ""},
		{"ok configdrive", func(s *Spec) { s.Datasource = ConfigDrive; s.MAC = "52:54:00:AA:bb:01" }, "", ""},
		{"hostname empty", func(s *Spec) { s.Hostname = "" }, "hostname", "required"},
		{"hostname upper", func(s *Spec) { s.Hostname = "Vet" }, "hostname", "lowercase"},
		{"hostname underscore", func(s *Spec) { s.Hostname = "a_b" }, "hostname", `'_'`},
		{"hostname space", func(s *Spec) { s.Hostname = "a b" }, "hostname", `' '`},
		{"hostname leading dash", func(s *Spec) { s.Hostname = "-a" }, "hostname", "starts or ends"},
		{"hostname trailing dash", func(s *Spec) { s.Hostname = "a.b-" }, "hostname", "starts or ends"},
		{"hostname trailing dot", func(s *Spec) { s.Hostname = "a.b." }, "hostname", "label 3 is empty"},
		{"hostname empty label", func(s *Spec) { s.Hostname = "a..b" }, "hostname", "empty"},
		{"hostname label too long", func(s *Spec) { s.Hostname = long(64) }, "hostname", "at most 63"},
		{"hostname too long", func(s *Spec) { s.Hostname = strings.Repeat(long(62)+".", 4) + "ab" }, "hostname", "at most 253"},
		{"hostname unicode", func(s *Spec) { s.Hostname = "vét" }, "hostname", "not one of"},
		{"id empty", func(s *Spec) { s.InstanceID = "" }, "instance_id", "required"},
		{"id too long", func(s *Spec) { s.InstanceID = long(65) }, "instance_id", "at most 64"},
		{"id slash", func(s *Spec) { s.InstanceID = "a/b" }, "instance_id", `'/'`},
		{"id colon", func(s *Spec) { s.InstanceID = "a:b" }, "instance_id", `':'`},
		{"keys", func(s *Spec) { s.Keys = nil }, "keys", "required"},
		{"datasource", func(s *Spec) { s.Datasource = "ec2" }, "datasource", "not one of"},
		{"mac", func(s *Spec) { s.MAC = "52:54:00" }, "mac", "not a MAC"},
		{"mac long", func(s *Spec) { s.MAC = "02:00:5e:10:00:00:00:01" }, "mac", "48-bit"},
		{"mac multicast", func(s *Spec) { s.MAC = "01:00:5e:00:00:01" }, "mac", "multicast"},
		{"name control", func(s *Spec) { s.Name = "a\nb" }, "name", "control"},
		{"az long", func(s *Spec) { s.AvailabilityZone = long(256) }, "availability_zone", "longer"},
		{"cloud_config yaml", func(s *Spec) { s.CloudConfig = []byte("a: [1\n") }, "cloud_config", "invalid YAML"},
		{"cloud_config list", func(s *Spec) { s.CloudConfig = []byte("- a\n- b\n") }, "cloud_config", "must be a YAML mapping, got sequence"},
		{"cloud_config scalar", func(s *Spec) { s.CloudConfig = []byte("#cloud-config\nhello\n") }, "cloud_config", "must be a YAML mapping, got scalar str"},
		{"cloud_config script", func(s *Spec) { s.CloudConfig = []byte("#!/bin/sh\necho hi\n") }, "cloud_config", "shell scripts"},
		{"cloud_config mime", func(s *Spec) { s.CloudConfig = []byte("Content-Type: multipart/mixed\n") }, "cloud_config", "not supported"},
		{"cloud_config include", func(s *Spec) { s.CloudConfig = []byte("#include\nhttp://x\n") }, "cloud_config", "not supported"},
		{"cloud_config two docs", func(s *Spec) { s.CloudConfig = []byte("a: 1\n---\nb: 2\n") }, "cloud_config", "more than one"},
		{"cloud_config dup key", func(s *Spec) { s.CloudConfig = []byte("a: 1\na: 2\n") }, "cloud_config", "already defined"},
		{"cloud_config utf8", func(s *Spec) { s.CloudConfig = []byte("a: \xff\n") }, "cloud_config", "UTF-8"},
		{"cloud_config too big", func(s *Spec) { s.CloudConfig = make([]byte, MaxUserDataSize+1) }, "cloud_config", "at most"},
		{"cloud_config keys scalar", func(s *Spec) { s.CloudConfig = []byte("ssh_authorized_keys: ssh-ed25519 AAAA\n") }, "cloud_config", "must be a list of strings"},
		{"cloud_config keys nested", func(s *Spec) { s.CloudConfig = []byte("ssh_authorized_keys: [[a]]\n") }, "cloud_config", "must be a list of strings"},
		{"cloud_config alias bomb", func(s *Spec) {
			s.CloudConfig = []byte("a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n")
		}, "cloud_config", "excessive aliasing"},
		{"cloud_config merge key", func(s *Spec) { s.CloudConfig = []byte("b: &b {fqdn: evil.example}\n<<: *b\n") }, "cloud_config", "merge key"},
		{"cloud_config complex key", func(s *Spec) { s.CloudConfig = []byte("? [a]\n: b\n") }, "cloud_config", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec(t)
			tc.mutate(&s)
			err := s.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := s.Files(); err != nil {
					t.Fatalf("Files: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted it, want a %s error", tc.field)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("error %q is not a FieldError for %s", err, tc.field)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%q, ErrInvalid) = false", err)
			}
			if !strings.HasPrefix(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q, want %q prefix and %q", err, tc.field+": ", tc.msg)
			}
			// Every renderer refuses the same spec with the same error.
			if _, ferr := s.Files(); ferr == nil || ferr.Error() != err.Error() {
				t.Errorf("Files error %v, want %v", ferr, err)
			}
			if werr := s.WriteISO(discard{}); werr == nil {
				t.Error("WriteISO accepted an invalid spec")
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestValidateReportsEveryField(t *testing.T) {
	err := Spec{Hostname: "Bad_Host", MAC: "x"}.Validate()
	got := map[string]bool{}
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if errors.As(e, &fe) {
			got[fe.Field] = true
		}
	}
	for _, f := range []string{"instance_id", "hostname", "keys", "mac"} {
		if !got[f] {
			t.Errorf("no %s error in %q", f, err)
		}
	}
}

func TestParseDatasource(t *testing.T) {
	for in, want := range map[string]Datasource{"": NoCloud, "NoCloud": NoCloud, "configdrive": ConfigDrive, "config-drive": ConfigDrive, "openstack": ConfigDrive} {
		if got, err := ParseDatasource(in); err != nil || got != want {
			t.Errorf("ParseDatasource(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseDatasource("ec2"); !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "datasource: ") {
		t.Errorf("ParseDatasource(ec2) error = %v", err)
	}
}

func TestLabelAndMAC(t *testing.T) {
	s := validSpec(t)
	if s.Label() != "cidata" {
		t.Errorf("NoCloud label %q", s.Label())
	}
	s.Datasource = ConfigDrive
	if s.Label() != "config-2" {
		t.Errorf("ConfigDrive label %q", s.Label())
	}
	if m := s.MACAddress(); m != DefaultMAC("i-1") || !strings.HasPrefix(m, "52:54:00:") || len(m) != 17 {
		t.Errorf("default MAC %q", m)
	}
	if DefaultMAC("i-1") == DefaultMAC("i-2") {
		t.Error("DefaultMAC does not depend on the instance id")
	}
	s.MAC = "52:54:00:AB:CD:EF"
	if m := s.MACAddress(); m != "52:54:00:ab:cd:ef" {
		t.Errorf("MACAddress = %q", m)
	}
}
