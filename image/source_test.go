package image

import (
	"errors"
	"testing"
)

// parseSourceURL tells an http(s) source from a file one without touching the file
// system, and refuses what no source may be.
func TestParseSourceURL(t *testing.T) {
	for _, tc := range []struct {
		raw        string
		http, file string
		name       string
		err        string
	}{
		{raw: "https://example.org/images/debian.qcow2?x=1", http: "https://example.org/images/debian.qcow2?x=1", name: "debian.qcow2"},
		{raw: "http://127.0.0.1:8080/a.img", http: "http://127.0.0.1:8080/a.img", name: "a.img"},
		{raw: "file:///srv/images/a.img", file: "/srv/images/a.img"},
		{raw: "file://localhost/srv/a.img", file: "/srv/a.img"},
		{raw: "images/a.img", file: "images/a.img"},
		{raw: "c:/a.img", file: "c:/a.img"}, // a one-letter scheme is a path
		{raw: "%zz", file: "%zz"},           // not a URL: a path
		{raw: "https:///a.img", err: `image.source: "https:///a.img" has no host`},
		{raw: "https://u:p@h/a.img", err: `image.source: "https://u:p@h/a.img": credentials in URLs are not supported`},
		{raw: "file://host/a.img", err: `image.source: "file://host/a.img": file URLs must not name a host`},
		{raw: "file:a.img", err: `image.source: "file:a.img": file URL path must be absolute`},
		{raw: "ftp://h/a.img", err: `image.source: "ftp://h/a.img": unsupported scheme "ftp" (want https, http or file)`},
	} {
		loc, file, err := parseSourceURL(tc.raw, FieldSource)
		var se *SourceError
		switch {
		case tc.err != "":
			if !errors.As(err, &se) || se.Field != FieldSource || err.Error() != tc.err {
				t.Errorf("%q: err %v, want %s", tc.raw, err, tc.err)
			}
		case err != nil || loc.HTTP != tc.http || file != tc.file || loc.Name != tc.name:
			t.Errorf("%q: got %+v, file %q, %v; want http %q file %q name %q", tc.raw, loc, file, err, tc.http, tc.file, tc.name)
		}
	}
}
