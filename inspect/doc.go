// Package inspect looks inside an image offline, before any boot: who the image
// is, what a tenant's server would inherit from it, its package manifest; and how
// a release differs from its family's previous vetted release (changes.go).
package inspect
