"""The AI layer: the model gateway, agentic steps and the governed MCP gateway."""
