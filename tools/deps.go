//go:build tools

// Package tools pins the modules the project builds on before every package imports them.
package tools

import (
	_ "github.com/digitalocean/go-libvirt"
	_ "github.com/kdomanski/iso9660"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/term"
	_ "libvirt.org/go/libvirtxml"
)
