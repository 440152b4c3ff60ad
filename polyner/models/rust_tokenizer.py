"""A tokenizer read straight from ``tokenizer.json`` with the ``tokenizers`` library, without transformers.

The ONNX backend needs no transformers code for its model, and importing transformers (for its
``AutoTokenizer``) was about a second of a cold ``polyner.load``. :class:`RustTokenizer` gives the
tagger what it uses of a transformers fast tokenizer: ``tokenizer(words, is_split_into_words=True,
add_special_tokens=False)`` with ``["input_ids"]`` and ``.word_ids(i)``, ``return_offsets_mapping``,
the special-token ids, ``get_vocab``, ``len`` and ``save_pretrained``. The encodings are the same
as transformers' ``PreTrainedTokenizerFast`` built from the same files: both run the Rust tokenizer
of ``tokenizer.json``; the special tokens come from ``tokenizer_config.json`` (and
``special_tokens_map.json`` when present).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from polyner.models.io import ModelDirectoryError

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class Encoded:
    """The encodings of a batch, read like transformers' ``BatchEncoding``: ``enc["input_ids"]``, ``enc.word_ids(i)``."""

    def __init__(self, encodings: list, single: bool) -> None:
        self._encodings = encodings
        self._single = single
        self._fields: dict[str, list] = {}

    def _field(self, name: str) -> list:
        if name not in self._fields:  # read from the Rust encodings once
            values = [getattr(e, name) for e in self._encodings]
            self._fields[name] = values[0] if self._single else values
        return self._fields[name]

    def __getitem__(self, key: str) -> list:
        if key == "input_ids":
            return self._field("ids")
        if key == "attention_mask":
            return self._field("attention_mask")
        if key == "offset_mapping":
            return self._field("offsets")
        raise KeyError(key)

    def word_ids(self, index: int = 0) -> list[int | None]:
        """The word of each piece of text ``index`` (None for special tokens)."""
        return self._encodings[index].word_ids


class RustTokenizer:
    """A ``tokenizer.json`` tokenizer with the special tokens of its ``tokenizer_config.json``."""

    def __init__(self, tokenizer: Any, special_tokens: dict[str, str | None], name_or_path: str = "",
                 source: Path | None = None) -> None:
        self._tokenizer = tokenizer
        self.name_or_path = name_or_path
        self._source = source
        for name in SPECIAL_TOKENS:  # ids looked up one by one: the whole vocabulary as a dict costs 0.1 s a load
            token = special_tokens.get(name)
            setattr(self, name, token)
            setattr(self, f"{name}_id", tokenizer.token_to_id(token) if token is not None else None)

    @classmethod
    def from_directory(cls, path: str | Path) -> "RustTokenizer":
        """Read ``tokenizer.json`` and the special tokens saved beside it; ModelDirectoryError if they are unreadable."""
        from tokenizers import Tokenizer

        path = Path(path)
        try:
            tokenizer = Tokenizer.from_file(str(path / TOKENIZER_FILE))
        except Exception as exc:  # the Rust library raises its own exception type for bad JSON
            raise ModelDirectoryError(f"cannot load the tokenizer in {path}: {exc}") from exc
        specials: dict[str, str | None] = {}
        for name in CONFIG_FILES:
            file = path / name
            if not file.exists():
                continue
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ModelDirectoryError(f"cannot load the tokenizer in {path}: corrupt {name}: {exc}") from exc
            if not isinstance(data, dict):
                raise ModelDirectoryError(f"cannot load the tokenizer in {path}: {name} is not a JSON object")
            for key in SPECIAL_TOKENS:
                value = data.get(key)
                if isinstance(value, dict):  # an AddedToken written out: {"content": "<s>", ...}
                    value = value.get("content")
                if isinstance(value, str):
                    specials[key] = value
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return cls(tokenizer, specials, str(path), path)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def backend_tokenizer(self):
        """The ``tokenizers.Tokenizer`` itself (as on transformers' fast tokenizers)."""
        return self._tokenizer

    def get_vocab(self) -> dict[str, int]:
        """Piece -> id, added tokens included."""
        return self._tokenizer.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]):
        """Ids of pieces (the unknown token's id for a piece outside the vocabulary)."""
        if isinstance(tokens, str):
            return self._id(tokens)
        return [self._id(t) for t in tokens]

    def _id(self, token: str) -> int | None:
        found = self._tokenizer.token_to_id(token)
        return self.unk_token_id if found is None else found

    def tokenize(self, text: str) -> list[str]:
        """The pieces of ``text``, without special tokens."""
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def __call__(self, text: str | Sequence[str] | Sequence[Sequence[str]], is_split_into_words: bool = False,
                 add_special_tokens: bool = True, return_offsets_mapping: bool = False, **options) -> Encoded:
        """Encode one text or a batch (of strings, or of word lists with ``is_split_into_words=True``).

        Unpadded, untruncated lists only: asking for padding, truncation or tensors raises TypeError
        rather than being ignored.
        """
        unsupported = sorted(k for k, v in options.items() if v not in (None, False, "do_not_pad", "do_not_truncate"))
        if unsupported:
            raise TypeError(f"RustTokenizer does not support {', '.join(unsupported)}: it gives unpadded, "
                            "untruncated lists of ids; for padded tensors use transformers' tokenizer "
                            "(polyner.models.io.load_tokenizer(DIR))")
        single = isinstance(text, str) or (is_split_into_words and bool(text) and isinstance(text[0], str))
        batch = [text] if single else list(text)
        encodings = self._tokenizer.encode_batch(batch, is_pretokenized=is_split_into_words,
                                                 add_special_tokens=add_special_tokens)
        return Encoded(encodings, single)

    def save_pretrained(self, directory: str | Path) -> tuple[str, ...]:
        """Write ``tokenizer.json`` and the special-token files into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = [directory / TOKENIZER_FILE]
        self._tokenizer.save(str(written[0]))
        for name in CONFIG_FILES:
            if self._source is not None and (self._source / name).exists():
                if (self._source / name).resolve() != (directory / name).resolve():
                    shutil.copy2(self._source / name, directory / name)
                written.append(directory / name)
        if self._source is None or not (self._source / CONFIG_FILES[0]).exists():
            config = {key: getattr(self, key) for key in SPECIAL_TOKENS if getattr(self, key) is not None}
            config["tokenizer_class"] = "PreTrainedTokenizerFast"
            (directory / CONFIG_FILES[0]).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            written.append(directory / CONFIG_FILES[0])
        return tuple(str(p) for p in written)

    def __repr__(self) -> str:
        return f"RustTokenizer({self.name_or_path!r}, vocabulary {len(self)})"


def load_inference_tokenizer(path: Path):
    """The tokenizer the transformers-free models tag with: a :class:`RustTokenizer` when ``path`` holds
    ``tokenizer.json``, else transformers' (a sentencepiece-only folder)."""
    from polyner.models.io import load_tokenizer, quiet_transformers

    if (path / TOKENIZER_FILE).exists():
        return RustTokenizer.from_directory(path)
    quiet_transformers()
    return load_tokenizer(path)
