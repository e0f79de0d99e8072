package daemon

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imagevet/imagevet/internal/testenv"
)

// The deployment files live at the repository root.
var (
	composeFile = filepath.Join("..", "..", "docker-compose.yml")
	dockerfile  = filepath.Join("..", "..", "Dockerfile")
)

func TestComposeFileIsValid(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		testenv.Missing(t, "docker-compose not installed (Debian package docker-compose): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-f", composeFile, "config", "-q")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker-compose config -q: %v\n%s", err, stderr.String())
	}
}

// compose is the part of the compose file the deployment depends on.
type compose struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Build       map[string]string `yaml:"build"`
		NetworkMode string            `yaml:"network_mode"`
		Devices     []string          `yaml:"devices"`
		Volumes     []string          `yaml:"volumes"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		StopGrace   string            `yaml:"stop_grace_period"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func TestComposeDeploysNATSAndAWorker(t *testing.T) {
	data, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	nats, ok := c.Services["nats"]
	if !ok {
		t.Fatal("no nats service")
	}
	if !slices.Contains(nats.Command, "--jetstream") {
		t.Errorf("nats without JetStream: %q", nats.Command)
	}
	if !hasVolume(nats.Volumes, "/data") || c.Volumes["nats-data"] == nil && !strings.Contains(string(data), "nats-data:") {
		t.Errorf("nats store not on a volume: %q", nats.Volumes)
	}
	for _, p := range nats.Ports {
		if !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("nats port %q published beyond loopback", p)
		}
	}
	w, ok := c.Services["worker"]
	if !ok {
		t.Fatal("no worker service")
	}
	if w.Build["context"] != "." || !slices.Contains(w.Command, "worker") {
		t.Errorf("worker not built from the Dockerfile or not running the worker: %v %q", w.Build, w.Command)
	}
	if !slices.ContainsFunc(w.Devices, func(d string) bool { return strings.HasPrefix(d, "/dev/kvm") }) {
		t.Errorf("worker without /dev/kvm: %q", w.Devices)
	}
	if !hasVolume(w.Volumes, "/var/run/libvirt/libvirt-sock") {
		t.Errorf("worker without the libvirt socket: %q", w.Volumes)
	}
	state := w.Environment["IMAGEVET_STATE_DIR"]
	if state == "" || !slices.Contains(w.Volumes, state+":"+state) {
		t.Errorf("state dir %q must be bind-mounted at the same path (host libvirtd opens its files): %q", state, w.Volumes)
	}
	for _, k := range []string{"IMAGEVET_NATS_URL", "IMAGEVET_LIBVIRT_URI", "IMAGEVET_CONCURRENCY", "IMAGEVET_METRICS_ADDR"} {
		if w.Environment[k] == "" {
			t.Errorf("worker environment lacks %s", k)
		}
	}
	grace, err1 := time.ParseDuration(w.Environment["IMAGEVET_GRACE"])
	stop, err2 := time.ParseDuration(w.StopGrace)
	if err1 != nil || err2 != nil || stop <= grace {
		t.Errorf("stop_grace_period %q must exceed IMAGEVET_GRACE %q", w.StopGrace, w.Environment["IMAGEVET_GRACE"])
	}

	df, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"go build", "./cmd/imagevet", "COPY --from=build", `CMD ["worker"]`} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

func hasVolume(vols []string, target string) bool {
	return slices.ContainsFunc(vols, func(v string) bool {
		parts := strings.Split(v, ":")
		return len(parts) >= 2 && parts[1] == target
	})
}
