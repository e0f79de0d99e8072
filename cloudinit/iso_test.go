package cloudinit

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kdomanski/iso9660"

	"github.com/imagevet/imagevet/internal/testenv"
)

// requireTool returns the path of an external tool. Missing, it skips the test on a
// developer machine and fails it in CI, which installs every tool this package uses.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", name, err)
		}
		t.Skipf("%s not installed (Debian packages: genisoimage, util-linux, cloud-init, openssh-client): %v", name, err)
	}
	return p
}

// linuxName maps an ISO9660 identifier to the name Linux isofs shows without Joliet
// or Rock Ridge (map=normal): lowercased, ";1" version stripped, trailing dot dropped.
func linuxName(id string) string {
	id = strings.ToLower(id)
	if i := strings.IndexByte(id, ';'); i >= 0 {
		id = id[:i]
	}
	return strings.TrimSuffix(id, ".")
}

// dirsOf lists every directory that holds one of the files, as "a", "a/b".
func dirsOf(files map[string][]byte) []string {
	set := map[string]bool{}
	for name := range files {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			set[d] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func writeTempISO(t *testing.T, s Spec) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), s.Label()+".iso")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteISO(f); err != nil {
		f.Close()
		t.Fatalf("WriteISO: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// readISO reads every file of an ISO with the iso9660 library, keyed by Linux name.
func readISO(t *testing.T, p string) (label string, files map[string][]byte) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		t.Fatalf("OpenImage: %v", err)
	}
	if label, err = img.Label(); err != nil {
		t.Fatalf("Label: %v", err)
	}
	root, err := img.RootDir()
	if err != nil {
		t.Fatalf("RootDir: %v", err)
	}
	files = map[string][]byte{}
	var walk func(dir *iso9660.File, prefix string)
	walk = func(dir *iso9660.File, prefix string) {
		children, err := dir.GetChildren()
		if err != nil {
			t.Fatalf("GetChildren(%q): %v", prefix, err)
		}
		for _, c := range children {
			name := path.Join(prefix, linuxName(c.Name()))
			if c.IsDir() {
				walk(c, name)
				continue
			}
			b, err := io.ReadAll(c.Reader())
			if err != nil {
				t.Fatalf("read %s: %v", name, err)
			}
			files[name] = b
		}
	}
	walk(root, "")
	return label, files
}

func assertSameFiles(t *testing.T, how string, got, want map[string][]byte) {
	t.Helper()
	if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)); !slices.Equal(g, w) {
		t.Fatalf("%s: files %q, want %q", how, g, w)
	}
	for name, w := range want {
		if !bytes.Equal(got[name], w) {
			t.Errorf("%s: %s content differs:\n%s\nwant:\n%s", how, name, got[name], w)
		}
	}
}

// TestISOReadBack writes every golden seed as an ISO and reads it back with the
// library's reader, isoinfo and blkid.
func TestISOReadBack(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			want, err := tc.spec.Files()
			if err != nil {
				t.Fatal(err)
			}
			iso := writeTempISO(t, tc.spec)

			t.Run("iso9660", func(t *testing.T) {
				label, got := readISO(t, iso)
				if label != tc.spec.Label() {
					t.Errorf("label = %q, want %q", label, tc.spec.Label())
				}
				assertSameFiles(t, "iso9660 reader", got, want)
			})

			t.Run("isoinfo", func(t *testing.T) {
				isoinfo := requireTool(t, "isoinfo")
				out, err := exec.Command(isoinfo, "-d", "-i", iso).CombinedOutput()
				if err != nil {
					t.Fatalf("isoinfo -d: %v\n%s", err, out)
				}
				if !strings.Contains(string(out), "\nVolume id: "+tc.spec.Label()+"\n") {
					t.Errorf("isoinfo -d: no %q volume id:\n%s", tc.spec.Label(), out)
				}
				out, err = exec.Command(isoinfo, "-f", "-i", iso).CombinedOutput()
				if err != nil {
					t.Fatalf("isoinfo -f: %v\n%s", err, out)
				}
				var got []string
				for _, line := range strings.Fields(string(out)) {
					got = append(got, linuxName(strings.TrimPrefix(line, "/")))
				}
				slices.Sort(got)
				wantNames := slices.Sorted(slices.Values(append(slices.Collect(maps.Keys(want)), dirsOf(want)...)))
				if !slices.Equal(got, wantNames) {
					t.Errorf("isoinfo -f (as Linux names them) = %q, want %q", got, wantNames)
				}
				// Each file read by an independent reader, by its ISO9660 name.
				for name, content := range want {
					out, err := exec.Command(isoinfo, "-i", iso, "-x", "/"+name+";1").Output()
					if err != nil {
						t.Fatalf("isoinfo -x %s: %v", name, err)
					}
					if !bytes.Equal(out, content) {
						t.Errorf("isoinfo -x %s: content differs", name)
					}
				}
			})

			t.Run("blkid", func(t *testing.T) {
				blkid := requireTool(t, "blkid")
				out, err := exec.Command(blkid, "-p", "-o", "export", iso).CombinedOutput()
				if err != nil {
					t.Fatalf("blkid: %v\n%s", err, out)
				}
				for _, want := range []string{"LABEL=" + tc.spec.Label(), "TYPE=iso9660"} {
					if !slices.Contains(strings.Fields(string(out)), want) {
						t.Errorf("blkid: no %s in\n%s", want, out)
					}
				}
			})

			t.Run("mount", func(t *testing.T) {
				dir := mountISO(t, iso)
				got := map[string][]byte{}
				err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
					if err != nil || d.IsDir() {
						return err
					}
					rel, _ := filepath.Rel(dir, p)
					got[filepath.ToSlash(rel)], err = os.ReadFile(p)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				assertSameFiles(t, "mounted by Linux", got, want)
			})
		})
	}
}

// mountISO mounts an ISO read-only through a loop device, as a guest kernel would read
// it, and unmounts it at cleanup. It skips where that is impossible (not root, or a
// kernel without iso9660, as in some build sandboxes); the other readers still run.
func mountISO(t *testing.T, iso string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "mounting a loop device needs root")
	}
	mount := requireTool(t, "mount")
	if !kernelHasISO9660() {
		// Not a prerequisite anything can install: the host's kernel lacks the module
		// (this machine and CI's do). isoinfo and blkid above read the ISO anyway.
		t.Skip("kernel has no iso9660 filesystem (not in /proc/filesystems and modprobe isofs failed)")
	}
	dir := t.TempDir()
	if out, err := exec.Command(mount, "-o", "loop,ro", "-t", "iso9660", iso, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -o loop,ro %s: %v\n%s", iso, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

func kernelHasISO9660() bool {
	has := func() bool {
		b, err := os.ReadFile("/proc/filesystems")
		return err == nil && slices.ContainsFunc(strings.Split(string(b), "\n"), func(l string) bool {
			return strings.TrimSpace(strings.TrimPrefix(l, "nodev")) == "iso9660"
		})
	}
	if has() {
		return true
	}
	if err := exec.Command("modprobe", "isofs").Run(); err != nil && !errors.Is(err, exec.ErrNotFound) {
		return false
	}
	return has()
}
