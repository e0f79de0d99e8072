package inspect

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/imagevet/imagevet/jobs"
)

// Bounds of the evidence reads, so that a hostile image (a million files, a huge
// sshd_config, an Include loop) costs a bounded number of reads and bytes. Find
// itself is bounded by the FS.
const (
	maxConfig        = 1 << 20  // sshd_config and its includes, shadow, passwd
	maxSmall         = 64 << 10 // a host key, machine-id, an authorized_keys file
	maxListed        = 100      // paths kept per evidence list
	maxUsers         = 200      // passwd entries whose authorized_keys are looked for
	maxIncludeDepth  = 16       // as sshd's own limit
	maxIncludeFiles  = 256      // sshd_config files read in all
	maxKeyCandidates = 500      // files under /root and /home whose head is read
	maxKeySize       = 64 << 10 // larger files are no private key
	keyHead          = 4 << 10  // bytes read of a candidate
)

// historyNames are the files interactive programs leave their history in.
var historyNames = []string{".bash_history", ".ash_history", ".zsh_history", ".sh_history",
	".history", ".python_history", ".lesshst", ".mysql_history", ".psql_history",
	".sqlite_history", ".node_repl_history", ".wget-hsts", ".viminfo"}

// leaseGlobs find DHCP leases of the clients a cloud image may carry.
var leaseGlobs = []string{
	"/var/lib/dhcp/*.leases", "/var/lib/dhcp/*.lease", "/var/lib/dhclient/*",
	"/var/lib/NetworkManager/*.lease", "/var/lib/NetworkManager/*.leases",
	"/var/lib/systemd/network/*", "/var/lib/systemd/netif/leases/*",
	"/var/lib/dhcpcd/*.lease", "/var/lib/wicked/lease-*",
}

