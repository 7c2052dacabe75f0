"""The tiny stdio server behind a module that starts a thread when imported: a fork server must
refuse it (forking after threads started is unsafe), so the pool spawns it instead."""

import os
import runpy

import thread_at_import  # type: ignore[import-not-found]  # noqa: F401 - starts a thread when imported

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_server.py"), run_name="__main__")
