"""Imported by threads_at_import.py: starts a (daemon) thread as an import side effect."""

import threading

threading.Thread(target=threading.Event().wait, daemon=True, name="started-at-import").start()
