"""The planner and executor agents. They talk to an LLMClient and to tools through small protocols."""
