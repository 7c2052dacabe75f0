"""A 'server' that starts but never answers ``initialize`` (and ignores stdin closing)."""

import sys
import time

print("hung server: started, will never answer", file=sys.stderr, flush=True)
time.sleep(3600)
