"""jetstore.protocol."""
