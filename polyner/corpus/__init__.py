"""Tagging large corpora: streaming readers, ordered resumable shards, local / multiprocessing / Ray engines."""
from polyner.corpus.reader import CorpusInputError
from polyner.corpus.run import CorpusSummary, TagCorpusConfig, tag_corpus
from polyner.corpus.writer import CorpusOutputError

__all__ = ["CorpusInputError", "CorpusOutputError", "CorpusSummary", "TagCorpusConfig", "tag_corpus"]
