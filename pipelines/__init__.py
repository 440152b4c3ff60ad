"""Inference pipelines: NER tagging (the one tagging core), and the spaCy component."""
