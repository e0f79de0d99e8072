package jobs

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

const validJob = `{
  "version": 1,
  "id": "debian-12-20261120",
  "image": {"source": "https://cloud.example.org/debian-12.qcow2", "format": "qcow2",
            "checksum": "sha256:` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `"},
  "machine": {"firmware": "uefi", "vcpus": 2, "memory_mib": 2048},
  "guest": {"user": "debian", "datasource": "configdrive"},
  "checks": {"skip": ["commands"]},
  "timeouts": {"boot": "90s", "total": "10m"},
  "commands": [{"run": "uname -s", "expect_output": "/^Linux$/"}],
  "publish": {"name": "Debian 12", "visibility": "public", "properties": {"os_distro": "debian", "os_version": "12"}}
}`

func TestDecodeJobValid(t *testing.T) {
	j, err := DecodeJob([]byte(validJob))
	if err != nil {
		t.Fatalf("DecodeJob: %v", err)
	}
	if j.Timeouts.Boot.D() != 90*time.Second || j.Machine.Firmware != FirmwareUEFI || j.Publish.Properties["os_distro"] != "debian" {
		t.Fatalf("decoded wrongly: %+v", j)
	}
	d := j.WithDefaults()
	if d.Timeouts.CloudInit.D() != DefaultCloudInit || d.Guest.Hostname != "vet-debian-12-20261120" {
		t.Fatalf("defaults not applied: %+v", d)
	}
	if d.Checks.IsRequired(CheckCommands) || !d.Checks.IsRequired(CheckSSH) {
		t.Fatalf("checks: commands skipped must not be required, ssh must be")
	}
}

func TestDecodeJobErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name, doc, path, msg string
	}{
		{"unknown nested field", strings.Replace(validJob, `"format": "qcow2"`, `"format": "qcow2", "fromat": 1`, 1), "image.fromat", "unknown field"},
		{"unknown field in list", strings.Replace(validJob, `"run": "uname -s"`, `"run": "uname -s", "exit": 0`, 1), "commands[0].exit", "unknown field"},
		{"bad duration", strings.Replace(validJob, `"90s"`, `"ninety"`, 1), "timeouts.boot", "not a duration"},
		{"wrong type", strings.Replace(validJob, `"vcpus": 2`, `"vcpus": "two"`, 1), "machine.vcpus", "must be an integer"},
		{"bad format", strings.Replace(validJob, `"format": "qcow2"`, `"format": "vmdk"`, 1), "image.format", "qcow2 or raw"},
		{"bad checksum", strings.Replace(validJob, `sha256:0123`, `sha256:XY23`, 1), "image.checksum", "hex"},
		{"bad scheme", strings.Replace(validJob, `https://cloud`, `ftp://cloud`, 1), "image.source", "not supported"},
		{"bad hostname", strings.Replace(validJob, `"datasource": "configdrive"`, `"datasource": "configdrive", "hostname": "Bad_Host"`, 1), "guest.hostname", "label"},
		{"bad id", strings.Replace(validJob, `"debian-12-20261120"`, `"a.b"`, 1), "id", "letters"},
		{"bad check", strings.Replace(validJob, `["commands"]`, `["ssh"]`, 1), "checks.skip[0]", "cannot be skipped"},
		{"bad regexp", strings.Replace(validJob, `/^Linux$/`, `/(/`, 1), "commands[0].expect_output", "regular expression"},
		{"not json", `{"id": `, "(document)", "not valid JSON"},
		{"trailing", validJob + `{}`, "(document)", "after top-level value"},
		{"empty", ``, "(document)", "empty"},
		{"version", strings.Replace(validJob, `"version": 1`, `"version": 2`, 1), "version", "must be 1"},
		{"glance's own field", strings.Replace(validJob, `"os_version": "12"`, `"os_version": "12", "disk_format": "raw"`, 1), "publish.properties.disk_format", "Glance's own field"},
		{"glance's own visibility", strings.Replace(validJob, `"os_version": "12"`, `"os_version": "12", "visibility": "public"`, 1), "publish.properties.visibility", "Glance's own field"},
		{"bad disk format", strings.Replace(validJob, `"visibility": "public"`, `"visibility": "public", "disk_format": "vmdk"`, 1), "publish.disk_format", "raw or qcow2"},
		{"negative boot threshold", strings.Replace(validJob, `"version": 1`, `"version": 1, "regression": {"boot_percent": -5}`, 1), "regression.boot_percent", "between 1 and"},
		{"huge size threshold", strings.Replace(validJob, `"version": 1`, `"version": 1, "regression": {"size_percent": 20000}`, 1), "regression.size_percent", "between 1 and"},
		{"bad cloud", strings.Replace(validJob, `"visibility": "public"`, `"visibility": "public", "clouds": ["ok", "Bad Cloud"]`, 1), "publish.clouds[1]", "lowercase"},
		{"unknown hygiene rule", strings.Replace(validJob, `"skip": ["commands"]`, `"skip": ["commands"], "hygiene": {"machine-id": "warn", "machineid": "off"}`, 1), "checks.hygiene.machineid", "unknown hygiene rule"},
		{"bad hygiene level", strings.Replace(validJob, `"skip": ["commands"]`, `"skip": ["commands"], "hygiene": {"machine-id": "error"}`, 1), "checks.hygiene.machine-id", "fail, warn or off"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeJob([]byte(c.doc))
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("want *InvalidError, got %v", err)
			}
			for _, p := range ie.Problems {
				if p.Path == c.path && strings.Contains(p.Msg, c.msg) {
					return
				}
			}
			t.Fatalf("no problem at %s containing %q in %v", c.path, c.msg, err)
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Job{Version: 1}.Validate()
	var ie *InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("want *InvalidError, got %v", err)
	}
	want := []string{"id", "image.source", "image.format", "image.checksum", "guest.user"}
	for _, w := range want {
		found := false
		for _, p := range ie.Problems {
			found = found || p.Path == w
		}
		if !found {
			t.Errorf("missing problem for %s in %v", w, err)
		}
	}
}

