"""agent-runtime: a plan-and-execute task service with human approval gates."""

__version__ = "0.1.0"
