package publish

import (
	"strings"
	"testing"
	"time"

	"github.com/imagevet/imagevet/jobs"
)

func planString(plan []Action) string {
	var b strings.Builder
	for _, a := range plan {
		b.WriteString(a.String() + "\n")
	}
	return b.String()
}

func TestRotationPlan(t *testing.T) {
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	img := func(id, release string, days int, name, vis, status string) Image {
		return Image{ID: id, Name: name, Visibility: vis, Status: status, Release: release, JobID: "job-" + id,
			ReleasedAt: day.AddDate(0, 0, days), VerdictAt: day.AddDate(0, 0, days).Add(time.Hour)}
	}
	pol := PolicyFor(jobs.Publication{Name: "Debian 12", Rotation: &jobs.Rotation{Keep: 1, DeleteUnused: true}})
	if pol.Latest != "Debian 12 - Latest" || pol.Visibility != "public" || pol.Older != jobs.OlderCommunity {
		t.Fatalf("policy %+v", pol)
	}
	if p := PolicyFor(jobs.Publication{Name: "Debian 12 - Latest"}); p.Latest != "Debian 12 - Latest" || p.Base != "Debian 12" || p.Keep != 1 {
		t.Errorf("a name ending in Latest: %+v", p)
	}
	hidden := func(im Image) Image { im.Hidden = true; return im }
	cases := []struct {
		name string
		imgs []Image
		pol  Policy
		want string
	}{
		{"first release", []Image{img("a", "r1", 0, "Debian 12 (r1)", "private", "active")}, pol,
			`latest     a "Debian 12 (r1)" -> "Debian 12 - Latest" visibility=public release=r1`},
		{"second release retires the first before it takes the name", []Image{
			img("a", "r1", 0, "Debian 12 - Latest", "public", "active"),
			img("b", "r2", 7, "Debian 12 (r2)", "private", "active")}, pol,
			`retire     a "Debian 12 - Latest" -> "Debian 12 (r1)" visibility=community release=r1
latest     b "Debian 12 (r2)" -> "Debian 12 - Latest" visibility=public release=r2`},
		{"past the policy: deactivate and delete; unfinished uploads cleaned up", []Image{
			img("a", "r1", 0, "Debian 12 (r1)", "community", "active"),
			img("b", "r2", 7, "Debian 12 - Latest", "public", "active"),
			img("c", "r3", 14, "Debian 12 (r3)", "private", "active"),
			img("x", "r4", 21, "Debian 12 (r4)", "private", "saving")}, pol,
			`cleanup    x "Debian 12 (r4)" release=r4
retire     b "Debian 12 - Latest" -> "Debian 12 (r2)" visibility=community release=r2
latest     c "Debian 12 (r3)" -> "Debian 12 - Latest" visibility=public release=r3
deactivate a "Debian 12 (r1)" release=r1
delete     a "Debian 12 (r1)" release=r1`},
		{"settled family: nothing to do", []Image{
			img("b", "r2", 7, "Debian 12 (r2)", "community", "active"),
			img("c", "r3", 14, "Debian 12 - Latest", "public", "active")}, pol, ``},
		{"hidden policy, keep none, no delete", []Image{
			img("a", "r1", 0, "Debian 12 - Latest", "public", "active"),
			img("b", "r2", 7, "Debian 12 (r2)", "private", "active")},
			PolicyFor(jobs.Publication{Name: "Debian 12", Visibility: "community", Rotation: &jobs.Rotation{Keep: 0, Older: jobs.OlderHidden}}),
			`retire     a "Debian 12 - Latest" -> "Debian 12 (r1)" os_hidden=true release=r1
latest     b "Debian 12 (r2)" -> "Debian 12 - Latest" visibility=community release=r2
deactivate a "Debian 12 (r1)" release=r1`},
		{"hidden releases are listed again: the Latest, and an older one the community policy retires", []Image{
			hidden(img("a", "r1", 0, "Debian 12 - Latest", "public", "active")),
			hidden(img("b", "r2", 7, "Debian 12 (r2)", "private", "active"))}, pol,
			`retire     a "Debian 12 - Latest" -> "Debian 12 (r1)" visibility=community os_hidden=false release=r1
latest     b "Debian 12 (r2)" -> "Debian 12 - Latest" visibility=public os_hidden=false release=r2`},
	}
	for _, c := range cases {
		got := strings.TrimSpace(planString(Rotation(c.imgs, c.pol)))
		if got != c.want {
			t.Errorf("%s:\ngot\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
	// Without a vendor release time the verdict time orders releases, and the dated
	// name uses the verdict day.
	a := Image{ID: "a", VerdictAt: day, Status: "active", Name: "Debian 12 - Latest", Visibility: "public"}
	b := Image{ID: "b", VerdictAt: day.AddDate(0, 0, 1), Status: "active", Name: "x", Visibility: "private"}
	plan := Rotation([]Image{a, b}, pol)
	if len(plan) != 2 || plan[0].Name != "Debian 12 (2026-11-20)" || plan[1].ImageID != "b" {
		t.Errorf("by verdict time:\n%s", planString(plan))
	}
	if n := position([]Image{a, b}, Image{VerdictAt: day.AddDate(0, 0, -1)}); n != 2 {
		t.Errorf("position of an older release: %d", n)
	}
}