func TestDefaultHostnameIsValid(t *testing.T) {
	for _, id := range []string{"A_b-C", "x", strings.Repeat("z", 128), "ends-with-_"} {
		h := DefaultHostname(id)
		if p := HostnameProblem(h); p != "" {
			t.Errorf("DefaultHostname(%q) = %q: %s", id, h, p)
		}
	}
}

func TestResultRoundTrip(t *testing.T) {
	r := Result{Version: 1, JobID: "x", Verdict: VerdictFail, FailedCheck: CheckSSH, Reason: "auth rejected",
		Checks: []CheckResult{{Name: CheckSSH, Status: StatusFail, Required: true, Duration: Duration(time.Second)}}}
	data, err := MarshalResult(r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeResult(data)
	if err != nil {
		t.Fatalf("DecodeResult: %v", err)
	}
	if back.Check(CheckSSH) == nil || back.Check(CheckSSH).Duration.D() != time.Second || back.Reason != r.Reason {
		t.Fatalf("round trip lost data: %+v", back)
	}
}

// DecodeJob refuses an oversized document before parsing it, as ReadJob does: the
// NATS path hands it whole messages.
func TestDecodeJobRefusesOversizedDocuments(t *testing.T) {
	big := append([]byte(`{"version":1,"id":"x","pad":"`), bytes.Repeat([]byte("a"), MaxDocumentSize)...)
	big = append(big, `"}`...)
	_, err := DecodeJob(big)
	if err == nil || !strings.Contains(err.Error(), "(document)") || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("DecodeJob(%d bytes) = %v, want the document named as too large", len(big), err)
	}
}

