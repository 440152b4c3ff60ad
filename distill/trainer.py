"""``polyner distill``: the whole XtremeDistil run, resumable stage by stage.

transfer set -> trimmed vocabulary -> teacher outputs cached once -> student built from a preset
(factorized embeddings) -> stages 1..4 with dev-based selection -> the student in HF layout.
"""
from __future__ import annotations

import collections
import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from polyner.data.iob2 import discover_gold, read_gold
from polyner.data.training_sets import (encode_training_files, group_weights, selection_files, selection_sentences,
                                        silver_only_without_gold, training_files)
from polyner.distill.config import DistillConfig
from polyner.distill.stages import (ANCHOR, LOSSES, DistillationModel, Stage, anchored, loss_terms, plan_stages,
                                   stage_loss)
from polyner.distill.student_init import (copy_teacher_classifier, copy_teacher_layers, init_embeddings,
                                          rank_ffn_neurons, student_config, teacher_layer_picks)
from polyner.distill.teacher_cache import build_teacher_cache
from polyner.distill.transfer import TransferSentence, build_transfer_set, to_words, unlabeled_files, usable_lines
from polyner.evaluate import evaluate_by_language, macro
from polyner.loading import locate_model
from polyner.models.io import load_token_classifier
from polyner.models.student import PolynerStudentForTokenClassification, count_parameters
from polyner.tagging.tagger import Tagger
from polyner.data.align import model_input
from polyner.models.classifier import config_unspaced_runs
from polyner.tagging.pieces import joined_runs, special_ids, word_pieces
from polyner.tagging.words import recut_words, tokenizer_run_splitter
from polyner.training.distributed import init_distributed
from polyner.training.engine import (CheckpointPlan, Evaluation, LoopSettings, Progress, Step, read_state,
                                     run_identity, train_loop)
from polyner.training.loop import collate, linear_schedule, seed_everything
from polyner.training.sampling import MixedLanguageSampler

logger = logging.getLogger(__name__)


class TokenizerMismatchError(ValueError):
    """The student's vocabulary was not trimmed from this teacher's tokenizer."""


def check_tokenizers(teacher_tokenizer, student_tokenizer, keep_ids: np.ndarray) -> None:
    """Refuse a student tokenizer whose pieces are not the teacher's pieces at ``keep_ids``."""
    teacher_vocab = {i: p for p, i in teacher_tokenizer.get_vocab().items()}
    student_vocab = {i: p for p, i in student_tokenizer.get_vocab().items()}
    if len(student_vocab) != len(keep_ids):
        raise TokenizerMismatchError(f"student tokenizer has {len(student_vocab)} pieces but the vocabulary map "
                                     f"lists {len(keep_ids)}: it was not trimmed from this teacher")
    bad = [i for i, old in enumerate(keep_ids) if teacher_vocab.get(int(old)) != student_vocab.get(i)]
    if bad:
        i = bad[0]
        raise TokenizerMismatchError(
            f"teacher/student tokenizer mismatch: {len(bad)} student pieces differ from the teacher's "
            f"(e.g. student id {i} is {student_vocab.get(i)!r}, teacher id {int(keep_ids[i])} is "
            f"{teacher_vocab.get(int(keep_ids[i]))!r}); distil from the teacher this vocabulary came from")


def with_gold_languages(config: DistillConfig) -> DistillConfig:
    """``config`` itself, or (``include_gold_languages``) a copy whose languages add every gold training language."""
    if not config.include_gold_languages or not config.gold:
        return config
    found = sorted({f.lang for f in training_files(config.gold, None, None, config.exclude_sources)})
    extra = [lang for lang in found if lang not in config.languages]
    if extra:
        logger.info("adding the gold training languages %s to the %d requested", ", ".join(extra), len(config.languages))
    return replace(config, languages=list(config.languages) + extra)


def student_words(transfer: list[TransferSentence], student_tokenizer) -> list[list[str]]:
    """The transfer sentences' words as the student's tagger reads them: runs of scripts without spaces re-cut
    where the student's pieces end (the transfer set was cut with the teacher's, before the vocabulary existed)."""
    split_run = tokenizer_run_splitter(student_tokenizer)
    return [recut_words(sentence.words, split_run).words for sentence in transfer]


