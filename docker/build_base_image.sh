#!/usr/bin/env bash
# Build a Debian bookworm base image with Python 3.11 locally, for machines that reach a Debian
# mirror but no image registry (the CI machine): debootstrap from the mirror apt already uses,
# add the host's CA bundle (so pip inside image builds trusts the same TLS chain), docker import.
#   docker/build_base_image.sh [TAG]      (default ct-base:bookworm; needs root and debootstrap)
set -euo pipefail
TAG=${1:-ct-base:bookworm}
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG exists"; exit 0
fi
MIRROR=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
  | grep -oE '^(URIs:|deb) +https?://[^ ]+' | awk '{print $2}' | grep -v security | head -1 || true)}
[ -n "$MIRROR" ] || { echo "no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR" >&2; exit 1; }
ROOTFS=$(mktemp -d /tmp/ct-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || { tail -20 "$ROOTFS.log" >&2; exit 1; }
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar -C "$ROOTFS" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$TAG" >/dev/null
rm -f "$ROOTFS.log"
echo "built $TAG"
