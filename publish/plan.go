package publish

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

// Action kinds, in the order a plan applies them.
const (
	ActCleanup    = "cleanup"    // delete an unfinished upload of ours (a crash left it)
	ActCreate     = "create"     // create the image and upload the vetted bytes
	ActRetire     = "retire"     // rename an older release and make it community or hidden
	ActLatest     = "latest"     // give the newest release the Latest name and its visibility
	ActDeactivate = "deactivate" // a release past the policy stops being bootable
	ActDelete     = "delete"     // and goes, once no server and no volume uses it
)

// Action is one step of a publication plan. Name is the image's name after the step.
type Action struct {
	Kind       string `json:"action"`
	ImageID    string `json:"image_id,omitempty"`
	Name       string `json:"name"`
	From       string `json:"from,omitempty"`       // the name before a rename
	Visibility string `json:"visibility,omitempty"` // set by the step
	Hidden     *bool  `json:"os_hidden,omitempty"`  // set by the step
	Release    string `json:"release,omitempty"`
}

// String renders the step as one line of a --dry-run plan.
func (a Action) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %s", a.Kind, orNew(a.ImageID))
	if a.From != "" && a.From != a.Name {
		fmt.Fprintf(&b, " %q -> %q", a.From, a.Name)
	} else {
		fmt.Fprintf(&b, " %q", a.Name)
	}
	if a.Visibility != "" {
		fmt.Fprintf(&b, " visibility=%s", a.Visibility)
	}
	if a.Hidden != nil {
		fmt.Fprintf(&b, " os_hidden=%t", *a.Hidden)
	}
	if a.Release != "" {
		fmt.Fprintf(&b, " release=%s", a.Release)
	}
	return b.String()
}

func orNew(id string) string {
	if id == "" {
		return "(new)"
	}
	return id
}

// Policy is how one family is named and rotated, from the job's publish section.
type Policy struct {
	Base         string // the family's stable name without the Latest suffix
	Latest       string // the name the newest release carries
	Visibility   string // the Latest's visibility
	Keep         int    // older releases that stay usable
	Older        string // jobs.OlderCommunity or jobs.OlderHidden
	DeleteUnused bool
}

// latestSuffix is what the Latest name adds to the family's stable name.
const latestSuffix = " - Latest"

// PolicyFor derives a family's policy from a job's publication section. A name that
// already ends in "Latest" is taken as the Latest name itself.
func PolicyFor(p jobs.Publication) Policy {
	pol := Policy{Base: p.Name, Latest: p.Name + latestSuffix, Visibility: p.Visibility, Older: jobs.OlderCommunity}
	if i := len(p.Name) - len("latest"); i > 0 && strings.EqualFold(p.Name[i:], "latest") {
		pol.Latest = p.Name
		pol.Base = strings.TrimRight(p.Name[:i], " -")
	}
	if pol.Visibility == "" {
		pol.Visibility = "public"
	}
	if r := p.Rotation; r != nil {
		pol.Keep, pol.DeleteUnused = r.Keep, r.DeleteUnused
		if r.Older != "" {
			pol.Older = r.Older
		}
	} else {
		pol.Keep = 1
	}
	return pol
}

// OlderName is the name a release carries once it is no longer Latest: the stable
// name with the vendor's version, or the release date when there is none.
func (pol Policy) OlderName(im Image) string {
	if im.Release != "" {
		return pol.Base + " (" + im.Release + ")"
	}
	when := im.ReleasedAt
	if when.IsZero() {
		when = im.VerdictAt
	}
	if when.IsZero() {
		when = im.CreatedAt
	}
	return pol.Base + " (" + when.UTC().Format("2006-01-02") + ")"
}

// settled reports whether Glance has finished with the image (its data is in place).
func settled(im Image) bool { return im.Status == statusActive || im.Status == statusDeactivated }

