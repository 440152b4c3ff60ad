"""The inference benchmark behind ``polyner bench``: every model measured in a fresh process on the same texts."""
