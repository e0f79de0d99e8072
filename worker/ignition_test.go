package worker

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/cloudinit/ignition"
	"github.com/imagevet/imagevet/jobs"
	"github.com/imagevet/imagevet/worker/vm/fake"
)

// Unit tests of the lifecycle for Ignition jobs, on the fake hypervisor (its console
// lines are scripted); the flatcar-like integration tests boot the real thing.

func ignitionTestJob(id, datasource string) jobs.Job {
	job := testJob(id)
	job.Guest = jobs.GuestSpec{Provisioning: jobs.ProvisioningIgnition, Datasource: datasource}
	job.IgnitionConfig = `{"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "/etc/motd", "contents": {"source": "data:,hi"}}]}}`
	job.Timeouts.Boot = jobs.Duration(60 * time.Second)
	job.Timeouts.Total = jobs.Duration(2 * time.Minute)
	return job
}

// An Ignition failure fails boot with Ignition's words; the metadata service serves
// the Ignition config as user_data, and the metadata datasource attaches no seed.
func TestRunIgnitionFailureAndUserData(t *testing.T) {
	hv := &fake.Hypervisor{
		SSHAddr: closingListener(t),
		Console: []fake.Line{
			{Text: "[    2.1] ignition[412]: Ignition 2.14.0"},
			{After: 200 * time.Millisecond, Text: "[    2.9] ignition[412]: Ignition failed: failed to create users/groups: exit status 1"},
			{After: 100 * time.Millisecond, Text: "[FAILED] Failed to start ignition-files.service - Ignition (files)."},
		},
	}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	served := make(chan []byte, 1)
	onFirstBoot(hv, func(m *fake.Machine) {
		// The guest's side of the metadata service: the chardev stream.
		resp, err := http.Get("http://" + m.Spec().MetadataAddr + "/openstack/latest/user_data")
		if err != nil {
			served <- []byte(err.Error())
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		served <- b
	})
	res := r.Run(context.Background(), ignitionTestJob("ign-fail", jobs.DatasourceMetadata), 1, nil)
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckBoot ||
		!strings.Contains(res.Reason, "Ignition failed: failed to create users/groups") {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	if strings.Contains(res.Reason, "console shows") {
		t.Errorf("no provisioning mismatch here, yet the reason says one: %q", res.Reason)
	}
	var c ignition.Config
	b := <-served
	if err := json.Unmarshal(b, &c); err != nil || c.Passwd.Users[0].Name != "core" || len(c.Storage.Files) != 2 {
		t.Errorf("metadata user_data is not our Ignition config: %v\n%s", err, b)
	}
	if seed := hv.Boots()[0].Seed; seed != "" {
		t.Errorf("the metadata datasource attached a seed disk %q", seed)
	}
	assertCleanedUp(t, cfg, hv)
}

// A cloud-init job on an image whose console shows Ignition names the mismatch.
func TestRunProvisioningMismatchIsNamed(t *testing.T) {
	hv := &fake.Hypervisor{
		SSHAddr: closingListener(t),
		Console: []fake.Line{
			{Text: "Starting ignition-fetch-offline.service - Ignition (fetch-offline)..."},
			{After: 200 * time.Millisecond, Text: "ignition[400]: Ignition failed: failed to acquire config: config is not valid"},
		},
	}
	r, cfg := newTestRunner(t, &fakeImages{}, hv)
	job := testJob("ci-on-ignition")
	job.Guest.Datasource = jobs.DatasourceConfigDrive
	job.Timeouts.Boot = jobs.Duration(60 * time.Second)
	job.Timeouts.Total = jobs.Duration(2 * time.Minute)
	res := r.Run(context.Background(), job, 1, nil)
	if res.Verdict != jobs.VerdictFail || res.FailedCheck != jobs.CheckBoot ||
		!strings.Contains(res.Reason, "config is not valid") || !strings.Contains(res.Reason, `guest.provisioning "ignition"`) {
		t.Fatalf("got %s/%s %q", res.Verdict, res.FailedCheck, res.Reason)
	}
	if seed := hv.Boots()[0].Seed; seed == "" {
		t.Error("a configdrive job attached no seed")
	}
	assertCleanedUp(t, cfg, hv)
}
