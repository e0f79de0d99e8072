# imagevet worker image. The worker drives the HOST's libvirtd through its socket, so
# every path it hands to libvirt (image cache, overlays, seeds, console logs, and the
# imagevet binary qemu runs for the guest metadata proxy) lives under the state
# directory, bind-mounted at the same path on host and container (see
# docker-compose.yml). Build: docker build -t imagevet .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/imagevet ./cmd/imagevet

FROM debian:bookworm-slim
# qemu-utils: qemu-img checks images; curl: the health check.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates qemu-utils curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/imagevet /usr/local/bin/imagevet
ENV IMAGEVET_STATE_DIR=/var/lib/imagevet
# Copy the binary into the state directory first: the host's qemu runs it (guestfwd
# metadata proxy) by that path, which exists on the host through the bind mount.
ENTRYPOINT ["/bin/sh", "-c", "install -D -m 0755 /usr/local/bin/imagevet \"$IMAGEVET_STATE_DIR/bin/imagevet\" && exec \"$IMAGEVET_STATE_DIR/bin/imagevet\" \"$@\"", "imagevet"]
CMD ["worker"]
