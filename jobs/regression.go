package jobs

// Default regression thresholds: how much a release may grow over the family's
// previous vetted release before the growth is a warning on its result.
const (
	DefaultBootRegressionPercent = 30
	DefaultSizeRegressionPercent = 20
	// MaxRegressionPercent bounds a threshold a job may set.
	MaxRegressionPercent = 10000
)

// Regression sets how much worse than the family's previous vetted release a
// release may be, in percent of the previous value, before the change is a
// regression: a warning on the result (a pass stays a pass). Zero takes the
// default. A family sets it in its catalog job template.
type Regression struct {
	// BootPercent bounds the growth of the time from domain start to SSH
	// (default DefaultBootRegressionPercent).
	BootPercent int `json:"boot_percent,omitempty"`
	// SizePercent bounds the growth of the image file and of its virtual disk
	// (default DefaultSizeRegressionPercent).
	SizePercent int `json:"size_percent,omitempty"`
}

// WithDefaults returns r with every zero threshold set to its default.
func (r Regression) WithDefaults() Regression {
	if r.BootPercent == 0 {
		r.BootPercent = DefaultBootRegressionPercent
	}
	if r.SizePercent == 0 {
		r.SizePercent = DefaultSizeRegressionPercent
	}
	return r
}

func (r Regression) validate(p *problems) {
	for _, f := range []struct {
		path string
		v    int
	}{{"regression.boot_percent", r.BootPercent}, {"regression.size_percent", r.SizePercent}} {
		if f.v < 0 || f.v > MaxRegressionPercent {
			p.add(f.path, "%d: must be between 1 and %d (0 or absent: the default)", f.v, MaxRegressionPercent)
		}
	}
}
