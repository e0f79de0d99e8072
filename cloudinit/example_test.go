package cloudinit_test

import (
	"bytes"
	"fmt"
	"log"
	"maps"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagevet/imagevet/cloudinit"
)

// A worker renders one seed per job and logs in with the same Keys, pinning the host
// keys it handed the guest.
func Example() {
	keys, err := cloudinit.NewKeys()
	if err != nil {
		log.Fatal(err)
	}
	spec := cloudinit.Spec{
		Datasource:  cloudinit.ConfigDrive,
		InstanceID:  "job-42",
		Hostname:    "vet-42",
		Keys:        keys,
		CloudConfig: []byte("#cloud-config\nruncmd: [touch /run/vetted]\n"),
	}
	var iso bytes.Buffer
	if err := spec.WriteISO(&iso); err != nil {
		log.Fatal(err) // errors.Is(err, cloudinit.ErrInvalid): the job is at fault
	}
	files, _ := spec.Files()
	fmt.Println(spec.Label(), spec.MACAddress() == cloudinit.DefaultMAC("job-42"))
	fmt.Println(slices.Sorted(maps.Keys(files))[4:])

	// The SSH client config that goes with it (dial with a deadline, then
	// ssh.NewClientConn); a foreign host key fails with ErrHostKeyMismatch.
	_ = &ssh.ClientConfig{
		User:              "debian",
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(keys.Signers()...)},
		HostKeyCallback:   keys.HostKeyCallback(),
		HostKeyAlgorithms: keys.HostKeyAlgorithms(),
		Timeout:           30 * time.Second,
	}
	// Output:
	// config-2 true
	// [openstack/latest/meta_data.json openstack/latest/network_data.json openstack/latest/user_data openstack/latest/vendor_data.json]
}
