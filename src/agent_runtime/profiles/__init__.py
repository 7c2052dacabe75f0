"""Agent profiles: named sets of planner/executor instructions, models, tool servers and limits.

``model.py`` is the file's shape and the content hash; ``loader.py`` reads and checks the file and
holds the profiles in force (reloadable). A task snapshots its profile when it is submitted.
"""

from agent_runtime.profiles.model import BUILTIN, Profile, ProfileSet, TaskProfile

__all__ = ["BUILTIN", "Profile", "ProfileSet", "TaskProfile"]
