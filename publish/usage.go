package publish

import (
	"context"
	"fmt"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
)

// Usage tells whether anything in the cloud still uses an image.
type Usage interface {
	// InUse reports the first server or volume (any project) made from the image,
	// as "server <id>" or "volume <id>", or "" when there is none. An error means
	// it could not be told, and the image must then be kept.
	InUse(ctx context.Context, imageID string) (string, error)
}

// cloudUsage asks Nova (servers of all projects, by image) and Cinder (volumes of
// all projects, by volume_image_metadata.image_id).
type cloudUsage struct {
	compute, volume *gophercloud.ServiceClient
}

// NewUsage returns the in-use check for the cloud; it refuses to answer when the
// cloud has no Compute or no Block Storage endpoint.
func NewUsage(c *Cloud) Usage { return cloudUsage{compute: c.Compute, volume: c.Volume} }

// UsageUnknownError says that whether an image is in use cannot be told at all on
// this cloud (its catalog has no compute or no block storage service): images past
// the policy are kept, every time, and that is not a failure to retry.
type UsageUnknownError struct{ Why string }

func (e *UsageUnknownError) Error() string {
	return "whether an image is in use cannot be checked: " + e.Why
}

func (u cloudUsage) InUse(ctx context.Context, imageID string) (string, error) {
	switch {
	case u.compute == nil && u.volume == nil:
		return "", &UsageUnknownError{Why: "the catalog has no compute and no block storage service"}
	case u.compute == nil:
		return "", &UsageUnknownError{Why: "the catalog has no compute service"}
	case u.volume == nil:
		return "", &UsageUnknownError{Why: "the catalog has no block storage service"}
	}
	pages, err := servers.List(u.compute, servers.ListOpts{AllTenants: true, Image: imageID}).AllPages(ctx)
	if err != nil {
		return "", fmt.Errorf("servers using image %s: %w", imageID, err)
	}
	srvs, err := servers.ExtractServers(pages)
	if err != nil {
		return "", fmt.Errorf("servers using image %s: %w", imageID, err)
	}
	if len(srvs) > 0 {
		return "server " + srvs[0].ID, nil
	}
	vpages, err := volumes.List(u.volume, volumes.ListOpts{AllTenants: true}).AllPages(ctx)
	if err != nil {
		return "", fmt.Errorf("volumes made from image %s: %w", imageID, err)
	}
	vols, err := volumes.ExtractVolumes(vpages)
	if err != nil {
		return "", fmt.Errorf("volumes made from image %s: %w", imageID, err)
	}
	for _, v := range vols {
		if v.VolumeImageMetadata["image_id"] == imageID {
			return "volume " + v.ID, nil
		}
	}
	return "", nil
}
