"""The tiny MCP server, unless the file named in argv[1] exists: then it fails at start (exit 4)."""

import runpy
import sys
from pathlib import Path

if Path(sys.argv[1]).exists():
    print("flaky server: refusing to start (exit 4)", file=sys.stderr, flush=True)
    sys.exit(4)
runpy.run_path(str(Path(__file__).with_name("tiny_server.py")), run_name="__main__")
