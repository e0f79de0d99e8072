// Package packaging holds the Debian package of imagevet and its test: the systemd
// units (systemd/), the nats-server drop-in for a single host's JetStream, the default
// settings (etc/), the maintainer scripts (debian/). scripts/build-deb assembles them
// with the binary into imagevet_<version>_amd64.deb (make deb); deb_test.go installs
// it, verifies the units and runs each one's ExecStart as its user.
package packaging
