"""The tiny MCP server, unless the file named in argv[1] exists: then it starts but never answers
``initialize`` (a server whose start became slow after an earlier discovery)."""

import runpy
import sys
import time
from pathlib import Path

if Path(sys.argv[1]).exists():
    print("slow server: started, will not answer", file=sys.stderr, flush=True)
    time.sleep(3600)
runpy.run_path(str(Path(__file__).with_name("tiny_server.py")), run_name="__main__")