// A job's checks: the provisioning check its guest.provisioning uses, commands only
// when it has some; a result lists each of them, the ones that did not run as such.
func TestRunsChecksAndListNotRun(t *testing.T) {
	ci := Job{Guest: GuestSpec{Provisioning: ProvisioningCloudInit}, Commands: []Command{{Run: "true"}},
		Checks: CheckSpec{Skip: []string{CheckHostname}}}
	ign := Job{Guest: GuestSpec{Provisioning: ProvisioningIgnition}}
	if got, want := strings.Join(ci.RunsChecks(), " "), "image boot ssh hostname metadata cloud-init commands identity hygiene"; got != want {
		t.Errorf("cloud-init job: %q, want %q", got, want)
	}
	if got, want := strings.Join(ign.RunsChecks(), " "), "image boot ssh hostname metadata ignition identity hygiene"; got != want {
		t.Errorf("Ignition job without commands: %q, want %q", got, want)
	}
	res := Result{Checks: []CheckResult{{Name: CheckImage, Status: StatusPass}, {Name: CheckBoot, Status: StatusFail, Reason: "kernel panic"}}}
	res.ListNotRun(ci, "boot failed")
	var got []string
	for _, c := range res.Checks {
		got = append(got, c.Name+"="+string(c.Status)+":"+c.Reason)
	}
	want := "image=pass: boot=fail:kernel panic ssh=skip:not run: boot failed hostname=skip:skipped by the job " +
		"metadata=skip:not run: boot failed cloud-init=skip:not run: boot failed commands=skip:not run: boot failed " +
		"identity=skip:not run: boot failed hygiene=skip:not run: boot failed"
	if strings.Join(got, " ") != want {
		t.Errorf("checks:\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	if c := res.Check(CheckHostname); c.Required {
		t.Error("a check the job skips is listed as required")
	}
	if c := res.Check(CheckSSH); !c.Required {
		t.Error("a required check not run is listed as not required")
	}
}

// Each problem names its field, and an enumerated field the values it takes; the
// text is what submitters and the catalog's messages show.
func TestValidateMessages(t *testing.T) {
	exit := 300
	j := Job{Version: 1, ID: "x",
		Image:    ImageSpec{Source: "https://cloud.example.org/x.img", Format: "vhd", Checksum: "sha256:" + strings.Repeat("0", 64)},
		Machine:  MachineSpec{Firmware: "efi", Type: "virt"},
		Guest:    GuestSpec{User: "debian", Datasource: "ec2", Provisioning: "puppet", HostKey: "tofu"},
		Checks:   CheckSpec{Required: []string{"smoke", CheckCommands}, Skip: []string{CheckSSH, "fly", CheckCommands}},
		Commands: []Command{{Run: " ", ExpectExit: &exit, ExpectOutput: "/(/"}},
		Publish: Publication{Visibility: "open", Family: "Bad", Glance: true, Clouds: []string{"East"}, DiskFormat: "vmdk",
			Properties: map[string]string{"id": "1"}, Rotation: &Rotation{Keep: -1, Older: "gone", ReplaceFrequency: "hourly"}},
	}
	var got []string
	var ie *InvalidError
	if err := j.Validate(); !errors.As(err, &ie) {
		t.Fatalf("want *InvalidError, got %v", err)
	}
	for _, p := range ie.Problems {
		got = append(got, p.Error())
	}
	known := strings.Join(AllChecks, ", ")
	want := []string{
		`image.format: "vhd": must be qcow2 or raw`,
		`machine.firmware: "efi": must be bios or uefi`,
		`machine.type: "virt": must be pc or q35`,
		`guest.datasource: "ec2": must be nocloud, configdrive or metadata`,
		`guest.provisioning: "puppet": must be cloud-init or ignition`,
		`guest.host_key: "tofu": must be pinned or any`,
		`checks.required[0]: unknown check "smoke" (known: ` + known + `)`,
		`checks.skip[0]: "ssh" cannot be skipped: every other check depends on it`,
		`checks.skip[1]: unknown check "fly" (known: ` + known + `)`,
		`checks.skip[2]: "commands" is also in checks.required`,
		`commands[0].run: required`,
		`commands[0].expect_exit: must be 0-255`,
		"commands[0].expect_output: bad regular expression: error parsing regexp: missing closing ): `(`",
		`publish.visibility: "open": must be public, community, shared or private`,
		`publish.family: "Bad": 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`,
		`publish.rotation.keep: -1: must be between 0 and 1000`,
		`publish.rotation.older: "gone": must be community or hidden`,
		`publish.rotation.replace_frequency: "hourly": must be daily, weekly, monthly, quarterly, yearly or never`,
		`publish.disk_format: "vmdk": must be raw or qcow2`,
		`publish.clouds[0]: "East": 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`,
		`publish.properties.id: Glance's own field: the publisher sets it from the vetted image`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
