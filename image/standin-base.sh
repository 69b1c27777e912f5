#!/bin/sh
# A stand-in for rayproject/ray:2.60.0-py311-cpu, made from Debian's mirror alone, for
# machines that cannot reach Docker Hub (`make test-image`). What it shares with the Ray
# image, and all the project's Dockerfile relies on: Python 3.11, ray[serve]==2.60.0 on
# PATH with a pip that the user may install into, and the non-root user `ray` (uid 1000,
# group users) with home /home/ray. What it lacks: conda, Ray's extra tools, CUDA.
#
#   sh image/standin-base.sh [TAG]      (as root, with a running dockerd; ~5 min)
#
# Environment: STANDIN_DIR (the debootstrap folder, default build/standin-rootfs of the repository),
# DEBIAN_MIRROR, DOCKER (the client), PIP_CERT (a CA bundle for pip inside the build; default the host's).
set -eu
TAG=${1:-streammuse-standin/ray:2.60.0-py311-cpu}
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${STANDIN_DIR:-$HERE/../build/standin-rootfs}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DOCKER=${DOCKER:-docker}
if ! $DOCKER image inspect streammuse-standin/rootfs:bookworm >/dev/null 2>&1; then
    rm -rf "$DIR" && mkdir -p "$DIR"  # debootstrap wants the folder's parent to exist
    # python3 of bookworm is 3.11; ca-certificates for pip; procps: ps inside, for debugging.
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,procps \
        bookworm "$DIR" "$MIRROR"
    rm -rf "$DIR"/var/cache/apt/archives/*.deb "$DIR"/var/lib/apt/lists/*
    tar -C "$DIR" -c . | $DOCKER import - streammuse-standin/rootfs:bookworm
    rm -rf "$DIR"
fi
# The build runs pip against PyPI: host network (no bridge here), the host's CA bundle.
CERT=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
cp "$HERE/standin.Dockerfile" "$CTX/Dockerfile"
cp "$CERT" "$CTX/pip-cert.pem"
$DOCKER build --network host -t "$TAG" "$CTX"
