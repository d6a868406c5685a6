"""jetstore.tools."""
