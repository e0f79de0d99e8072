package inspect

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/imagevet/imagevet/jobs"
)

// fakeFS is an image's files in memory; reads counts ReadFile calls, fail makes
// one path's reads fail.
type fakeFS struct {
	files map[string]fakeFile
	reads int
	fail  map[string]error
	extra []File // more entries Find returns (a hostile image's many files)
}

type fakeFile struct {
	data string
	mode fs.FileMode
}

func (f *fakeFS) ReadFile(_ context.Context, p string, max int64) ([]byte, error) {
	f.reads++
	if err := f.fail[p]; err != nil {
		return nil, err
	}
	file, ok := f.files[p]
	if !ok {
		if len(f.extra) > 0 && strings.HasPrefix(p, "/home/x/") {
			return []byte("junk"), nil // one of the many extra files
		}
		return nil, fmt.Errorf("open %s: %w", p, fs.ErrNotExist)
	}
	b := []byte(file.data)
	if int64(len(b)) > max {
		b = b[:max]
	}
	return b, nil
}

// Glob matches the files and the directories above them.
func (f *fakeFS) Glob(_ context.Context, pattern string) ([]string, error) {
	seen := map[string]bool{}
	for p := range f.files {
		for ; p != "/"; p = path.Dir(p) {
			if ok, _ := path.Match(pattern, p); ok {
				seen[p] = true
			}
		}
	}
	var out []string
	for p := range seen {
		out = append(out, p)
	}
	return out, nil
}

func (f *fakeFS) Find(_ context.Context, dir string) ([]File, error) {
	var out []File
	for p, file := range f.files {
		if strings.HasPrefix(p, dir+"/") {
			mode := file.mode
			if mode == 0 {
				mode = 0o644
			}
			out = append(out, File{Path: p, Mode: mode, Size: int64(len(file.data))})
		}
	}
	for _, x := range f.extra {
		if strings.HasPrefix(x.Path, dir+"/") {
			out = append(out, x)
		}
	}
	return out, nil
}

// hostKey makes an OpenSSH public key line and its fingerprint.
func hostKey(t *testing.T, seed byte) (string, string) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(slices.Repeat([]byte{seed}, ed25519.SeedSize))
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(ssh.MarshalAuthorizedKey(pub)), ssh.FingerprintSHA256(pub)
}

// debianClean is the part of a clean Debian 12 cloud image the readers look at.
func debianClean() map[string]fakeFile {
	return map[string]fakeFile{
		"/etc/machine-id": {data: ""},
		"/etc/shadow":     {data: "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\ndebian:!:19000::::::\n"},
		"/etc/passwd":     {data: "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\ndebian:x:1000:1000::/home/debian:/bin/bash\n"},
		"/etc/ssh/sshd_config": {data: "Include /etc/ssh/sshd_config.d/*.conf\n#PasswordAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM yes\n" +
			"Subsystem sftp /usr/lib/openssh/sftp-server\n# Match User anoncvs\n#\tX11Forwarding no\n"},
		"/etc/hostname":     {data: "localhost\n"},
		"/root/.bashrc":     {data: "# ~/.bashrc\n"},
		"/root/.ssh/.keep":  {data: ""},
		"/etc/resolv.conf":  {data: "", mode: fs.ModeSymlink | 0o777},
		"/etc/cloud/x.cfg":  {data: "a: b\n"},
		"/etc/tmpdir/.keep": {data: ""},
	}
}

func TestReadEvidenceClean(t *testing.T) {
	f := &fakeFS{files: debianClean()}
	ev, err := readEvidence(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	want := jobs.HygieneEvidence{SSHPasswordAuth: "yes", SSHPermitRootLogin: "prohibit-password"}
	if fmt.Sprint(*ev) != fmt.Sprint(want) {
		t.Errorf("evidence of a clean image:\n%+v\nwant\n%+v", *ev, want)
	}
	if got := Hygiene(ev, Boot{HostKey: "SHA256:fresh"}, nil); len(got) != 0 {
		t.Errorf("findings on a clean image: %v", got)
	}
}

// ssh_deletekeys as cloud-init merges its configuration: cloud.cfg, then
// cloud.cfg.d/*.cfg in name order, the last that sets it deciding; YAML 1.1's
// spellings; a file that is not YAML skipped.
func TestReadEvidenceKeepsHostKeys(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"default", map[string]string{"/etc/cloud/cloud.cfg": "users: [default]\n"}, ""},
		{"cloud.cfg false", map[string]string{"/etc/cloud/cloud.cfg": "ssh_deletekeys: false\n"}, "/etc/cloud/cloud.cfg"},
		{"drop-in says no", map[string]string{"/etc/cloud/cloud.cfg": "ssh_deletekeys: true\n", "/etc/cloud/cloud.cfg.d/90-keep.cfg": "ssh_deletekeys: No\n"},
			"/etc/cloud/cloud.cfg.d/90-keep.cfg"},
		{"a later drop-in deletes again", map[string]string{"/etc/cloud/cloud.cfg.d/10-keep.cfg": "ssh_deletekeys: false\n",
			"/etc/cloud/cloud.cfg.d/99-delete.cfg": "ssh_deletekeys: on\n"}, ""},
		{"not YAML", map[string]string{"/etc/cloud/cloud.cfg.d/50-x.cfg": "ssh_deletekeys: [\n"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := debianClean()
			for p, data := range c.files {
				files[p] = fakeFile{data: data}
			}
			ev, err := readEvidence(context.Background(), &fakeFS{files: files})
			if err != nil {
				t.Fatal(err)
			}
			if ev.KeepsHostKeysAt != c.want {
				t.Errorf("keeps host keys at %q, want %q", ev.KeepsHostKeysAt, c.want)
			}
		})
	}
}

