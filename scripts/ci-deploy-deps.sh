#!/usr/bin/env bash
# Installs what tests/deploy needs beyond the uv dev dependencies (hadolint, kubernetes-validate
# and yamllint come with `uv sync`): Debian's docker-compose 1.29, which validates
# docker-compose.yml offline with `docker-compose config` (no Docker engine needed).
#
# Safe to re-run. Never fails the run: where apt is unavailable (a dev box, no root), it prints a
# warning and tests/deploy/test_compose.py skips its `docker-compose config` check with a reason.
set -u

warn() { echo "ci-deploy-deps: WARNING: $*" >&2; }

if command -v docker-compose >/dev/null 2>&1; then
    echo "ci-deploy-deps: docker-compose already installed: $(docker-compose version --short 2>/dev/null || echo unknown)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    warn "apt-get not found; install docker-compose yourself or the compose config test will skip"
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        warn "not root and no passwordless sudo; the compose config test will skip"
        exit 0
    fi
fi

export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get update -qq >/dev/null 2>&1; then
    warn "apt-get update failed; the compose config test will skip"
    exit 0
fi
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1; then
    warn "apt-get install docker-compose failed; the compose config test will skip"
    exit 0
fi
echo "ci-deploy-deps: installed $(docker-compose version --short 2>/dev/null || echo docker-compose)"
