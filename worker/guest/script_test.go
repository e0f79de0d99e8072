package guest

import (
	"net/url"
	"testing"
)

func fetchScriptFor(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return fetchScript(u)
}
