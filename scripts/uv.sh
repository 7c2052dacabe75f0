#!/usr/bin/env bash
# Run uv. Without one on PATH, bootstrap it once into a private virtualenv (.tools/uv): a fresh
# machine may have only python3, and Debian 12's python3 refuses `pip install` outside a
# virtualenv (PEP 668, externally-managed-environment), with --user too.
set -euo pipefail
if command -v uv >/dev/null 2>&1; then
  exec uv "$@"
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOL_ENV="$ROOT/.tools/uv"
if [ ! -x "$TOOL_ENV/bin/uv" ]; then
  PY="${PYTHON:-python3}"
  echo "uv not found: installing it into $TOOL_ENV (a private virtualenv)" >&2
  rm -rf "$TOOL_ENV"
  if ! "$PY" -m venv "$TOOL_ENV"; then
    rm -rf "$TOOL_ENV"
    echo "cannot create a virtualenv with $PY: on Debian/Ubuntu install python3-venv" \
      "(apt-get install python3-venv), or install uv yourself (https://docs.astral.sh/uv/)" >&2
    exit 1
  fi
  if ! "$TOOL_ENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.13,<0.14"; then
    rm -rf "$TOOL_ENV"
    echo "could not install uv with pip into $TOOL_ENV" >&2
    exit 1
  fi
fi
exec "$TOOL_ENV/bin/uv" "$@"
