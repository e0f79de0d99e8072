package inspect

import (
	"fmt"
	"strings"
	"testing"

	"github.com/imagevet/imagevet/jobs"
)

var (
	edKey  = jobs.HostKeyFile{Path: "/etc/ssh/ssh_host_ed25519_key.pub", Type: "ssh-ed25519", Fingerprint: "SHA256:ed"}
	rsaKey = jobs.HostKeyFile{Path: "/etc/ssh/ssh_host_rsa_key.pub", Type: "ssh-rsa", Fingerprint: "SHA256:rsa"}
)

// brief renders findings as "rule level path" lines, with the detail's key words
// checked separately.
func brief(fs []jobs.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%s %s %s\n", f.Rule, f.Level, f.Path)
	}
	return b.String()
}

func TestHygieneRules(t *testing.T) {
	cases := []struct {
		name   string
		ev     jobs.HygieneEvidence
		boot   Boot
		levels jobs.HygieneLevels
		want   string
		detail string // in the first finding's detail
	}{
		{name: "clean image", ev: jobs.HygieneEvidence{MachineID: "", SSHPasswordAuth: "yes"}, boot: Boot{HostKey: "SHA256:new"}},
		{name: "uninitialized machine id", ev: jobs.HygieneEvidence{MachineID: "uninitialized\n"}},
		{name: "host keys presented", ev: jobs.HygieneEvidence{HostKeys: []jobs.HostKeyFile{edKey, rsaKey}}, boot: Boot{HostKey: "SHA256:ed"},
			want:   "shared-host-keys fail /etc/ssh/ssh_host_ed25519_key.pub\nshared-host-keys fail /etc/ssh/ssh_host_rsa_key.pub\n",
			detail: "presents this ssh-ed25519 key (SHA256:ed)"},
		{name: "presented key first", ev: jobs.HygieneEvidence{HostKeys: []jobs.HostKeyFile{edKey, rsaKey}}, boot: Boot{HostKey: "SHA256:rsa"},
			want:   "shared-host-keys fail /etc/ssh/ssh_host_rsa_key.pub\nshared-host-keys fail /etc/ssh/ssh_host_ed25519_key.pub\n",
			detail: "presents this ssh-rsa key (SHA256:rsa)"},
		{name: "host keys replaced", ev: jobs.HygieneEvidence{HostKeys: []jobs.HostKeyFile{edKey}}, boot: Boot{HostKey: "SHA256:fresh"},
			want: "host-keys warn /etc/ssh/ssh_host_ed25519_key.pub\n", detail: "replaced it (the server presented SHA256:fresh)"},
		{name: "host keys the image's cloud-init keeps", ev: jobs.HygieneEvidence{HostKeys: []jobs.HostKeyFile{edKey, rsaKey}, KeepsHostKeysAt: "/etc/cloud/cloud.cfg.d/90-keep.cfg"},
			boot:   Boot{HostKey: "SHA256:fresh"},
			want:   "shared-host-keys fail /etc/ssh/ssh_host_ed25519_key.pub\nshared-host-keys fail /etc/ssh/ssh_host_rsa_key.pub\n",
			detail: "keeps at first boot (ssh_deletekeys: false in /etc/cloud/cloud.cfg.d/90-keep.cfg)"},
		{name: "host keys, no boot", ev: jobs.HygieneEvidence{HostKeys: []jobs.HostKeyFile{edKey}},
			want: "host-keys warn /etc/ssh/ssh_host_ed25519_key.pub\n", detail: "did not show"},
		{name: "shared host keys set to warn", ev: jobs.HygieneEvidence{HostKeys: []jobs.HostKeyFile{edKey}}, boot: Boot{HostKey: "SHA256:ed"},
			levels: jobs.HygieneLevels{jobs.RuleSharedHostKeys: jobs.LevelWarn}, want: "shared-host-keys warn /etc/ssh/ssh_host_ed25519_key.pub\n"},
		{name: "machine id", ev: jobs.HygieneEvidence{MachineID: "3f6c1a7e\n"}, want: "machine-id fail /etc/machine-id\n", detail: "machine id 3f6c1a7e:"},
		{name: "machine id off", ev: jobs.HygieneEvidence{MachineID: "3f6c1a7e"}, levels: jobs.HygieneLevels{jobs.RuleMachineID: jobs.LevelOff}},
		{name: "password accounts", ev: jobs.HygieneEvidence{PasswordAccounts: []string{"root", "debian"}, EmptyPasswords: []string{"root"}, SSHPasswordAuth: "no"},
			want: "password-account fail /etc/shadow\npassword-account fail /etc/shadow\n", detail: "account root has an EMPTY password"},
		{name: "sshd password auth set", ev: jobs.HygieneEvidence{SSHPasswordAuth: "yes", SSHPasswordAuthAt: "/etc/ssh/sshd_config.d/50-pw.conf:2", SSHPermitRootLogin: "yes"},
			want: "ssh-password-auth fail /etc/ssh/sshd_config.d/50-pw.conf\n", detail: "at /etc/ssh/sshd_config.d/50-pw.conf:2: sshd accepts password logins, root's included"},
		{name: "sshd default with a password", ev: jobs.HygieneEvidence{SSHPasswordAuth: "yes", PasswordAccounts: []string{"debian"}, SSHPermitRootLogin: "prohibit-password"},
			levels: jobs.HygieneLevels{jobs.RulePasswordAccount: jobs.LevelOff},
			want:   "ssh-password-auth fail /etc/ssh/sshd_config\n", detail: "default PasswordAuthentication yes is left in place and debian has a password"},
		{name: "sshd password auth off", ev: jobs.HygieneEvidence{SSHPasswordAuth: "no", SSHPasswordAuthAt: "/etc/ssh/sshd_config:57"}},
		{name: "authorized keys", ev: jobs.HygieneEvidence{AuthorizedKeys: []string{"/root/.ssh/authorized_keys", "/home/debian/.ssh/authorized_keys"}},
			want: "authorized-keys fail /root/.ssh/authorized_keys\nauthorized-keys fail /home/debian/.ssh/authorized_keys\n", detail: "logs in to every tenant's server"},
		{name: "warnings", ev: jobs.HygieneEvidence{
			CloudInitState: []string{"/var/lib/cloud/instances/iid-build"}, Histories: []string{"/root/.bash_history"},
			DHCPLeases: []string{"/var/lib/dhcp/dhclient.eth0.leases"}, NetRules: []string{"/etc/udev/rules.d/70-persistent-net.rules"},
			WorldWritableEtc: []string{"/etc/motd"}, PrivateKeys: []string{"/home/debian/.ssh/id_ed25519"}},
			want: "cloud-init-state warn /var/lib/cloud/instances/iid-build\nshell-history warn /root/.bash_history\n" +
				"dhcp-leases warn /var/lib/dhcp/dhclient.eth0.leases\nnet-rules warn /etc/udev/rules.d/70-persistent-net.rules\n" +
				"world-writable-etc warn /etc/motd\nprivate-keys warn /home/debian/.ssh/id_ed25519\n",
			detail: "cloud-init's state from the build"},
		{name: "history raised to fail", ev: jobs.HygieneEvidence{Histories: []string{"/root/.bash_history"}},
			levels: jobs.HygieneLevels{jobs.RuleShellHistory: jobs.LevelFail}, want: "shell-history fail /root/.bash_history\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Hygiene(&c.ev, c.boot, c.levels)
			if b := brief(got); b != c.want {
				t.Fatalf("findings:\n%s\nwant:\n%s", b, c.want)
			}
			if c.detail != "" && !strings.Contains(got[0].Detail, c.detail) {
				t.Errorf("detail %q does not say %q", got[0].Detail, c.detail)
			}
			for _, f := range got {
				if f.Path == "" || f.Detail == "" {
					t.Errorf("finding without its file or detail: %+v", f)
				}
			}
		})
	}
	if got := Hygiene(nil, Boot{}, nil); got != nil {
		t.Errorf("nil evidence: %v", got)
	}
}

// Every rule of jobs.HygieneRules has exactly one row here, in the same order, so
// findings come out in the documented order.
func TestHygieneRowsCoverTheRules(t *testing.T) {
	if len(hygieneRows) != len(jobs.HygieneRules) {
		t.Fatalf("%d rows for %d rules", len(hygieneRows), len(jobs.HygieneRules))
	}
	for i, r := range jobs.HygieneRules {
		if hygieneRows[i].rule != r.Name {
			t.Errorf("row %d is %s, rule %s", i, hygieneRows[i].rule, r.Name)
		}
	}
}
