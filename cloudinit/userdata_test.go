package cloudinit

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func renderUserData(t *testing.T, cloudConfig string) ([]byte, map[string]any) {
	t.Helper()
	s := validSpec(t)
	s.Hostname = "vet.example.test"
	s.CloudConfig = []byte(cloudConfig)
	out, err := s.UserData()
	if err != nil {
		t.Fatalf("UserData: %v", err)
	}
	if !bytes.HasPrefix(out, []byte("#cloud-config\n")) {
		t.Fatalf("user-data does not start with #cloud-config:\n%s", out)
	}
	var m map[string]any
	if err := yaml.Unmarshal(out, &m); err != nil {
		t.Fatalf("user-data does not parse: %v\n%s", err, out)
	}
	return out, m
}

func TestMergeRule(t *testing.T) {
	k := testKeys(t)
	out, m := renderUserData(t, `#cloud-config
hostname: evil
fqdn: evil.example.com
preserve_hostname: true
ssh_deletekeys: false
ssh_keys: {ed25519_private: junk}
ssh_authorized_keys: [ssh-ed25519 AAAAjob job@x, ssh-ed25519 AAAAjob job@x]
package_update: true
ssh_genkeytypes: [ecdsa]
ssh_pwauth: yes
packages: [curl]
x_custom: {a: 1}
`)
	if m["hostname"] != "vet" || m["fqdn"] != "vet.example.test" || m["preserve_hostname"] != false || m["ssh_deletekeys"] != true {
		t.Errorf("identity keys not ours: hostname=%v fqdn=%v preserve=%v deletekeys=%v", m["hostname"], m["fqdn"], m["preserve_hostname"], m["ssh_deletekeys"])
	}
	want := k.sshKeys()
	if sk := m["ssh_keys"].(map[string]any); sk["ed25519_private"] != want.ED25519Private || sk["rsa_public"] != want.RSAPublic || len(sk) != 4 {
		t.Errorf("ssh_keys not ours: %v", sk)
	}
	keys := m["ssh_authorized_keys"].([]any)
	wantKeys := []any{k.AuthorizedKeys()[0], k.AuthorizedKeys()[1], "ssh-ed25519 AAAAjob job@x"}
	if !reflect.DeepEqual(keys, wantKeys) {
		t.Errorf("ssh_authorized_keys = %q, want ours first, then the job's once: %q", keys, wantKeys)
	}
	if m["package_update"] != true || !reflect.DeepEqual(m["ssh_genkeytypes"], []any{"ecdsa"}) {
		t.Errorf("job did not win on a default: package_update=%v ssh_genkeytypes=%v", m["package_update"], m["ssh_genkeytypes"])
	}
	if m["package_upgrade"] != false || m["disable_root"] != true {
		t.Errorf("defaults lost: package_upgrade=%v disable_root=%v", m["package_upgrade"], m["disable_root"])
	}
	if !reflect.DeepEqual(m["packages"], []any{"curl"}) || !reflect.DeepEqual(m["x_custom"], map[string]any{"a": 1}) {
		t.Errorf("job keys not passed through: packages=%v x_custom=%v", m["packages"], m["x_custom"])
	}
	// Scalars pass through verbatim: cloud-init's YAML 1.1 reads "yes" as true.
	if !bytes.Contains(out, []byte("\nssh_pwauth: yes\n")) {
		t.Errorf("ssh_pwauth not verbatim:\n%s", out)
	}
	// Ours come first, in struct order; the job's new keys follow in its order.
	order := topLevelKeys(t, out)
	if strings.Join(order, ",") != "hostname,fqdn,preserve_hostname,ssh_authorized_keys,ssh_keys,ssh_deletekeys,ssh_genkeytypes,disable_root,package_update,package_upgrade,package_reboot_if_required,ssh_pwauth,packages,x_custom" {
		t.Errorf("key order %v", order)
	}
}

func topLevelKeys(t *testing.T, doc []byte) []string {
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := 0; i < len(n.Content[0].Content); i += 2 {
		keys = append(keys, n.Content[0].Content[i].Value)
	}
	return keys
}

func TestMergeAliasesExpanded(t *testing.T) {
	// The anchor sits under a key we drop (hostname) and one we move (package_update).
	out, m := renderUserData(t, "hostname: &h x\npackage_update: &p true\nruncmd: [*h, *p]\nbootcmd: &b [a]\nwrite_files_note: *b\n")
	if bytes.ContainsAny(out, "&*") {
		t.Errorf("anchors or aliases left in output:\n%s", out)
	}
	if !reflect.DeepEqual(m["runcmd"], []any{"x", true}) || !reflect.DeepEqual(m["write_files_note"], []any{"a"}) {
		t.Errorf("aliases not expanded: runcmd=%v write_files_note=%v", m["runcmd"], m["write_files_note"])
	}
}

func TestMergeNothing(t *testing.T) {
	s := validSpec(t)
	base, err := s.UserData()
	if err != nil {
		t.Fatal(err)
	}
	for _, cc := range []string{"", "#cloud-config\n", "#cloud-config\r\n# only a comment\n", "~\n", "{}\n", "\ufeff#cloud-config\n"} {
		s.CloudConfig = []byte(cc)
		got, err := s.UserData()
		if err != nil {
			t.Errorf("%q: %v", cc, err)
			continue
		}
		if !bytes.Equal(got, base) {
			t.Errorf("%q changed user-data:\n%s", cc, got)
		}
	}
}

func TestMergeIdempotent(t *testing.T) {
	first, m1 := renderUserData(t, "runcmd: [echo hi]\nssh_authorized_keys: [ssh-ed25519 AAAAjob job]\nx: {y: [1, 2]}\n")
	again, m2 := renderUserData(t, string(first))
	if !reflect.DeepEqual(m1, m2) {
		t.Errorf("merging our own output changed it:\n%s\n---\n%s", first, again)
	}
}

func TestMergeValueNested(t *testing.T) {
	parse := func(s string) *yaml.Node {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(s), &n); err != nil {
			t.Fatal(err)
		}
		return n.Content[0]
	}
	merged := mergeValue(parse("a: {b: 1, c: [1]}\nd: 1\n"), parse("a: {c: [2], e: 3}\nf: 4\n"))
	var got map[string]any
	if err := merged.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": map[string]any{"b": 1, "c": []any{2}, "e": 3}, "d": 1, "f": 4}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mergeValue = %v, want %v", got, want)
	}
}

func TestUserDataContract(t *testing.T) {
	// The seed contract's minimum, spelled as it says.
	s := validSpec(t)
	out, err := s.UserData()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"#cloud-config\nhostname: vet\n",
		"\nssh_authorized_keys:\n  - ssh-ed25519 AAAA",
		" imagevet\n  - ssh-rsa AAAA",
		"\nssh_keys:\n  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n",
		"\n    -----END OPENSSH PRIVATE KEY-----\n  ed25519_public: ssh-ed25519 AAAA",
		"\n  rsa_private: |\n    -----BEGIN RSA PRIVATE KEY-----\n",
		"\n  rsa_public: ssh-rsa AAAA",
		"\nssh_deletekeys: true\n",
		"\npackage_update: false\npackage_upgrade: false\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("user-data lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "fqdn") {
		t.Errorf("fqdn set for a single-label hostname:\n%s", out)
	}
}
