"""The example server, after starting a helper process that ignores SIGTERM and outlives stdin.

Closing must still leave no process behind: the whole process group is killed.
"""

import runpy
import subprocess
import sys
from pathlib import Path

HELPER = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", HELPER], stdin=subprocess.DEVNULL)
server = Path(__file__).resolve().parents[3] / "examples" / "mcp_server" / "server.py"
runpy.run_path(str(server), run_name="__main__")
