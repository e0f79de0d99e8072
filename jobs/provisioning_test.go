package jobs

import (
	"errors"
	"strings"
	"testing"
)

const ignitionJob = `{
  "version": 1,
  "id": "flatcar-4081",
  "image": {"source": "flatcar.qcow2", "format": "qcow2", "sums_url": "SHA512SUMS"},
  "guest": {"provisioning": "ignition"},
  "ignition_config": "{\"ignition\": {\"version\": \"3.3.0\"}, \"storage\": {\"files\": [{\"path\": \"/etc/motd\", \"contents\": {\"source\": \"data:,hi\"}}]}}"
}`

func TestIgnitionJobDefaults(t *testing.T) {
	j, err := DecodeJob([]byte(ignitionJob))
	if err != nil {
		t.Fatal(err)
	}
	d := j.WithDefaults()
	if d.Guest.User != "core" || d.Guest.Datasource != DatasourceConfigDrive || d.Guest.Provisioning != ProvisioningIgnition {
		t.Errorf("Ignition defaults: %+v, want core over configdrive", d.Guest)
	}
	// A cloud-init job still needs its user, and defaults to nocloud.
	c, err := DecodeJob([]byte(validJob))
	if err != nil {
		t.Fatal(err)
	}
	c.Guest.Datasource = ""
	if d := c.WithDefaults(); d.Guest.Datasource != DatasourceNoCloud || d.Guest.Provisioning != ProvisioningCloudInit {
		t.Errorf("cloud-init defaults: %+v", d.Guest)
	}
}

func TestIgnitionJobErrorsNameTheField(t *testing.T) {
	for name, tc := range map[string]struct{ from, to, path, msg string }{
		"provisioning":            {`"provisioning": "ignition"`, `"provisioning": "afterburn"`, "guest.provisioning", "cloud-init or ignition"},
		"nocloud":                 {`"provisioning": "ignition"`, `"provisioning": "ignition", "datasource": "nocloud"`, "guest.datasource", "not nocloud"},
		"bad JSON":                {`"ignition_config": "{`, `"ignition_config": "{,`, "ignition_config", "invalid JSON"},
		"spec version":            {`3.3.0`, `2.2.0`, "ignition_config", "spec 2.x"},
		"unknown field":           {`\"path\"`, `\"pth\"`, "ignition_config", "storage.files[0].pth: unknown field"},
		"cloud_config":            {`"guest": {`, `"cloud_config": "runcmd: []", "guest": {`, "cloud_config", "give ignition_config"},
		"cloud-init check":        {`"guest": {`, `"checks": {"required": ["ssh", "cloud-init"]}, "guest": {`, "checks.required[1]", "does not apply"},
		"ignition on c-i":         {`"provisioning": "ignition"`, `"user": "debian"`, "ignition_config", "only read by Ignition images"},
		"metadata on c-i":         {`"provisioning": "ignition"`, `"user": "debian", "datasource": "metadata"`, "guest.datasource", "for guest.provisioning ignition"},
		"cloud-init needs a user": {`"provisioning": "ignition"`, `"provisioning": "cloud-init"`, "guest.user", "required"},
	} {
		t.Run(name, func(t *testing.T) {
			doc := strings.Replace(ignitionJob, tc.from, tc.to, 1)
			if doc == ignitionJob {
				t.Fatalf("%q not found in the job", tc.from)
			}
			_, err := DecodeJob([]byte(doc))
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("DecodeJob = %v, want an InvalidError", err)
			}
			for _, p := range inv.Problems {
				if p.Path == tc.path && strings.Contains(p.Msg, tc.msg) {
					return
				}
			}
			t.Fatalf("no problem %s: …%s… in %v", tc.path, tc.msg, err)
		})
	}
}
