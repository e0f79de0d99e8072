package feed_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/keyring"
	"github.com/imagevet/imagevet/watch/feed"
	"github.com/imagevet/imagevet/watch/mirror"
)

// setup starts a loopback vendor mirror, a small local file served as every
// artefact, and a signing key with its keyring.
func setup(t *testing.T) (m *mirror.Mirror, image string, s *mirror.Signer, kr *keyring.Keyring) {
	t.Helper()
	m, err := mirror.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	image = filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(image, []byte("not really a disk image, but bytes with a digest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = mirror.NewSigner("Test Vendor")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vendor.asc")
	if err := s.WriteKeyring(path); err != nil {
		t.Fatal(err)
	}
	if kr, err = keyring.Load(path); err != nil {
		t.Fatal(err)
	}
	return m, image, s, kr
}

func read(t *testing.T, c *feed.Client, src feed.Source) (feed.Release, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return feed.Read(ctx, c, src)
}

// TestEveryVendorFormat: each reader finds the newest release in its vendor's layout,
// with a digest of the served bytes, verifying the signature where the vendor signs.
func TestEveryVendorFormat(t *testing.T) {
	m, image, s, kr := setup(t)
	d, err := m.PutFile("/probe", image)
	if err != nil {
		t.Fatal(err)
	}
	u := m.URL()
	type vendor struct {
		name    string
		publish func(version string) error
		src     feed.Source
		digest  string
		url     func(version string) string
	}
	vendors := []vendor{
		{"debian", func(v string) error {
			return m.Debian("/images/cloud/bookworm/", mirror.Release{Version: v, Name: "debian-12-genericcloud-amd64-" + v + ".qcow2", Image: image}, s)
		}, feed.Source{Kind: feed.KindDebian, URL: u + "/images/cloud/bookworm/", Arch: "amd64", Artefact: "debian-12-genericcloud-{arch}-{version}.qcow2", Keyring: kr},
			"sha512:" + d.SHA512, func(v string) string {
				return u + "/images/cloud/bookworm/" + v + "/debian-12-genericcloud-amd64-" + v + ".qcow2"
			}},
		{"ubuntu", func(v string) error {
			return m.Ubuntu("/releases/", "com.ubuntu.cloud:server:24.04:amd64", "amd64", "disk1.img",
				"server/releases/noble/release-"+v+"/ubuntu-24.04-server-cloudimg-amd64.img", mirror.Release{Version: v, Image: image}, s)
		}, feed.Source{Kind: feed.KindUbuntu, URL: u + "/releases/", Arch: "amd64", Artefact: "disk1.img", Product: "com.ubuntu.cloud:server:24.04:{arch}", Keyring: kr},
			"sha256:" + d.SHA256, func(v string) string {
				return u + "/releases/server/releases/noble/release-" + v + "/ubuntu-24.04-server-cloudimg-amd64.img"
			}},
		{"centos (BSD CHECKSUM)", func(v string) error {
			return m.Checksum("/centos/9-stream/x86_64/images/CHECKSUM", true, mirror.Release{Name: "CentOS-Stream-GenericCloud-9-" + v + ".x86_64.qcow2", Image: image}, nil)
		}, feed.Source{Kind: feed.KindChecksum, URL: u + "/centos/9-stream/x86_64/images/CHECKSUM", Arch: "x86_64", Artefact: "CentOS-Stream-GenericCloud-9-{version}.{arch}.qcow2"},
			"sha256:" + d.SHA256, func(v string) string {
				return u + "/centos/9-stream/x86_64/images/CentOS-Stream-GenericCloud-9-" + v + ".x86_64.qcow2"
			}},
		{"almalinux (GNU CHECKSUM)", func(v string) error {
			return m.Checksum("/almalinux/9/cloud/x86_64/images/CHECKSUM", false, mirror.Release{Name: "AlmaLinux-9-GenericCloud-" + v + ".x86_64.qcow2", Image: image}, nil)
		}, feed.Source{Kind: feed.KindChecksum, URL: u + "/almalinux/9/cloud/x86_64/images/CHECKSUM", Arch: "x86_64", Artefact: "AlmaLinux-9-GenericCloud-{version}.{arch}.qcow2"},
			"sha256:" + d.SHA256, func(v string) string {
				return u + "/almalinux/9/cloud/x86_64/images/AlmaLinux-9-GenericCloud-" + v + ".x86_64.qcow2"
			}},
		{"fedora (clear-signed CHECKSUM)", func(v string) error {
			return m.Checksum("/fedora/43/Cloud/x86_64/images/Fedora-Cloud-43-x86_64-CHECKSUM", true, mirror.Release{Name: "Fedora-Cloud-Base-Generic-" + v + ".x86_64.qcow2", Image: image}, s)
		}, feed.Source{Kind: feed.KindChecksum, URL: u + "/fedora/43/Cloud/x86_64/images/Fedora-Cloud-43-x86_64-CHECKSUM", Arch: "x86_64", Artefact: "Fedora-Cloud-Base-Generic-{version}.{arch}.qcow2", Keyring: kr},
			"sha256:" + d.SHA256, func(v string) string {
				return u + "/fedora/43/Cloud/x86_64/images/Fedora-Cloud-Base-Generic-" + v + ".x86_64.qcow2"
			}},
		{"flatcar", func(v string) error {
			return m.Flatcar("/amd64-usr/", mirror.Release{Version: v, Name: "flatcar_production_qemu_image.img", Image: image}, s)
		}, feed.Source{Kind: feed.KindFlatcar, URL: u + "/amd64-usr/", Arch: "amd64", Artefact: "flatcar_production_qemu_image.img", Keyring: kr},
			"sha512:" + d.SHA512, func(v string) string { return u + "/amd64-usr/" + v + "/flatcar_production_qemu_image.img" }},
		{"cirros", func(v string) error {
			return m.Cirros("/", mirror.Release{Version: v, Name: "cirros-" + v + "-x86_64-disk.img", Image: image})
		}, feed.Source{Kind: feed.KindCirros, URL: u + "/", Arch: "x86_64", Artefact: "cirros-{version}-{arch}-disk.img"},
			"sha256:" + d.SHA256, func(v string) string { return u + "/" + v + "/cirros-" + v + "-x86_64-disk.img" }},
	}
	versions := map[string][2]string{
		"debian": {"20261101-0917", "20261120-1234"}, "ubuntu": {"20261101", "20261120.1"},
		"centos (BSD CHECKSUM)": {"20261101.0", "20261120.0"}, "almalinux (GNU CHECKSUM)": {"9.6-20261101", "9.7-20261120"},
		"fedora (clear-signed CHECKSUM)": {"43-1.5", "43-1.6"}, "flatcar": {"4459.2.0", "4459.2.1"}, "cirros": {"0.6.2", "0.6.10"},
	}
	for _, v := range vendors {
		t.Run(v.name, func(t *testing.T) {
			old, newer := versions[v.name][0], versions[v.name][1]
			if err := v.publish(old); err != nil {
				t.Fatal(err)
			}
			if err := v.publish(newer); err != nil {
				t.Fatal(err)
			}
			c := &feed.Client{Next: map[string]jobs.Validator{}}
			rel, err := read(t, c, v.src)
			if err != nil {
				t.Fatal(err)
			}
			if rel.Version != newer || rel.Digest != v.digest || rel.URL != v.url(newer) {
				t.Errorf("got %+v, want version %s digest %s url %s", rel, newer, v.digest, v.url(newer))
			}
			if v.src.Keyring != nil && !strings.Contains(rel.Signer, "Test Vendor") {
				t.Errorf("signer %q", rel.Signer)
			}
			// Unchanged: one conditional request, answered 304.
			before, _ := m.Requests()
			c2 := &feed.Client{Prev: c.Next, Next: map[string]jobs.Validator{}}
			if _, err := read(t, c2, v.src); !errors.Is(err, feed.ErrNotModified) {
				t.Fatalf("second read: %v, want not modified", err)
			}
			if after, _ := m.Requests(); after-before != 1 || c2.Requests() != 1 {
				t.Errorf("unchanged feed cost %d requests, want 1", after-before)
			}
		})
	}
}

// TestUntrustedFeeds: with a keyring, a bad signature, a key not in the keyring or a
// missing signature is ErrUntrusted.
func TestUntrustedFeeds(t *testing.T) {
	m, image, s, kr := setup(t)
	other, err := mirror.NewSigner("Someone Else")
	if err != nil {
		t.Fatal(err)
	}
	src := feed.Source{Kind: feed.KindDebian, URL: m.URL() + "/deb/", Arch: "amd64", Artefact: "d-{arch}-{version}.qcow2", Keyring: kr}
	rel := mirror.Release{Version: "20261120-1234", Name: "d-amd64-20261120-1234.qcow2", Image: image}
	if err := m.Debian("/deb/", rel, other); err != nil {
		t.Fatal(err)
	}
	if _, err := read(t, &feed.Client{}, src); !errors.Is(err, feed.ErrUntrusted) || !errors.Is(err, keyring.ErrUnknownKey) {
		t.Errorf("signed by another key: %v", err)
	}
	if err := m.Debian("/deb/", rel, s); err != nil {
		t.Fatal(err)
	}
	if _, err := read(t, &feed.Client{}, src); err != nil {
		t.Fatalf("good signature: %v", err)
	}
	// The list changed after signing: a bad signature.
	m.Put("/deb/20261120-1234/SHA512SUMS", []byte(strings.Repeat("0", 128)+"  d-amd64-20261120-1234.qcow2\n"))
	if _, err := read(t, &feed.Client{}, src); !errors.Is(err, feed.ErrUntrusted) || !errors.Is(err, keyring.ErrBadSignature) {
		t.Errorf("tampered list: %v", err)
	}
	m.Remove("/deb/20261120-1234/SHA512SUMS.sign")
	if _, err := read(t, &feed.Client{}, src); !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("no signature: %v", err)
	}
	// A clear-signed feed served unsigned.
	if err := m.Checksum("/f/CHECKSUM", true, mirror.Release{Name: "F-43-1.6.x86_64.qcow2", Image: image}, nil); err != nil {
		t.Fatal(err)
	}
	fsrc := feed.Source{Kind: feed.KindChecksum, URL: m.URL() + "/f/CHECKSUM", Arch: "x86_64", Artefact: "F-{version}.{arch}.qcow2", Keyring: kr}
	if _, err := read(t, &feed.Client{}, fsrc); !errors.Is(err, feed.ErrUntrusted) || !errors.Is(err, keyring.ErrMalformed) {
		t.Errorf("unsigned CHECKSUM: %v", err)
	}
}