// privateKeyHeader is how PEM and OpenSSH private keys (and PuTTY's) begin.
var privateKeyHeader = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----|PuTTY-User-Key-File-`)

// EvidenceError is a read of the evidence that failed for a reason other than
// the file's absence (a directory where a file should be, an unreadable file).
type EvidenceError struct {
	Path string
	Err  error
}

func (e *EvidenceError) Error() string { return fmt.Sprintf("reading %s: %v", e.Path, e.Err) }
func (e *EvidenceError) Unwrap() error { return e.Err }

// maxSoftErrors is how many failed reads the evidence reports; it skips them all.
const maxSoftErrors = 5

// evidence gathers one image's evidence.
type evidence struct {
	ctx context.Context
	fs  FS
	ev  jobs.HygieneEvidence
	// hard is the error that stopped the reads (the session died, the context
	// ended); soft the reads that failed and were skipped.
	hard error
	soft []error
	// authorizedKeysFiles is sshd's AuthorizedKeysFile, once sshd is read.
	authorizedKeysFiles []string
}

// readEvidence reads what the hygiene rules judge from an image's file systems.
// Absent files are no evidence. A read that fails otherwise is skipped and
// reported as an *EvidenceError beside the evidence; when the session dies or
// ctx ends, the evidence is nil, as judging part of it could pass a dirty image.
func readEvidence(ctx context.Context, fsys FS) (*jobs.HygieneEvidence, error) {
	e := &evidence{ctx: ctx, fs: fsys}
	steps := []func(){e.hostKeys, e.machineID, e.shadow, e.sshd, e.cloudInit, e.leases, e.netRules, e.etc, e.homes}
	for _, step := range steps {
		if e.hard != nil {
			return nil, e.hard
		}
		step()
	}
	if e.hard != nil {
		return nil, e.hard
	}
	for _, list := range [][]string{e.ev.AuthorizedKeys, e.ev.CloudInitState, e.ev.Histories, e.ev.DHCPLeases,
		e.ev.NetRules, e.ev.WorldWritableEtc, e.ev.PrivateKeys} {
		sort.Strings(list)
	}
	return &e.ev, errors.Join(e.soft...)
}

// readHygieneEvidence is the inspection's reader (fs.go's table) of the evidence.
func readHygieneEvidence(ctx context.Context, fsys FS, ins *jobs.Inspection) error {
	ev, err := readEvidence(ctx, fsys)
	ins.Evidence = ev
	return err
}

// failed records a read that failed (not by absence): the session's end or the
// context's stops the reads, anything else skips the file.
func (e *evidence) failed(p string, err error) {
	var se *SessionError
	switch {
	case e.ctx.Err() != nil:
		e.hard = context.Cause(e.ctx)
	case errors.As(err, &se):
		e.hard = &EvidenceError{Path: p, Err: err}
	case len(e.soft) < maxSoftErrors:
		e.soft = append(e.soft, &EvidenceError{Path: p, Err: err})
	}
}

// read reads a file; absent or unreadable is (nil, false).
func (e *evidence) read(p string, max int64) ([]byte, bool) {
	if e.hard != nil {
		return nil, false
	}
	b, err := e.fs.ReadFile(e.ctx, p, max)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, false
	case err != nil:
		e.failed(p, err)
		return nil, false
	}
	return b, true
}

func (e *evidence) glob(pattern string) []string {
	if e.hard != nil {
		return nil
	}
	m, err := e.fs.Glob(e.ctx, pattern)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.failed(pattern, err)
		return nil
	}
	sort.Strings(m)
	return m
}

func (e *evidence) find(dir string) []File {
	if e.hard != nil {
		return nil
	}
	files, err := e.fs.Find(e.ctx, dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.failed(dir, err)
		return nil
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files
}

// add appends to a list up to maxListed paths, once each.
func add(list *[]string, p string) {
	if len(*list) < maxListed && !slices.Contains(*list, p) {
		*list = append(*list, p)
	}
}

func (e *evidence) hostKeys() {
	for _, p := range e.glob("/etc/ssh/ssh_host_*_key.pub") {
		b, ok := e.read(p, maxSmall)
		if !ok {
			continue
		}
		key, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			// Not a key sshd could serve; its private half is what matters, and
			// without a public key there is no fingerprint to compare.
			continue
		}
		if len(e.ev.HostKeys) < maxListed {
			e.ev.HostKeys = append(e.ev.HostKeys, jobs.HostKeyFile{Path: p, Type: key.Type(), Fingerprint: ssh.FingerprintSHA256(key)})
		}
	}
}

func (e *evidence) machineID() {
	if b, ok := e.read("/etc/machine-id", maxSmall); ok {
		e.ev.MachineID = strings.TrimSpace(string(b))
	}
}

// shadow lists accounts with a usable password: any hash but a locked one
// ("*", "!…"); an empty field is a login without password.
func (e *evidence) shadow() {
	b, ok := e.read("/etc/shadow", maxConfig)
	if !ok {
		return
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, rest, found := strings.Cut(line, ":")
		if !found || name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		hash, _, _ := strings.Cut(rest, ":")
		hash = strings.TrimSpace(hash)
		if strings.HasPrefix(hash, "*") || strings.HasPrefix(hash, "!") {
			continue
		}
		add(&e.ev.PasswordAccounts, name)
		if hash == "" {
			add(&e.ev.EmptyPasswords, name)
		}
	}
}

// sshdConfig is sshd's effective global settings as the image configures them.
type sshdConfig struct {
	values map[string]string // lower-case keyword → first value
	at     map[string]string // keyword → file:line
	files  int
}

// sshd reads sshd_config with its Includes the way sshd does: the first value of
// a keyword wins, Match blocks (but "Match all") apply only to some connections
// and are left out of the global values.
func (e *evidence) sshd() {
	c := &sshdConfig{values: map[string]string{}, at: map[string]string{}}
	e.sshdFile(c, "/etc/ssh/sshd_config", 0)
	e.ev.SSHPasswordAuth = "yes"
	if v, ok := c.values["passwordauthentication"]; ok {
		e.ev.SSHPasswordAuth, e.ev.SSHPasswordAuthAt = strings.ToLower(v), c.at["passwordauthentication"]
	}
	e.ev.SSHPermitRootLogin = "prohibit-password"
	if v, ok := c.values["permitrootlogin"]; ok {
		e.ev.SSHPermitRootLogin = strings.ToLower(v)
	}
	if v, ok := c.values["authorizedkeysfile"]; ok {
		e.authorizedKeysFiles = strings.Fields(v)
	}
}

func (e *evidence) sshdFile(c *sshdConfig, file string, depth int) {
	if depth > maxIncludeDepth || c.files >= maxIncludeFiles {
		return
	}
	c.files++
	b, ok := e.read(file, maxConfig)
	if !ok {
		return
	}
	inMatch := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxConfig)
	for n := 1; sc.Scan(); n++ {
		key, value := sshdLine(sc.Text())
		switch key {
		case "":
			continue
		case "match":
			inMatch = strings.ToLower(value) != "all"
			continue
		}
		if inMatch {
			continue
		}
		if key == "include" {
			for _, pattern := range strings.Fields(value) {
				if !path.IsAbs(pattern) {
					pattern = path.Join("/etc/ssh", pattern)
				}
				for _, inc := range e.glob(pattern) {
					e.sshdFile(c, inc, depth+1)
				}
			}
			continue
		}
		if _, set := c.values[key]; !set {
			c.values[key], c.at[key] = value, fmt.Sprintf("%s:%d", file, n)
		}
	}
}

// sshdLine splits a configuration line into its lower-case keyword and value
// ("Keyword value", "Keyword=value"; comments and blank lines are "").
func sshdLine(line string) (key, value string) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return "", ""
	}
	i := strings.IndexAny(line, " \t=")
	if i < 0 {
		return strings.ToLower(line), ""
	}
	key, value = strings.ToLower(line[:i]), strings.TrimSpace(line[i:])
	value = strings.TrimSpace(strings.TrimPrefix(value, "="))
	return key, strings.Trim(value, `"`)
}

