"""MCP tool servers: registry, catalogue, task-scoped sessions. Only this package imports ``mcp``."""
