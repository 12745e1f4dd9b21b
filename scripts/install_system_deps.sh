#!/usr/bin/env bash
# System packages the test suite uses beyond Python: a Docker engine (container-runtime test),
# debootstrap (the base image it builds without a registry) and docker-compose (Compose file
# check). Installs what is missing when run as root with apt-get; elsewhere it says which tests
# will skip.
set -euo pipefail
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
else
  echo "not installing ${need[*]} (needs root and apt-get): the tests that need them will skip" >&2
fi