// newestFirst orders a family's releases: vendor release time, then verdict time,
// then creation; images whose release time is unknown sort by verdict time alone.
func newestFirst(imgs []Image) {
	sort.SliceStable(imgs, func(i, j int) bool {
		a, b := imgs[i], imgs[j]
		if !a.ReleasedAt.IsZero() && !b.ReleasedAt.IsZero() && !a.ReleasedAt.Equal(b.ReleasedAt) {
			return a.ReleasedAt.After(b.ReleasedAt)
		}
		if !a.VerdictAt.Equal(b.VerdictAt) {
			return a.VerdictAt.After(b.VerdictAt)
		}
		return a.CreatedAt.After(b.CreatedAt)
	})
}

// Rotation computes the steps that bring a family's images to the policy: unfinished
// uploads are cleaned up, the newest settled release is Latest, the next Keep are
// retired (renamed, community or hidden), the rest are retired and deactivated and,
// with DeleteUnused, deleted. Images already as the policy wants get no step, so a
// plan applied twice changes nothing the second time. Every rename away from the
// Latest name comes before the rename to it: the family never has two Latests.
func Rotation(imgs []Image, pol Policy) []Action {
	var plan []Image
	var cleanups, retires, latest, deactivates, deletes []Action
	for _, im := range imgs {
		if settled(im) {
			plan = append(plan, im)
		} else {
			cleanups = append(cleanups, Action{Kind: ActCleanup, ImageID: im.ID, Name: im.Name, Release: im.Release})
		}
	}
	newestFirst(plan)
	for i, im := range plan {
		if i == 0 {
			if a := pol.latestStep(im); a.changes() {
				latest = append(latest, a)
			}
			continue
		}
		a := pol.retireStep(im)
		if a.changes() {
			retires = append(retires, a)
		}
		if i <= pol.Keep {
			continue
		}
		if im.Status == statusActive {
			deactivates = append(deactivates, Action{Kind: ActDeactivate, ImageID: im.ID, Name: a.Name, Release: im.Release})
		}
		if pol.DeleteUnused {
			deletes = append(deletes, Action{Kind: ActDelete, ImageID: im.ID, Name: a.Name, Release: im.Release})
		}
	}
	var out []Action
	for _, part := range [][]Action{cleanups, retires, latest, deactivates, deletes} {
		out = append(out, part...)
	}
	return out
}

// latestStep makes im the family's Latest: its name, the policy's visibility,
// listed.
func (pol Policy) latestStep(im Image) Action {
	a := Action{Kind: ActLatest, ImageID: im.ID, Name: pol.Latest, From: im.Name, Release: im.Release}
	if im.Visibility != pol.Visibility {
		a.Visibility = pol.Visibility
	}
	if im.Hidden {
		a.Hidden = boolPtr(false)
	}
	return a
}

// retireStep makes im an older release: its dated name, and hidden or (the
// default) community and listed.
func (pol Policy) retireStep(im Image) Action {
	a := Action{Kind: ActRetire, ImageID: im.ID, Name: pol.OlderName(im), From: im.Name, Release: im.Release}
	switch pol.Older {
	case jobs.OlderHidden:
		if !im.Hidden {
			a.Hidden = boolPtr(true)
		}
	default:
		if im.Visibility != "community" {
			a.Visibility = "community"
		}
		if im.Hidden {
			a.Hidden = boolPtr(false)
		}
	}
	return a
}

// changes reports whether a rename step changes anything: the name, the
// visibility or os_hidden.
func (a Action) changes() bool { return a.Name != a.From || a.Visibility != "" || a.Hidden != nil }

func boolPtr(b bool) *bool { return &b }

// position is where cand would sit among the family's settled releases, newest first
// (0 is Latest); cand itself, if already among them, does not count.
func position(imgs []Image, cand Image) int {
	n := 0
	for _, im := range imgs {
		if !settled(im) || im.ID == cand.ID {
			continue
		}
		pair := []Image{cand, im}
		newestFirst(pair)
		if pair[0].ID == im.ID {
			n++
		}
	}
	return n
}

// releasedAt is the publication's vendor release time, zero when the job gave none.
func releasedAt(p jobs.Publication) time.Time {
	if p.ReleasedAt == nil {
		return time.Time{}
	}
	return p.ReleasedAt.UTC()
}