func TestReadEvidenceDirty(t *testing.T) {
	edLine, edFP := hostKey(t, 1)
	files := debianClean()
	set := func(p, data string, mode fs.FileMode) { files[p] = fakeFile{data: data, mode: mode} }
	set("/etc/ssh/ssh_host_ed25519_key.pub", edLine, 0)
	set("/etc/ssh/ssh_host_ed25519_key", "-----BEGIN OPENSSH PRIVATE KEY-----\n...", 0o600)
	set("/etc/ssh/ssh_host_dsa_key.pub", "not a key\n", 0)
	set("/etc/machine-id", "3f6c1a7e9b2d4c5e8f0a1b2c3d4e5f60\n", 0o444)
	set("/etc/shadow", "root:$6$salt$hash:19000:0:99999:7:::\nguest::19000::::::\ndaemon:*:19000::::::\nold:!$6$x$y:1::::::\n", 0o640)
	// A Match block's value and a later line lose to the first global value, which
	// an Include (first line) gives.
	set("/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\nAuthorizedKeysFile .ssh/authorized_keys /etc/ssh/keys/%u\n"+
		"Match User backup\n  PermitRootLogin no\nMatch all\nPermitRootLogin yes\n", 0)
	set("/etc/ssh/sshd_config.d/10-match.conf", "Match Address 10.0.0.0/8\n\tPasswordAuthentication no\n", 0)
	set("/etc/ssh/sshd_config.d/50-pw.conf", "# builder\nPasswordAuthentication=yes\n", 0)
	set("/etc/ssh/keys/debian", "ssh-ed25519 AAAAC3Nza builder@ci\n", 0)
	set("/root/.ssh/authorized_keys", "# none\n\n", 0o600)
	set("/home/debian/.ssh/authorized_keys", "ssh-ed25519 AAAAC3Nza builder@ci\n", 0o600)
	set("/home/olduser/.ssh/authorized_keys2", "ssh-rsa AAAAB3 old\n", 0o600)
	set("/var/lib/cloud/instances/iid-build/sem/config_ssh", "x", 0)
	set("/var/lib/cloud/instances/i-0abc/obj.pkl", "x", 0)
	set("/root/.bash_history", "curl -u builder:hunter2 https://build.example/\n", 0o600)
	set("/home/debian/.python_history", "import os\n", 0o600)
	set("/home/debian/.lesshst", "", 0o600) // empty: no history
	set("/var/lib/dhcp/dhclient.eth0.leases", "lease {}\n", 0)
	set("/var/lib/dhcp/dhclient.leases", "", 0) // empty: no lease
	set("/var/lib/systemd/network/lease-2", "ADDRESS=10.0.2.15\n", 0)
	set("/etc/udev/rules.d/70-persistent-net.rules", "SUBSYSTEM==\"net\", ATTR{address}==\"52:54:00:12:34:56\", NAME=\"eth0\"\n", 0)
	set("/etc/motd", "hello\n", 0o666)
	set("/etc/scratch", "", fs.ModeDir|fs.ModeSticky|0o777) // like /tmp: fine
	set("/etc/open", "", fs.ModeDir|0o777)
	set("/home/debian/.ssh/id_rsa", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n", 0o600)
	set("/home/debian/deploy.ppk", "PuTTY-User-Key-File-3: ssh-ed25519\n", 0o600)
	set("/home/debian/notes.txt", "nothing\n", 0o644)
	f := &fakeFS{files: files}

	ev, err := readEvidence(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("host keys", ev.HostKeys, []jobs.HostKeyFile{{Path: "/etc/ssh/ssh_host_ed25519_key.pub", Type: "ssh-ed25519", Fingerprint: edFP}})
	check("machine id", ev.MachineID, "3f6c1a7e9b2d4c5e8f0a1b2c3d4e5f60")
	check("password accounts", ev.PasswordAccounts, []string{"root", "guest"})
	check("empty passwords", ev.EmptyPasswords, []string{"guest"})
	check("password auth", ev.SSHPasswordAuth+" at "+ev.SSHPasswordAuthAt, "yes at /etc/ssh/sshd_config.d/50-pw.conf:2")
	check("root login", ev.SSHPermitRootLogin, "yes")
	check("authorized keys", ev.AuthorizedKeys, []string{"/etc/ssh/keys/debian", "/home/debian/.ssh/authorized_keys", "/home/olduser/.ssh/authorized_keys2"})
	check("cloud-init", ev.CloudInitState, []string{"/var/lib/cloud/instances/i-0abc", "/var/lib/cloud/instances/iid-build"})
	check("histories", ev.Histories, []string{"/home/debian/.python_history", "/root/.bash_history"})
	check("leases", ev.DHCPLeases, []string{"/var/lib/dhcp/dhclient.eth0.leases", "/var/lib/systemd/network/lease-2"})
	check("net rules", ev.NetRules, []string{"/etc/udev/rules.d/70-persistent-net.rules"})
	check("world-writable", ev.WorldWritableEtc, []string{"/etc/motd", "/etc/open"})
	check("private keys", ev.PrivateKeys, []string{"/home/debian/.ssh/id_rsa", "/home/debian/deploy.ppk"})

	// The image's own key presented: shared, fail.
	var rules []string
	for _, fd := range Hygiene(ev, Boot{HostKey: edFP}, nil) {
		rules = append(rules, fd.Rule+"/"+fd.Level)
	}
	rules = slices.Compact(rules)
	check("rules", rules, []string{"shared-host-keys/fail", "machine-id/fail", "password-account/fail", "ssh-password-auth/fail",
		"authorized-keys/fail", "cloud-init-state/warn", "shell-history/warn", "dhcp-leases/warn", "net-rules/warn",
		"world-writable-etc/warn", "private-keys/warn"})
}

// A hostile image: an Include loop, and a quarter million files under /home. The
// reads stay bounded.
func TestReadEvidenceBounded(t *testing.T) {
	files := debianClean()
	files["/etc/ssh/sshd_config"] = fakeFile{data: "Include /etc/ssh/sshd_config\nInclude loop/*.conf\n"}
	files["/etc/ssh/loop/a.conf"] = fakeFile{data: "Include /etc/ssh/loop/*.conf\n"}
	f := &fakeFS{files: files}
	for i := range 250_000 {
		f.extra = append(f.extra, File{Path: fmt.Sprintf("/home/x/d%d/f%d", i/1000, i), Mode: 0o644, Size: 100})
	}
	// Another history in a big tree is still found.
	f.extra = append(f.extra, File{Path: "/home/x/.bash_history", Mode: 0o600, Size: 5})
	ev, err := readEvidence(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if f.reads > maxIncludeFiles+maxKeyCandidates+maxUsers*3+50 {
		t.Errorf("%d reads: not bounded", f.reads)
	}
	if !slices.Contains(ev.Histories, "/home/x/.bash_history") {
		t.Errorf("histories %v", ev.Histories)
	}
}

// A file that cannot be read is skipped and named; a dead session or an ended
// context gives no evidence at all.
func TestReadEvidenceErrors(t *testing.T) {
	files := debianClean()
	files["/etc/machine-id"] = fakeFile{data: "abc\n"}
	boom := errors.New("pread: Is a directory")
	f := &fakeFS{files: files, fail: map[string]error{"/etc/shadow": boom}}
	ev, err := readEvidence(context.Background(), f)
	var ee *EvidenceError
	if !errors.As(err, &ee) || ee.Path != "/etc/shadow" || !errors.Is(err, boom) {
		t.Errorf("err = %v, want an *EvidenceError for /etc/shadow wrapping the cause", err)
	}
	if ev == nil || ev.MachineID != "abc" {
		t.Errorf("the other evidence was not read: %+v", ev)
	}
	f.fail = map[string]error{"/etc/shadow": &SessionError{Op: "pread", Err: errors.New("guestfish exited")}}
	if ev, err := readEvidence(context.Background(), f); ev != nil || !errors.As(err, new(*SessionError)) {
		t.Errorf("dead session: %+v, %v", ev, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.fail = map[string]error{"/etc/machine-id": context.Canceled}
	if ev, err := readEvidence(ctx, f); ev != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %+v, %v", ev, err)
	}
	// The reader of the inspection's table sets the evidence.
	ins := &jobs.Inspection{}
	if err := readHygieneEvidence(context.Background(), &fakeFS{files: files}, ins); err != nil || ins.Evidence == nil || ins.Evidence.MachineID != "abc" {
		t.Errorf("reader: %v, %+v", err, ins.Evidence)
	}
}

func TestExpandKeysFile(t *testing.T) {
	for _, c := range []struct{ pattern, want string }{
		{".ssh/authorized_keys", "/home/ann/.ssh/authorized_keys"},
		{"%h/.ssh/keys", "/home/ann/.ssh/keys"},
		{"/etc/ssh/keys/%u", "/etc/ssh/keys/ann"},
		{"/etc/100%%/%u", "/etc/100%/ann"},
	} {
		if got := expandKeysFile(c.pattern, "ann", "/home/ann"); got != c.want {
			t.Errorf("%s → %s, want %s", c.pattern, got, c.want)
		}
	}
	var keys []string
	for _, l := range []string{"", "  ", "# c", "ssh-rsa AAAA"} {
		if hasKeyLine([]byte(l)) {
			keys = append(keys, l)
		}
	}
	sort.Strings(keys)
	if fmt.Sprint(keys) != "[ssh-rsa AAAA]" {
		t.Errorf("key lines %q", keys)
	}
}
