"""Surfaces built on the tagging core (:mod:`polyner.tagging`): the spaCy component."""
