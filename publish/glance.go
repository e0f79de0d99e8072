package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imageimport"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// Image properties imagevet sets on every image it publishes; they identify the
// family's images and order them without trusting names.
const (
	TagImagevet      = "imagevet"
	PropFamily       = "imagevet_family"
	PropJobID        = "imagevet_job_id"
	PropRelease      = "imagevet_release"
	PropReleasedAt   = "imagevet_released_at"
	PropVerdictAt    = "imagevet_verdict_at"
	PropWorker       = "imagevet_worker"
	PropVendorDigest = "imagevet_vendor_digest"
	PropSHA256       = "imagevet_sha256"
	// PropSourceHash is the sha512 of the vendor's original file, which a user
	// compares with the vendor's checksum; os_hash_value is the published file's.
	PropSourceHash = "source_hash"
	// PropSourceURL is where the vendor's file came from.
	PropSourceURL     = "source_url"
	propHashAlgo      = "os_hash_algo"
	propHashValue     = "os_hash_value"
	statusActive      = "active"
	statusDeactivated = "deactivated"
)

// Image is what the publisher knows of one of its Glance images.
type Image struct {
	ID          string
	Name        string
	Status      string // queued, saving, importing, uploading, active, deactivated…
	Visibility  string
	Hidden      bool
	JobID       string
	Release     string
	ReleasedAt  time.Time // zero when unknown
	VerdictAt   time.Time
	OSHashAlgo  string
	OSHashValue string
	SourceHash  string
	DiskFormat  string
	CreatedAt   time.Time
}

// glance is the publisher's client of the Image service: the few calls it makes, each
// bounded by the caller's context.
type glance struct {
	sc *gophercloud.ServiceClient
}

// familyQuery lists one family's images: tag and property filters, any status.
type familyQuery struct {
	family string
}

func (q familyQuery) ToImageListQuery() (string, error) {
	v := url.Values{}
	v.Set("tag", TagImagevet)
	v.Set(PropFamily, q.family)
	v.Set("limit", "100")
	return "?" + v.Encode(), nil
}

// family returns every image of the family that this cloud's credentials can see,
// hidden ones included (Glance lists os_hidden images only when asked for them).
func (g *glance) family(ctx context.Context, family string) ([]Image, error) {
	var out []Image
	seen := map[string]bool{}
	for _, hidden := range []bool{false, true} {
		pages, err := images.List(g.sc, hiddenQuery{familyQuery{family: family}, hidden}).AllPages(ctx)
		if err != nil {
			return nil, fmt.Errorf("list images of family %s: %w", family, err)
		}
		all, err := images.ExtractImages(pages)
		if err != nil {
			return nil, fmt.Errorf("list images of family %s: %w", family, err)
		}
		for _, im := range all {
			if !seen[im.ID] && im.Properties[PropFamily] == family && slices.Contains(im.Tags, TagImagevet) {
				seen[im.ID] = true
				out = append(out, fromGlance(im))
			}
		}
	}
	return out, nil
}

type hiddenQuery struct {
	familyQuery
	hidden bool
}

func (q hiddenQuery) ToImageListQuery() (string, error) {
	s, err := q.familyQuery.ToImageListQuery()
	if q.hidden {
		s += "&os_hidden=true"
	}
	return s, err
}

func fromGlance(im images.Image) Image {
	str := func(k string) string { s, _ := im.Properties[k].(string); return s }
	when := func(k string) time.Time { t, _ := time.Parse(time.RFC3339, str(k)); return t }
	return Image{
		ID: im.ID, Name: im.Name, Status: string(im.Status), Visibility: string(im.Visibility), Hidden: im.Hidden,
		JobID: str(PropJobID), Release: str(PropRelease), ReleasedAt: when(PropReleasedAt), VerdictAt: when(PropVerdictAt),
		OSHashAlgo: str(propHashAlgo), OSHashValue: str(propHashValue), SourceHash: str(PropSourceHash),
		DiskFormat: im.DiskFormat, CreatedAt: im.CreatedAt,
	}
}

func (g *glance) get(ctx context.Context, id string) (Image, error) {
	im, err := images.Get(ctx, g.sc, id).Extract()
	if err != nil {
		return Image{}, fmt.Errorf("get image %s: %w", id, err)
	}
	return fromGlance(*im), nil
}

