"""NER data: IOB2/CoNLL files, WikiAnn through ``datasets``, subword alignment and caching."""
from polyner.data.iob2 import GoldFile, Sentence, discover_gold, read_iob2

__all__ = ["GoldFile", "Sentence", "discover_gold", "read_iob2"]
