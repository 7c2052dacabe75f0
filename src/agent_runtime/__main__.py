import sys

from agent_runtime.cli import main

sys.exit(main())
