#!/usr/bin/env bash
# Run uv, installing it with pip first if this machine has none (a fresh machine has only Python + pip).
set -euo pipefail
if command -v uv >/dev/null 2>&1; then
  exec uv "$@"
fi
PY="${PYTHON:-python3}"
if ! "$PY" -m uv --version >/dev/null 2>&1; then
  echo "uv not found: installing it with pip" >&2
  "$PY" -m pip install --quiet --disable-pip-version-check "uv>=0.13,<0.14" \
    || "$PY" -m pip install --quiet --user --disable-pip-version-check "uv>=0.13,<0.14"
fi
exec "$PY" -m uv "$@"
