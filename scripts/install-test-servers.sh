#!/usr/bin/env bash
# Install the third-party MCP servers the tool tests use, from the package registries only:
#   .tools/mcp-time-venv   mcp-server-time (PyPI) in its own virtualenv, as a user would run it
#   .tools/mcp-git-venv    mcp-server-git (PyPI) in its own virtualenv
#   .tools/node            @modelcontextprotocol/server-filesystem (npm, --prefix)
# Idempotent: a second run only checks that both are there. A failed install is reported loudly but
# does not fail the script: the tests that need the server then skip, naming the reason.
# Override versions with MCP_SERVER_TIME_SPEC / MCP_SERVER_GIT_SPEC / MCP_SERVER_FILESYSTEM_SPEC.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
TIME_SPEC="${MCP_SERVER_TIME_SPEC:-mcp-server-time}"
GIT_SPEC="${MCP_SERVER_GIT_SPEC:-mcp-server-git}"
FS_SPEC="${MCP_SERVER_FILESYSTEM_SPEC:-@modelcontextprotocol/server-filesystem}"
mkdir -p "$TOOLS"

# install_python_server NAME VENV SPEC: a PyPI server in its own virtualenv, with bytecode compiled
install_python_server() {
  local name="$1" venv="$TOOLS/$2" spec="$3"
  if [[ -x "$venv/bin/$name" ]]; then
    echo "$name: already installed in $venv"
    return
  fi
  echo "$name: installing $spec into $venv"
  rm -rf "$venv"
  bash "$ROOT/scripts/uv.sh" venv --quiet --python "${PYTHON:-python3}" "$venv"
  bash "$ROOT/scripts/uv.sh" pip install --quiet --compile-bytecode --python "$venv/bin/python" "$spec"
  test -x "$venv/bin/$name"
}

install_filesystem() {
  local prefix="$TOOLS/node"
  if [[ -x "$prefix/node_modules/.bin/mcp-server-filesystem" ]]; then
    echo "server-filesystem: already installed in $prefix"
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "server-filesystem: npm not found; skipping (its tests will be skipped)" >&2
    return
  fi
  echo "server-filesystem: installing $FS_SPEC into $prefix"
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "$FS_SPEC"
  test -x "$prefix/node_modules/.bin/mcp-server-filesystem"
}

status=0
install_python_server mcp-server-time mcp-time-venv "$TIME_SPEC" \
  || { echo "WARNING: mcp-server-time could not be installed; its tests will skip" >&2; status=1; }
install_python_server mcp-server-git mcp-git-venv "$GIT_SPEC" \
  || { echo "WARNING: mcp-server-git could not be installed; its tests will skip" >&2; status=1; }
install_filesystem || { echo "WARNING: server-filesystem could not be installed; its tests will skip" >&2; status=1; }
if [[ $status -eq 0 ]]; then
  echo "test MCP servers ready in $TOOLS"
fi
