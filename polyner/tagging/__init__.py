"""The tagging core: words with offsets in every script, windows over the pieces, decoding into entity spans.

One :class:`~polyner.tagging.tagger.Tagger` serves every surface (Python API, command line, spaCy component, HTTP
service, corpus workers) and the evaluation of training runs.
"""
