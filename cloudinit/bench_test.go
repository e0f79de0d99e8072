package cloudinit

import (
	"io"
	"testing"
)

// BenchmarkNewKeys measures a job's key generation (two ed25519, two RSA keys).
func BenchmarkNewKeys(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewKeys(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteISO measures a whole seed, rendering plus ISO, with pre-made keys.
func BenchmarkWriteISO(b *testing.B) {
	for _, tc := range goldenCases(b) {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := tc.spec.WriteISO(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFiles measures rendering alone (validation, merge, encoding).
func BenchmarkFiles(b *testing.B) {
	for _, tc := range goldenCases(b) {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.spec.Files(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