class Distiller:
    """One distillation run; ``run()`` does or resumes every step and returns the output directory."""

    def __init__(self, config: DistillConfig) -> None:
        self.config = config = with_gold_languages(config)
        teacher = locate_model(config.teacher)  # a directory or a name; checked before anything is written
        self.out = Path(config.out)
        self.work = self.out / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self._clock = (0.0, time.time())  # (minutes of earlier sessions, this session's start): set by run()
        torch.set_num_threads(config.threads)
        seed_everything(config.seed)
        self.parallel = init_distributed()  # torchrun: data-parallel stages, rank 0 prepares data and writes files
        self.teacher, self.teacher_tokenizer = load_token_classifier(teacher)
        self.unspaced_runs = config_unspaced_runs(self.teacher.config, teacher)  # the student reads runs the same way
        self.stages = plan_stages(config)

    # --- data -------------------------------------------------------------------------------
    def transfer_set(self) -> list[TransferSentence]:
        """Build (or reload) the transfer sentences."""
        path = self.work / "transfer.jsonl"
        recipe = json.dumps({k: v for k, v in self.config.to_dict().items() if k in (
            "languages", "unlabeled", "gold", "exclude_sources", "unlabeled_per_language",
            "gold_text_per_language", "augmented_per_language", "use_augmented", "seed", "silver",
            "silver_text_per_language")} | self._text_scale_setting(), sort_keys=True)
        recipe_path = self.work / "transfer.recipe.json"
        if path.exists() and recipe_path.exists() and recipe_path.read_text() == recipe:
            return [TransferSentence(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]
        tagger = Tagger(self.teacher, self.teacher_tokenizer)
        sentences = build_transfer_set(
            self.config.languages, self.config.unlabeled, self.config.gold, self.config.unlabeled_per_language,
            self.config.gold_text_per_language,
            self.config.augmented_per_language if self.config.use_augmented else 0, tagger.tag_words,
            self.config.exclude_sources, self.config.seed, tokenizer_run_splitter(self.teacher_tokenizer),
            self.config.silver, self.config.silver_text_per_language, self.config.language_text_scale)
        with path.open("w", encoding="utf-8") as handle:
            for sentence in sentences:
                handle.write(json.dumps(asdict(sentence), ensure_ascii=False) + "\n")
        recipe_path.write_text(recipe)
        return sentences

    def _text_scale_setting(self) -> dict:
        """``language_text_scale`` for the transfer recipe, only when set (so that the transfer sets of runs made
        before it existed are still theirs and are not built again)."""
        scale = self.config.language_text_scale
        return {"language_text_scale": dict(sorted(scale.items()))} if scale else {}

    def gold_files(self, split: str):
        if not self.config.gold:
            return []
        return discover_gold(self.config.gold, self.config.languages, [split], self.config.exclude_sources)

    def vocabulary_counts(self, transfer: list[TransferSentence]) -> dict[str, collections.Counter]:
        """Teacher piece counts per language over all the text at hand: every line of the unlabeled files, the gold
        and silver sentences the run may train on (gold dev included), and the transfer set's augmented sentences
        (its other sentences are samples of those files, counted once with them)."""
        words: dict[str, list[list[str]]] = collections.defaultdict(list)
        for sentence in transfer:
            if sentence.origin == "augmented":
                words[sentence.lang].append(sentence.words)
        split_run = tokenizer_run_splitter(self.teacher_tokenizer)
        for lang, paths in unlabeled_files(self.config.unlabeled, self.config.languages).items():
            for line in usable_lines(paths, lang):  # every line, counted in any order
                if found := to_words(line, split_run):
                    words[lang].append(found)
        if self.config.gold:
            files = training_files(self.config.gold, self.config.silver, self.config.languages,
                                   self.config.exclude_sources) + self.gold_files("dev")
            for sentence in read_gold(sorted(set(files), key=lambda f: str(f.path))):
                words[sentence.lang].append(recut_words(sentence.words, split_run).words)  # as the student reads them
        return {lang: self.piece_counts(lists) for lang, lists in sorted(words.items())}

    def piece_counts(self, word_lists: list[list[str]]) -> collections.Counter:
        """Teacher piece counts of pre-split sentences read as the student will read them (runs of scripts without
        spaces whole when it reads them as text), bare forms of unspaced pieces included (see count_bare_forms)."""
        from polyner.distill.vocab import count_bare_forms, count_pieces

        units = [joined_runs(words, self.unspaced_runs) for words in word_lists]
        return count_bare_forms(self.teacher_tokenizer, count_pieces(self.teacher_tokenizer, word_lists=units))

    def vocabulary(self, transfer: list[TransferSentence]):
        """Trim the teacher tokenizer to the pieces of the transfer, gold train and dev text."""
        from polyner.distill.vocab import trim_tokenizer

        folder = self.work / "vocab"
        if (folder / "keep_ids.npy").exists():
            from polyner.models.io import load_tokenizer

            keep = np.load(folder / "keep_ids.npy")
            student_tokenizer = load_tokenizer(folder)
            check_tokenizers(self.teacher_tokenizer, student_tokenizer, keep)
            return student_tokenizer, keep
        keep = self.choose_pieces(*self.piece_ranking(transfer))
        student_tokenizer, _ = trim_tokenizer(self.teacher_tokenizer, keep.tolist(), folder)
        np.save(folder / "keep_ids.npy", keep)
        check_tokenizers(self.teacher_tokenizer, student_tokenizer, keep)
        logger.info("vocabulary trimmed to %d of %d pieces", len(keep), len(self.teacher_tokenizer))
        return student_tokenizer, keep

    def piece_ranking(self, transfer: list[TransferSentence]) -> tuple[collections.Counter, dict[int, float] | None]:
        """(teacher piece counts, ranking or None for plain counts) the vocabulary is chosen from (see
        ``vocab_balance_alpha``)."""
        from polyner.distill.vocab import language_balanced_ranking

        if self.config.vocab_balance_alpha is None:
            words = [s.words for s in transfer]
            for split in ("train", "dev"):
                words += [s.words for s in read_gold(self.gold_files(split))]
            return self.piece_counts(words), None
        by_language = self.vocabulary_counts(transfer)
        counts: collections.Counter = collections.Counter()
        for language_counts in by_language.values():
            counts.update(language_counts)
        return counts, language_balanced_ranking(by_language, self.config.vocab_balance_alpha)

    def choose_pieces(self, counts: collections.Counter, ranking: dict[int, float] | None,
                      max_size: int | None = None) -> np.ndarray:
        """Teacher ids the student keeps (ascending): the recipe's rules, at most ``max_size`` (default
        ``max_vocab``) pieces."""
        from polyner.distill.vocab import select_vocabulary

        return np.asarray(select_vocabulary(self.teacher_tokenizer, counts, min_count=self.config.min_piece_count,
                                            max_size=max_size or self.config.max_vocab,
                                            keep_single_chars=self.config.keep_all_single_chars, ranking=ranking,
                                            drop_particle_pieces=self.config.drop_particle_pieces),
                          dtype=np.int64)

    # --- model ------------------------------------------------------------------------------
    def teacher_state_indices(self) -> list[int]:
        """Which teacher hidden states stage 1 matches, bottom to top (see ``representation_targets``)."""
        teacher_layers = self.teacher.config.num_hidden_layers
        student_layers = self.config.student.layers
        if self.config.representation_targets == "aligned":
            return [0] + [p + 1 for p in teacher_layer_picks(teacher_layers, student_layers)]
        return list(range(teacher_layers - student_layers, teacher_layers + 1))

    def ffn_ranking(self, cache, keep: np.ndarray) -> dict[int, np.ndarray] | None:
        """Teacher FFN neurons ranked on a sample of the transfer set, when the student's FFN is narrower."""
        teacher_ffn = getattr(self.teacher.config, "intermediate_size", None)
        if not self.config.init_layers_from_teacher or teacher_ffn is None or self.config.student.ffn >= teacher_ffn:
            return None
        rng = np.random.default_rng(self.config.seed)
        sample = rng.permutation(len(cache))[: self.config.ffn_ranking_sentences]
        batches = []
        for i in range(0, len(sample), self.config.batch_size):
            batch = cache.batch([int(j) for j in sample[i:i + self.config.batch_size]], self.teacher.config.pad_token_id,
                                with_hidden=False)
            ids = torch.from_numpy(keep[batch["input_ids"].numpy()].astype(np.int64))
            ids[batch["attention_mask"] == 0] = self.teacher.config.pad_token_id
            batches.append({"input_ids": ids, "attention_mask": batch["attention_mask"]})
        picks = teacher_layer_picks(self.teacher.config.num_hidden_layers, self.config.student.layers)
        logger.info("ranking the teacher's %d FFN neurons per layer on %d sentences (the student keeps %d)",
                    teacher_ffn, len(sample), self.config.student.ffn)
        return rank_ffn_neurons(self.teacher, batches, picks)

    def student_skeleton(self, keep: np.ndarray) -> PolynerStudentForTokenClassification:
        """The run's student over the ``keep`` pieces, weights as initialised by the model class."""
        config = student_config(self.config.student, len(keep), self.teacher.config, max_length=512)
        config.ner_max_length = self.config.max_length  # the window the Tagger reads this student in
        config.ner_unspaced_runs = self.unspaced_runs  # how it reads runs of Han, kana, Thai (as its teacher)
        return PolynerStudentForTokenClassification(config)

    def build_student(self, keep: np.ndarray, ffn_ranking: dict[int, np.ndarray] | None = None
                      ) -> PolynerStudentForTokenClassification:
        """A student from the preset, with factorized embeddings and teacher layers where widths match."""
        from polyner.distill.vocab import factorize_embeddings

        preset = self.config.student
        torch.manual_seed(self.config.seed)
        student = self.student_skeleton(keep)
        state = self.teacher.state_dict()
        prefix = self.teacher.base_model_prefix + "."
        if self.config.factorize_embeddings:
            teacher_words = self.teacher.get_input_embeddings().weight.detach().float().numpy()
            factors = factorize_embeddings(teacher_words, keep.tolist(), preset.word_width)
            coordinates, components, mean = factors[0], factors[1], factors[2]
            position = state[prefix + "embeddings.position_embeddings.weight"].float().numpy()
            type_key = prefix + "embeddings.token_type_embeddings.weight"
            if type_key in state:
                position = position + state[type_key][0].float().numpy()
            init_embeddings(student, coordinates, components, mean, position, self.config.seed)
        if self.config.init_layers_from_teacher:
            picks = copy_teacher_layers(student, state, prefix, ffn_ranking)
            if picks:
                logger.info("student layers initialised from teacher layers %s", picks)
            if copy_teacher_classifier(student, state, self.teacher.config.id2label):
                logger.info("student classifier initialised from the teacher's")
        logger.info("student: %s parameters (teacher %s)", f"{count_parameters(student):,}",
                    f"{count_parameters(self.teacher):,}")
        return student

    # --- training ---------------------------------------------------------------------------
    def run_identity(self) -> dict:
        """The settings a stage checkpoint must share to be resumed (budgets and the rhythm may change)."""
        config = self.config
        data = ("unlabeled", "gold", "silver", "exclude_sources", "include_gold_languages", "unlabeled_per_language",
                "gold_text_per_language", "silver_text_per_language", "augmented_per_language", "max_vocab",
                "min_piece_count", "keep_all_single_chars", "vocab_balance_alpha", "drop_particle_pieces",
                "language_text_scale")  # what the transfer set and vocabulary are made of
        return run_identity({"teacher": config.teacher, "languages": list(config.languages), "preset": config.preset,
                             "geometry": config.geometry, "batch_size": config.batch_size,
                             "max_length": config.max_length, "seed": config.seed,
                             "gold_logit_weight": config.gold_logit_weight,  # what the gold stages learn from
                             "silver_labels": config.silver_labels, "lowercase_share": config.lowercase_share,
                             "bucket": config.bucket,  # which sentences make each batch
                             **{key: getattr(config, key) for key in data}},
                            paths=("teacher", "unlabeled", "gold", "silver"))

    def checkpoint_plan(self, scope: dict | None = None) -> CheckpointPlan:
        """Where the stages checkpoint, with the run's identity; settings added to it later are compared, in
        checkpoints written before them, at the value those runs had."""
        return CheckpointPlan(self.work / "checkpoint", self.run_identity(), scope=scope or {},
                              defaults={"language_text_scale": {}, "gold_logit_weight": 0.0, "silver_labels": "all",
                                        "lowercase_share": 0.0, "bucket": 1})

    def dev_f1(self, model: DistillationModel, tokenizer, dev) -> tuple[float, dict[str, float]]:
        """The student's macro F1 on the selection dev, and its F1 per language (as ``train-teacher`` records)."""
        student = self.parallel.for_inference(model.student)
        scores = evaluate_by_language(Tagger(student, tokenizer, name="student").tag_words, dev)
        model.train()
        return macro(scores).f1, {lang: round(score.f1, 2) for lang, score in scores.items()}

    @torch.no_grad()
    def heldout_loss(self, model: DistillationModel, cache, heldout: list[int], stage: Stage, pad: int) -> float:
        """The stage's loss per position over the held-out transfer sentences, in batches of similar length."""
        model.eval()
        ordered = sorted(heldout, key=lambda i: cache.span(i)[1] - cache.span(i)[0])
        total, n = 0.0, 0
        for i in range(0, len(ordered), self.config.batch_size):
            batch = self.parallel.to_device(cache.batch(ordered[i:i + self.config.batch_size], pad, with_hidden=True))
            positions = int(batch["attention_mask"].sum())
            total += LOSSES[stage.loss](model, batch).item() * positions
            n += positions
        model.train()
        return total / max(n, 1)

    def run(self) -> Path:
        """Do (or resume) the whole run; return the directory of the selected student."""
        config, parallel = self.config, self.parallel
        read_state(self.checkpoint_plan())  # refuse another run's, early
        if parallel.is_main:
            (self.out / "distill_config.json").write_text(json.dumps(config.to_dict(), indent=2))
        with parallel.main_first():  # rank 0 builds transfer set and vocabulary; the others load them
            transfer = self.transfer_set()
            student_tokenizer, keep = self.vocabulary(transfer)
        state_path = self.work / "state.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {
            "stage": 0, "best_f1": -1.0, "history": []}
        best_path = self.work / "best.safetensors"
        if state["stage"] < len(self.stages):
            student = self.train(transfer, student_tokenizer, keep, state, best_path).student
            if not parallel.is_main:
                return self.out
            self.write_state(state)
        elif not parallel.is_main:
            return self.out
        elif not best_path.exists():
            raise FileNotFoundError(f"{best_path} is missing: the run's stages are done but its selected student is "
                                    "gone; start the run again in a new --out folder")
        else:  # a finished run only saves its student again (no teacher outputs, no training)
            student = self.student_skeleton(keep)
        student.load_state_dict({name[len("student."):]: value for name, value in load_file(str(best_path)).items()
                                 if name.startswith("student.")})
        self.save_student(student, student_tokenizer, keep, state, len(transfer))
        return self.out

    def train(self, transfer: list[TransferSentence], student_tokenizer, keep: np.ndarray, state: dict,
              best_path: Path) -> DistillationModel:
        """Cache the teacher's outputs and run (or resume) the stages; the model as the last stage left it."""
        config, parallel = self.config, self.parallel
        with parallel.main_first():  # rank 0 builds the teacher cache; the others load it
            pad = student_tokenizer.pad_token_id
            bos, eos = special_ids(student_tokenizer)
            ids = [np.asarray(model_input(per_word, bos, eos, config.max_length - 2)[0], dtype=np.int32)
                   for per_word in word_pieces(student_tokenizer, student_words(transfer, student_tokenizer),
                                               self.unspaced_runs)]
            cache = build_teacher_cache(self.work / "teacher_cache", self.teacher, config.teacher, ids, keep,
                                        [s.lang for s in transfer], config.student.layers + 1, pad,
                                        store_hidden=config.use_representation_stage,
                                        reuse_from=config.reuse_teacher_cache,
                                        state_indices=self.teacher_state_indices())
        rng = np.random.default_rng(config.seed)
        order = rng.permutation(len(cache))
        n_heldout = max(1, int(len(order) * config.heldout_fraction))
        heldout, train_idx = sorted(order[:n_heldout].tolist()), order[n_heldout:]
        transfer_sampler = MixedLanguageSampler([cache.langs[i] for i in train_idx], seed=config.seed,
                                                lengths=np.diff(cache.offsets)[train_idx], bucket=config.bucket)
        label_files = (training_files(config.gold, config.silver, config.languages, config.exclude_sources)
                       if config.gold else [])
        if config.silver_labels == "no-gold":
            label_files = silver_only_without_gold(label_files)
        with parallel.main_first():
            gold, gold_groups = (encode_training_files(student_tokenizer, label_files, config.max_length,
                                                       unspaced_runs=self.unspaced_runs,
                                                       lowercase_share=config.lowercase_share, seed=config.seed)
                                 if label_files else (None, []))
        dev = selection_sentences(selection_files(config.gold, config.languages, config.exclude_sources, label_files)
                                  if config.gold else [], config.dev_per_language)
        if not dev:
            raise ValueError("distillation needs gold dev data (--gold) to choose checkpoints; none found for "
                             f"languages {', '.join(config.languages)}")

        ranking = self.ffn_ranking(cache, keep)
        model = DistillationModel(self.build_student(keep, ranking), self.teacher.config.hidden_size).to(parallel.device)
        model.train()
        self._clock = (state.get("minutes", 0.0), time.time())  # training minutes over every session of the run
        if state["stage"] > 0:  # weights after the last finished stage; inside a stage run_stage resumes its checkpoint
            model.load_state_dict(load_file(str(self.work / "current.safetensors")))
        for index in range(state["stage"], len(self.stages)):
            stage = self.stages[index]
            if stage.loss == "gold" and gold is None:
                logger.warning("no gold training data: skipping %s", stage.name)
                continue
            if index > 0 and best_path.exists() and stage.loss != "representation":
                model.load_state_dict(load_file(str(best_path)))  # continue from the best so far
            self.run_stage(index, stage, model, cache, train_idx, heldout, transfer_sampler, gold, dev, pad,
                           student_tokenizer, state, best_path, gold_groups, label_files)
            state["stage"] = index + 1
            if parallel.is_main:
                save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                          str(self.work / "current.safetensors"))
                self.write_state(state)
            parallel.barrier()
        return model

    def save_student(self, student: PolynerStudentForTokenClassification, student_tokenizer, keep: np.ndarray,
                     state: dict, transfer_sentences: int) -> None:
        """Write the selected student in HF layout (its vocabulary completed with the teacher's Han/kana pieces
        when the recipe says so), its teacher ids and its training log."""
        from polyner.distill.vocab import trim_tokenizer
        from polyner.distill.vocab_completion import complete_student

        completion = (complete_student(student, self.teacher, self.teacher_tokenizer, keep,
                                       self.config.drop_particle_pieces)
                      if self.config.complete_han_kana and self.config.factorize_embeddings else None)
        student.save_pretrained(self.out, safe_serialization=True)
        if completion is None:
            student_tokenizer.save_pretrained(self.out)
        else:
            keep = completion.keep_ids
            student_tokenizer, _ = trim_tokenizer(self.teacher_tokenizer, keep.tolist(), self.out)
            check_tokenizers(self.teacher_tokenizer, student_tokenizer, keep)
        np.save(self.out / "keep_ids.npy", keep)
        (self.out / "training_log.json").write_text(json.dumps(
            {"history": state["history"], "best_dev_f1": state["best_f1"], "minutes": state.get("minutes", 0.0),
             "student_parameters": count_parameters(student), "teacher_parameters": count_parameters(self.teacher),
             "transfer_sentences": transfer_sentences, "vocabulary": int(len(keep)),
             **({"vocabulary_completion": completion.summary()} if completion else {})}, indent=2))
        logger.info("selected student (dev macro F1 %.2f) saved to %s", state["best_f1"], self.out)

    def run_stage(self, index: int, stage: Stage, model: DistillationModel, cache, train_idx, heldout, sampler,
                  gold, dev, pad: int, tokenizer, state: dict, best_path: Path, gold_groups: list[str] = (),
                  label_files: list = ()) -> None:
        """Train one stage with early stopping; representation on held-out MSE, the others on dev F1."""
        config, budget, parallel = self.config, stage.budget, self.parallel
        params = model.set_trainable(stage.trainable)
        optimizer = torch.optim.AdamW(params, lr=budget.lr, weight_decay=0.01)
        scheduler = linear_schedule(optimizer, budget.steps, budget.steps // 20)
        stage_best_path = self.work / "stage_best.safetensors"
        gold_sampler = (MixedLanguageSampler(gold_groups, seed=config.seed,
                                             weights=group_weights(label_files, config.silver_weight),
                                             lengths=np.diff(gold.offsets), bucket=config.bucket)
                        if gold is not None else None)
        representation = stage.loss == "representation"

        def transfer_batch(step: int) -> dict[str, torch.Tensor]:
            picks = [int(train_idx[i]) for i in parallel.shard(sampler.batch(step + 1000 * index, config.batch_size))]
            return cache.batch(picks, pad, with_hidden=representation)

        def batch(step: int) -> dict[str, torch.Tensor]:  # each rank trains on its slice of the global batch
            if stage.loss != "gold":
                return transfer_batch(step)
            labelled = collate(gold, parallel.shard(gold_sampler.batch(step + 1000 * index, config.batch_size)), pad)
            if anchored(stage, config):  # the anchor: a transfer batch with the teacher's logits
                labelled.update((ANCHOR + key, value) for key, value in transfer_batch(step).items())
            return labelled

        def evaluate(progress: Progress) -> Evaluation:
            if representation:
                mse = self.heldout_loss(model, cache, heldout, stage, pad)
                score, metric = -mse, {"heldout_mse": mse}
            else:
                score, by_language = self.dev_f1(model, tokenizer, dev)
                metric = {"dev_f1": score}
            entry = {"stage": stage.name, "step": progress.step, "train_loss": progress.loss, **metric}
            if not representation:
                entry["dev_f1_by_language"] = by_language
            state["history"].append(entry)  # the run's history (rank 0 writes it)
            return Evaluation(score, entry, ", ".join(f"{k} {v:.4f}" for k, v in metric.items()))

        def keep_best(evaluation: Evaluation) -> None:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(stage_best_path))
            if not representation and evaluation.score > state["best_f1"]:
                state["best_f1"] = evaluation.score
                state["best_stage"] = stage.name
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(best_path))

        settings = LoopSettings(max_steps=budget.steps, eval_every=budget.eval_every, patience=budget.patience,
                                bf16=self.config.bf16, description=f"stage {stage.name}", log_prefix=stage.name,
                                logger=__name__)
        step = Step(batch, stage_loss(stage, config, parallel.scale_loss), lambda b: loss_terms(stage, config, b))
        train_loop(settings, model, optimizer, scheduler, step, evaluate,
                   on_best=keep_best, parallel=parallel, on_save=lambda _: self.write_state(state),
                   checkpoint=self.checkpoint_plan(scope={"stage": index}))
        parallel.barrier()
        model.load_state_dict(load_file(str(stage_best_path)))
        if representation and parallel.is_main:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(best_path))

    def write_state(self, state: dict) -> None:
        """Write the run's state (stages done, best dev F1, history, training minutes so far) next to the stage
        checkpoint."""
        before, started = self._clock
        state["minutes"] = before + (time.time() - started) / 60
        (self.work / "state.json").write_text(json.dumps(state, indent=2))


def distill(config: DistillConfig) -> Path:
    """Run (or resume) a distillation and return the student's directory."""
    return Distiller(config).run()