func (g *glance) create(ctx context.Context, opts images.CreateOpts) (Image, error) {
	im, err := images.Create(ctx, g.sc, opts).Extract()
	if err != nil {
		return Image{}, fmt.Errorf("create image %q: %w", opts.Name, err)
	}
	return fromGlance(*im), nil
}

// importMethods lists the interoperable import methods the cloud offers.
func (g *glance) importMethods(ctx context.Context) []string {
	info, err := imageimport.Get(ctx, g.sc).Extract()
	if err != nil {
		return nil // an Image API without import: plain upload
	}
	return info.ImportMethods.Value
}

// upload sends the image data: glance-direct (stage, then import) when the cloud
// offers it, else a plain upload.
func (g *glance) upload(ctx context.Context, id string, data io.Reader, direct bool) error {
	if !direct {
		if err := imagedata.Upload(ctx, g.sc, id, data).ExtractErr(); err != nil {
			return fmt.Errorf("upload image %s: %w", id, err)
		}
		return nil
	}
	if err := imagedata.Stage(ctx, g.sc, id, data).ExtractErr(); err != nil {
		return fmt.Errorf("stage image %s: %w", id, err)
	}
	if err := imageimport.Create(ctx, g.sc, id, imageimport.CreateOpts{Name: imageimport.GlanceDirectMethod}).ExtractErr(); err != nil {
		return fmt.Errorf("import image %s: %w", id, err)
	}
	return nil
}

// change is one update of an image's name, visibility or os_hidden; empty fields are
// left alone.
type change struct {
	Name       string
	Visibility string
	Hidden     *bool
}

func (g *glance) update(ctx context.Context, id string, c change) error {
	var ops images.UpdateOpts
	if c.Name != "" {
		ops = append(ops, images.ReplaceImageName{NewName: c.Name})
	}
	if c.Visibility != "" {
		ops = append(ops, images.UpdateVisibility{Visibility: images.ImageVisibility(c.Visibility)})
	}
	if c.Hidden != nil {
		ops = append(ops, images.ReplaceImageHidden{NewHidden: *c.Hidden})
	}
	if len(ops) == 0 {
		return nil
	}
	if _, err := images.Update(ctx, g.sc, id, ops).Extract(); err != nil {
		return fmt.Errorf("update image %s: %w", id, err)
	}
	return nil
}

func (g *glance) deactivate(ctx context.Context, id string) error {
	resp, err := g.sc.Post(ctx, g.sc.ServiceURL("images", id, "actions", "deactivate"), nil, nil,
		&gophercloud.RequestOpts{OkCodes: []int{http.StatusNoContent}})
	if _, _, err := gophercloud.ParseResponse(resp, err); err != nil {
		return fmt.Errorf("deactivate image %s: %w", id, err)
	}
	return nil
}

// remove deletes an image; one that is already gone counts as deleted.
func (g *glance) remove(ctx context.Context, id string) error {
	err := images.Delete(ctx, g.sc, id).ExtractErr()
	if err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return fmt.Errorf("delete image %s: %w", id, err)
	}
	return nil
}

// waitActive polls the image until it is active, or fails when Glance gives up on it
// (killed, deleted) or ctx ends.
func (g *glance) waitActive(ctx context.Context, id string, every time.Duration) (Image, error) {
	for {
		im, err := g.get(ctx, id)
		if err != nil {
			return Image{}, err
		}
		switch im.Status {
		case statusActive:
			return im, nil
		case "killed", "deleted", "pending_delete", statusDeactivated:
			return im, fmt.Errorf("image %s ended %s instead of active", id, im.Status)
		}
		select {
		case <-ctx.Done():
			return im, fmt.Errorf("image %s still %s: %w", id, im.Status, context.Cause(ctx))
		case <-time.After(every):
		}
	}
}

// isTransient reports whether a cloud error may go away on its own: connection
// trouble, 5xx, 408/409/429, timeouts.
func isTransient(err error) bool {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		return code.Actual >= 500 || code.Actual == http.StatusTooManyRequests ||
			code.Actual == http.StatusRequestTimeout || code.Actual == http.StatusConflict
	}
	var ue *url.Error
	return errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded)
}