func (e *evidence) cloudInit() {
	for _, p := range e.glob("/var/lib/cloud/instances/*") {
		add(&e.ev.CloudInitState, p)
	}
	e.deleteKeys()
}

// deleteKeys reads ssh_deletekeys from the image's cloud-init configuration as
// cloud-init merges it: cloud.cfg, then cloud.cfg.d/*.cfg in name order, the last
// file that sets it deciding. A file that is not YAML is skipped, as cloud-init
// would fail on it anyway.
func (e *evidence) deleteKeys() {
	files := append([]string{"/etc/cloud/cloud.cfg"}, e.glob("/etc/cloud/cloud.cfg.d/*.cfg")...)
	for _, p := range files {
		b, ok := e.read(p, maxConfig)
		if !ok {
			continue
		}
		var cfg struct {
			DeleteKeys any `yaml:"ssh_deletekeys"`
		}
		if yaml.Unmarshal(b, &cfg) != nil {
			continue
		}
		if del, ok := yaml11Bool(cfg.DeleteKeys); ok {
			e.ev.KeepsHostKeysAt = ""
			if !del {
				e.ev.KeepsHostKeysAt = p
			}
		}
	}
}

func (e *evidence) leases() {
	for _, g := range leaseGlobs {
		for _, p := range e.glob(g) {
			if b, ok := e.read(p, 1); ok && len(b) > 0 {
				add(&e.ev.DHCPLeases, p)
			}
		}
	}
}

func (e *evidence) netRules() {
	const rules = "/etc/udev/rules.d/70-persistent-net.rules"
	if b, ok := e.read(rules, maxSmall); ok && len(bytes.TrimSpace(b)) > 0 {
		add(&e.ev.NetRules, rules)
	}
}