// TestBrokenFeeds: a feed that 404s, hangs, or serves documents that are not in the
// vendor's format ends in a classified error naming the URL, never a release.
func TestBrokenFeeds(t *testing.T) {
	m, image, _, _ := setup(t)
	u := m.URL()
	if err := m.Cirros("/cirros/", mirror.Release{Version: "0.6.3", Name: "cirros-0.6.3-x86_64-disk.img", Image: image}); err != nil {
		t.Fatal(err)
	}
	cirros := feed.Source{Kind: feed.KindCirros, URL: u + "/cirros/", Arch: "x86_64", Artefact: "cirros-{version}-{arch}-disk.img"}
	cases := []struct {
		name  string
		setup func()
		src   feed.Source
		want  error
		in    string
	}{
		{"404", func() {}, feed.Source{Kind: feed.KindCirros, URL: u + "/nothing/", Arch: "x86_64", Artefact: "c-{version}.img"},
			feed.ErrUnavailable, "404"},
		{"hangs", func() { m.Hang("/slow/version/released", true) }, feed.Source{Kind: feed.KindCirros, URL: u + "/slow/", Arch: "x86_64", Artefact: "c-{version}.img"},
			feed.ErrUnavailable, "/slow/version/released"},
		{"version not a version", func() { m.Put("/cirros/version/released", []byte("<html>oops</html>")) }, cirros,
			feed.ErrMalformed, "is not a version"},
		{"artefact not listed", func() {
			m.Put("/cirros/version/released", []byte("0.6.4\n"))
			m.Put("/cirros/0.6.4/SHA256SUMS", []byte(""))
		}, cirros,
			feed.ErrMalformed, "no checksum for cirros-0.6.4-x86_64-disk.img"},
		{"garbage digest", func() { m.Put("/cirros/0.6.4/SHA256SUMS", []byte("SHA256 (cirros-0.6.4-x86_64-disk.img) = xyz\n")) }, cirros,
			feed.ErrMalformed, "line 1"},
		{"gnu digest not hex", func() {
			m.Put("/cirros/0.6.4/SHA256SUMS", []byte(strings.Repeat("a", 64)+"  cirros-0.6.4-aarch64-disk.img\n"+strings.Repeat("a", 63)+"g  cirros-0.6.4-x86_64-disk.img\n"))
		}, cirros,
			feed.ErrMalformed, u + "/cirros/0.6.4/SHA256SUMS: line 2: "},
		{"ubuntu index not JSON", func() { m.Put("/u/streams/v1/index.json", []byte("{")) },
			feed.Source{Kind: feed.KindUbuntu, URL: u + "/u/", Arch: "amd64", Artefact: "disk1.img", Product: "p:{arch}"},
			feed.ErrMalformed, "index:1.0"},
		{"ubuntu item leaves the mirror", func() {
			m.Put("/u/streams/v1/index.json", []byte(`{"format":"index:1.0","index":{"x":{"datatype":"image-downloads","path":"streams/v1/x.json","products":["p:amd64"]}}}`))
			m.Put("/u/streams/v1/x.json", []byte(`{"format":"products:1.0","products":{"p:amd64":{"versions":{"20261120":{"items":{"disk1.img":{"ftype":"disk1.img","path":"../../etc/passwd","sha256":"`+strings.Repeat("a", 64)+`"}}}}}}}`))
		}, feed.Source{Kind: feed.KindUbuntu, URL: u + "/u/", Arch: "amd64", Artefact: "disk1.img", Product: "p:{arch}"},
			feed.ErrMalformed, "leaves the mirror"},
		{"debian index without builds", func() { m.Put("/deb/", []byte("<html><a href=\"latest/\">latest/</a></html>")) },
			feed.Source{Kind: feed.KindDebian, URL: u + "/deb/", Arch: "amd64", Artefact: "d-{version}.qcow2"},
			feed.ErrMalformed, "no dated build directory"},
		{"flatcar version.txt without version", func() { m.Put("/fc/current/version.txt", []byte("FLATCAR_BUILD=1\n")) },
			feed.Source{Kind: feed.KindFlatcar, URL: u + "/fc/", Arch: "amd64", Artefact: "f.img"},
			feed.ErrMalformed, "FLATCAR_VERSION"},
		{"checksum without the artefact", func() { m.Put("/c/CHECKSUM", []byte("SHA256 (other.qcow2) = "+strings.Repeat("a", 64)+"\n")) },
			feed.Source{Kind: feed.KindChecksum, URL: u + "/c/CHECKSUM", Arch: "x86_64", Artefact: "C-{version}.{arch}.qcow2"},
			feed.ErrMalformed, "no entry matches \"C-*.x86_64.qcow2\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.setup()
			start := time.Now()
			_, err := read(t, &feed.Client{Timeout: 500 * time.Millisecond}, c.src)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.in) {
				t.Errorf("got %v, want %v containing %q", err, c.want, c.in)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %s", time.Since(start))
			}
		})
	}
}

