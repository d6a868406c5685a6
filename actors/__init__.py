"""jetstore.actors."""