// etc lists world-writable files under /etc: not symbolic links (always 0777),
// not sticky directories (like /tmp).
func (e *evidence) etc() {
	for _, f := range e.find("/etc") {
		switch {
		case f.Mode&fs.ModeSymlink != 0, f.Mode.Perm()&0o002 == 0:
		case f.Mode.IsDir() && f.Mode&fs.ModeSticky != 0:
		default:
			add(&e.ev.WorldWritableEtc, f.Path)
		}
	}
}

// homes reads what users left: authorized_keys (where sshd looks for them),
// histories and private keys.
func (e *evidence) homes() {
	homes := e.users()
	for _, u := range homes {
		for _, pattern := range e.authorizedKeysPatterns() {
			if pattern == "none" {
				continue
			}
			p := expandKeysFile(pattern, u.name, u.home)
			if b, ok := e.read(p, maxSmall); ok && hasKeyLine(b) {
				add(&e.ev.AuthorizedKeys, p)
			}
		}
	}
	candidates := 0
	for _, dir := range []string{"/root", "/home"} {
		for _, f := range e.find(dir) {
			if !f.Mode.IsRegular() || f.Size == 0 {
				continue
			}
			base := path.Base(f.Path)
			switch {
			case slices.Contains(historyNames, base):
				add(&e.ev.Histories, f.Path)
			case strings.HasPrefix(base, "authorized_keys") && path.Base(path.Dir(f.Path)) == ".ssh":
				// Keys sshd is not configured to read are still someone's keys.
				if b, ok := e.read(f.Path, maxSmall); ok && hasKeyLine(b) {
					add(&e.ev.AuthorizedKeys, f.Path)
				}
			case f.Size <= maxKeySize && candidates < maxKeyCandidates:
				candidates++
				if b, ok := e.read(f.Path, keyHead); ok && privateKeyHeader.Match(b) {
					add(&e.ev.PrivateKeys, f.Path)
				}
			}
		}
	}
}

// account is a user with a home directory.
type account struct{ name, home string }

// users are root and every account of /etc/passwd with a home (at most maxUsers).
func (e *evidence) users() []account {
	out := []account{{"root", "/root"}}
	b, _ := e.read("/etc/passwd", maxConfig)
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 || f[0] == "root" || !path.IsAbs(f[5]) || f[5] == "/" || len(out) >= maxUsers {
			continue
		}
		out = append(out, account{f[0], path.Clean(f[5])})
	}
	return out
}

// authorizedKeysPatterns are sshd's AuthorizedKeysFile values (its default when unset).
func (e *evidence) authorizedKeysPatterns() []string {
	if len(e.authorizedKeysFiles) > 0 {
		return e.authorizedKeysFiles
	}
	return []string{".ssh/authorized_keys", ".ssh/authorized_keys2"}
}

// expandKeysFile applies sshd's %h, %u and %% to an AuthorizedKeysFile pattern;
// a relative one is under the home.
func expandKeysFile(pattern, user, home string) string {
	r := strings.NewReplacer("%%", "%", "%h", home, "%u", user)
	p := r.Replace(pattern)
	if !path.IsAbs(p) {
		p = path.Join(home, p)
	}
	return path.Clean(p)
}

// hasKeyLine reports whether an authorized_keys file holds a key (a line that is
// neither blank nor a comment).
func hasKeyLine(b []byte) bool {
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if l := bytes.TrimSpace(line); len(l) > 0 && l[0] != '#' {
			return true
		}
	}
	return false
}

// yaml11Bool reads a value as cloud-init's YAML 1.1 does a boolean: true, false,
// and their yes/no/on/off spellings in any case.
func yaml11Bool(v any) (value, ok bool) {
	switch v := v.(type) {
	case bool:
		return v, true
	case string:
		switch strings.ToLower(v) {
		case "true", "yes", "on", "y":
			return true, true
		case "false", "no", "off", "n":
			return false, true
		}
	}
	return false, false
}