// TestDigestMismatchIsTheWorkersToFind: a vendor digest that does not match the
// bytes is reported as published; the worker's image check fails the job on it.
func TestDigestMismatchIsTheWorkersToFind(t *testing.T) {
	m, image, _, _ := setup(t)
	d, _ := m.PutFile("/probe", image)
	if err := m.Cirros("/", mirror.Release{Version: "0.6.3", Name: "c-0.6.3.img", Image: image, WrongDigest: true}); err != nil {
		t.Fatal(err)
	}
	rel, err := read(t, &feed.Client{}, feed.Source{Kind: feed.KindCirros, URL: m.URL(), Arch: "x86_64", Artefact: "c-{version}.img"})
	if err != nil || rel.Digest == "sha256:"+d.SHA256 || !strings.HasPrefix(rel.Digest, "sha256:00000000") {
		t.Errorf("%+v %v", rel, err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"9.10", "9.9", 1}, {"20261120-1234", "20261101-0900", 1}, {"0.6.10", "0.6.9", 1},
		{"20261120.1", "20261120", 1}, {"9.4-20240609.0", "9.5-20241118.0", -1}, {"43-1.6", "43-1.6", 0},
		{"1.0", "", 1}, {"", "", 0}, {"007", "7", 0},
	} {
		if got := feed.CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := feed.CompareVersions(c.b, c.a); got != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}
