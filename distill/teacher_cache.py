"""Teacher outputs on the transfer set, computed once and kept on disk as fp16 memory maps.

For every token of every transfer sentence the cache holds the teacher hidden states that stage 1
matches (by default the top ``n_states``; any ``state_indices`` into ``hidden_states``) and its
logits (stage 2-3 targets). Building is resumable: the work is done in length-sorted batches and
progress is recorded after each chunk.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


@dataclass
class TeacherCache:
    """Read access to a built cache: per-sentence student ids, teacher hidden states and logits."""

    folder: Path
    ids: np.ndarray
    offsets: np.ndarray
    langs: list[str]
    hidden: np.ndarray | None  # [tokens, n_states, width] fp16 memmap, states ordered bottom to top
    logits: np.ndarray  # [tokens, labels] fp16 memmap

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def span(self, i: int) -> tuple[int, int]:
        return int(self.offsets[i]), int(self.offsets[i + 1])

    def batch(self, indices: Sequence[int], pad_id: int, with_hidden: bool) -> dict[str, torch.Tensor]:
        """Padded student input ids, mask, teacher logits and (optionally) teacher hidden states."""
        spans = [self.span(i) for i in indices]
        width = max(b - a for a, b in spans)
        n = len(indices)
        ids = torch.full((n, width), pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        logits = torch.zeros((n, width, self.logits.shape[1]))
        hidden = torch.zeros((n, width) + self.hidden.shape[1:]) if with_hidden and self.hidden is not None else None
        for row, (a, b) in enumerate(spans):
            ids[row, :b - a] = torch.from_numpy(self.ids[a:b].astype(np.int64))
            mask[row, :b - a] = 1
            logits[row, :b - a] = torch.from_numpy(np.asarray(self.logits[a:b], dtype=np.float32))
            if hidden is not None:
                hidden[row, :b - a] = torch.from_numpy(np.asarray(self.hidden[a:b], dtype=np.float32))
        out = {"input_ids": ids, "attention_mask": mask, "teacher_logits": logits}
        if hidden is not None:
            out["teacher_hidden"] = hidden
        return out


class StaleTeacherCacheError(ValueError):
    """A teacher cache holds outputs for other pieces or another teacher than the run now gives it."""


def stale_cache_message(folder: Path, meta: dict, teacher_dir: str, ids: np.ndarray, sentences: int,
                        state_indices: Sequence[int]) -> str:
    """Why the cache in ``folder`` does not fit, and what to do (it is never overwritten: hours of teacher passes)."""
    stamp = _teacher_stamp(teacher_dir)
    if meta.get("teacher") not in (None, stamp):
        why = f"it was built with the teacher {meta['teacher']}, and the teacher is now {stamp}"
    elif meta.get("state_indices") not in (None, list(state_indices)):
        why = f"it holds the teacher states {meta['state_indices']}, and this run matches {list(state_indices)}"
    elif meta.get("tokens") != len(ids) or meta.get("sentences") != sentences:
        why = (f"it holds {meta.get('sentences')} sentences of {meta.get('tokens')} pieces, and this run's transfer "
               f"text reads as {sentences} sentences of {len(ids)} pieces")
    else:
        why = f"this run's transfer text reads as other pieces ({sentences} sentences, {len(ids)} pieces either way)"
    return (f"teacher cache {folder} does not fit this run: {why}. The code, the vocabulary or the teacher reads the "
            "transfer text otherwise than when the cache was built; run the code that built it, or move the folder "
            "away to compute the teacher outputs again")


def _fingerprint(teacher_dir: str, ids: np.ndarray, state_indices: Sequence[int]) -> str:
    stamp = _teacher_stamp(teacher_dir)
    digest = hashlib.sha256(stamp.encode() + ids.tobytes() + str(list(state_indices)).encode())
    return digest.hexdigest()[:24]


def _teacher_stamp(teacher_dir: str) -> str:
    weights = Path(teacher_dir) / "model.safetensors"
    return f"{weights.resolve()}:{weights.stat().st_mtime_ns}" if weights.exists() else str(teacher_dir)


KEEP_IDS_FILE = "keep_ids.npy"  # the teacher id of each student id: what the cached sentences mean


def cache_vocabulary(folder: str | Path) -> np.ndarray | None:
    """The teacher ids behind the student ids of the cache in ``folder`` (saved with it, or, for a cache written
    before it was, the ``vocab`` folder next to it in a distillation work folder); None when unknown."""
    folder = Path(folder)
    for path in (folder / KEEP_IDS_FILE, folder.parent / "vocab" / KEEP_IDS_FILE):
        if path.exists():
            return np.load(path)
    return None


def copy_shared_sentences(source: TeacherCache, source_keep: np.ndarray, flat: np.ndarray, offsets: np.ndarray,
                          keep_ids: np.ndarray, logits_map: np.ndarray, hidden_map: np.ndarray | None) -> np.ndarray:
    """Fill a new cache with the outputs of the sentences an earlier one holds, matched on the teacher's pieces (so
    two vocabularies can share); return the indices of the sentences it lacks, for the teacher to compute (all of
    them when the shapes differ)."""
    everything = np.arange(len(offsets) - 1, dtype=np.int64)
    if (hidden_map is not None and (source.hidden is None or source.hidden.shape[1:] != hidden_map.shape[1:])) \
            or source.logits.shape[1] != logits_map.shape[1]:
        return everything
    source_teacher_ids = source_keep.astype(np.int64)[source.ids]
    teacher_ids = keep_ids.astype(np.int64)[flat]
    rows: dict[bytes, int] = {}
    for j in range(len(source)):
        a, z = source.span(j)
        rows.setdefault(source_teacher_ids[a:z].tobytes(), j)
    picks: list[tuple[int, int]] = []
    missing: list[int] = []
    for i in range(len(offsets) - 1):
        j = rows.get(teacher_ids[offsets[i]:offsets[i + 1]].tobytes())
        if j is None:
            missing.append(i)
        else:
            picks.append((i, j))
    for i, j in tqdm(picks, desc="teacher outputs (reused)"):
        a, z = int(offsets[i]), int(offsets[i + 1])
        sa, sz = source.span(j)
        logits_map[a:z] = source.logits[sa:sz]
        if hidden_map is not None:
            hidden_map[a:z] = source.hidden[sa:sz]
    return np.asarray(missing, dtype=np.int64)


def build_teacher_cache(folder: str | Path, teacher: torch.nn.Module, teacher_dir: str,
                        student_ids: Sequence[np.ndarray], keep_ids: np.ndarray, langs: Sequence[str],
                        n_states: int, pad_id: int, batch_size: int = 32, store_hidden: bool = True,
                        chunk_batches: int = 20, reuse_from: str | Path | None = None,
                        state_indices: Sequence[int] | None = None) -> TeacherCache:
    """Run the teacher once over the transfer set (student tokenization mapped to teacher ids).

    ``state_indices``: which of the teacher's ``hidden_states`` (0 = embeddings) to keep, bottom to top;
    None keeps the top ``n_states``.

    ``reuse_from``: the cache of an earlier run with the same teacher (an ablation on a subset, a transfer set with
    more text for some languages, another vocabulary): the outputs of the sentences it holds, matched on the teacher's
    pieces, are copied, and the teacher runs on the others only."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(x) for x in student_ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate(student_ids).astype(np.int32) if len(student_ids) else np.zeros(0, np.int32)
    total_states = teacher.config.num_hidden_layers + 1
    if state_indices is None:
        state_indices = list(range(total_states - n_states, total_states))
    state_indices = [int(i) for i in state_indices]
    if len(state_indices) != n_states or not all(0 <= i < total_states for i in state_indices):
        raise ValueError(f"state_indices {state_indices}: expected {n_states} indices into the teacher's "
                         f"{total_states} hidden states")
    key = _fingerprint(teacher_dir, flat, state_indices)
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    width = teacher.config.hidden_size
    labels = teacher.config.num_labels
    if meta.get("key") not in (None, key) and meta.get("batches_done", 0) > 0:
        raise StaleTeacherCacheError(stale_cache_message(folder, meta, teacher_dir, flat, len(student_ids),
                                                         state_indices))
    fresh = meta.get("key") != key or (store_hidden and not meta.get("store_hidden"))  # hidden states now needed
    if not fresh:
        store_hidden = bool(meta.get("store_hidden"))  # go on writing what the cache already holds
    if fresh:
        np.save(folder / "ids.npy", flat)
        np.save(folder / "offsets.npy", offsets)
        (folder / "langs.json").write_text(json.dumps(list(langs)))
        meta = {"key": key, "tokens": int(len(flat)), "sentences": len(student_ids), "n_states": n_states,
                "state_indices": state_indices,
                "width": width, "labels": labels, "batches_done": 0, "complete": False,
                "store_hidden": store_hidden, "teacher": _teacher_stamp(teacher_dir)}
        np.save(folder / KEEP_IDS_FILE, np.asarray(keep_ids))
        meta_path.write_text(json.dumps(meta))
    mode = "w+" if fresh else "r+"
    tokens = max(len(flat), 1)
    logits_map = np.memmap(folder / "logits.f16", dtype=np.float16, mode=mode, shape=(tokens, labels))
    hidden_map = (np.memmap(folder / "hidden.f16", dtype=np.float16, mode=mode, shape=(tokens, n_states, width))
                  if store_hidden else None)
    if reuse_from is not None and not meta["complete"] and "todo" in meta:
        logger.info("teacher outputs were copied from an earlier cache already: the teacher resumes on the rest")
    elif reuse_from is not None and not meta["complete"]:
        source = open_teacher_cache(reuse_from)
        source_meta = json.loads((Path(reuse_from) / "meta.json").read_text())
        stamp = source_meta.get("teacher")
        if stamp is not None and stamp != meta["teacher"]:
            raise ValueError(f"teacher cache {reuse_from} was built with another teacher ({stamp}); "
                             f"this run distils from {meta['teacher']}")
        source_keep = cache_vocabulary(reuse_from)
        same_states = hidden_map is None or source_meta.get("state_indices", state_indices) == state_indices
        if source_keep is None or not same_states:
            logger.warning("%s %s: running the teacher on every sentence", reuse_from,
                           "holds other hidden states" if source_keep is not None else
                           "does not say which vocabulary its ids are in")
            todo = np.arange(len(student_ids), dtype=np.int64)
        else:
            todo = copy_shared_sentences(source, source_keep, flat, offsets, np.asarray(keep_ids), logits_map,
                                         hidden_map)
        logits_map.flush()
        if hidden_map is not None:
            hidden_map.flush()
        np.save(folder / "todo.npy", todo)  # written after the copy: a run stopped before it copies again
        meta.update(todo="todo.npy", batches_done=0, complete=len(todo) == 0)
        meta_path.write_text(json.dumps(meta))
        (logger.warning if len(todo) == len(student_ids) else logger.info)(
            "teacher outputs of %d of %d sentences copied from %s; the teacher runs on %d",
            len(student_ids) - len(todo), len(student_ids), reuse_from, len(todo))
    if not meta["complete"]:
        todo = np.load(folder / meta["todo"]) if meta.get("todo") else np.arange(len(student_ids), dtype=np.int64)
        order = todo[np.argsort(lengths[todo], kind="stable")]
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        teacher.eval()
        progress = tqdm(range(meta["batches_done"], len(batches)), desc="teacher outputs", initial=meta["batches_done"],
                        total=len(batches))
        with torch.inference_mode():
            for b in progress:
                batch = batches[b]
                width_b = int(lengths[batch].max())
                ids = torch.full((len(batch), width_b), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width_b), dtype=torch.long)
                for row, i in enumerate(batch):
                    a, z = offsets[i], offsets[i + 1]
                    ids[row, :z - a] = torch.from_numpy(keep_ids[flat[a:z]].astype(np.int64))
                    mask[row, :z - a] = 1
                out = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=store_hidden)
                logits = out.logits.float().numpy().astype(np.float16)
                states = (torch.stack([out.hidden_states[i] for i in state_indices], dim=2).numpy().astype(np.float16)
                          if store_hidden else None)
                for row, i in enumerate(batch):
                    a, z = offsets[i], offsets[i + 1]
                    logits_map[a:z] = logits[row, :z - a]
                    if states is not None:
                        hidden_map[a:z] = states[row, :z - a]
                if (b + 1) % chunk_batches == 0 or b + 1 == len(batches):
                    logits_map.flush()
                    if hidden_map is not None:
                        hidden_map.flush()
                    meta["batches_done"] = b + 1
                    meta_path.write_text(json.dumps(meta))
        meta["complete"] = True
        meta_path.write_text(json.dumps(meta))
    return open_teacher_cache(folder)


def open_teacher_cache(folder: str | Path) -> TeacherCache:
    """Open a complete cache read-only."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    if not meta.get("complete"):
        raise ValueError(f"teacher cache in {folder} is incomplete: rerun to finish it")
    tokens = max(meta["tokens"], 1)
    logits = np.memmap(folder / "logits.f16", dtype=np.float16, mode="r", shape=(tokens, meta["labels"]))
    hidden = (np.memmap(folder / "hidden.f16", dtype=np.float16, mode="r",
                        shape=(tokens, meta["n_states"], meta["width"])) if meta.get("store_hidden") else None)
    return TeacherCache(folder, np.load(folder / "ids.npy"), np.load(folder / "offsets.npy"),
                        json.loads((folder / "langs.json").read_text()), hidden, logits)
