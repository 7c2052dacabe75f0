"""A 'server' that writes a diagnostic to stderr and exits before the handshake."""

import sys

print("crash server: cannot find its configuration (exit 3)", file=sys.stderr, flush=True)
sys.exit(3)
