"""One student definition: the geometry's defaults are written once, and the transformers classes, the plain-torch
runtime and the encoder alone are the same module tree (same weight names, bit-identical outputs)."""
from __future__ import annotations

import inspect
import json
from dataclasses import fields, replace

import pytest
import torch

from polyner.models.io import ner_config_kwargs
from polyner.models.plain import read_config
from polyner.models.student import PolynerStudentConfig, PolynerStudentForTokenClassification, PolynerStudentModel
from polyner.models.student_geometry import CONFIG_KEYS, StudentGeometry
from polyner.models.student_layers import group_parameters
from polyner.models.student_runtime import load_student_runtime

GEOMETRIES = {  # factorized with the NER labels; unfactorized with three labels and another pad id
    "factorized": StudentGeometry(layers=2, hidden=32, heads=2, ffn=64, rank=16, vocab=90, max_positions=40),
    "unfactorized": StudentGeometry(layers=1, hidden=24, heads=3, ffn=48, rank=0, vocab=70, max_positions=20,
                                    labels=3, pad_id=0, layer_norm_eps=1e-5),
}


def test_the_transformers_config_takes_every_default_from_the_geometry():
    """No size is a parameter of the config class (where a second default could be written): a bare config is the
    default geometry, and a geometry goes through the config unchanged."""
    assert not set(inspect.signature(PolynerStudentConfig.__init__).parameters) & set(CONFIG_KEYS.values())
    assert PolynerStudentConfig().geometry == StudentGeometry()
    assert set(CONFIG_KEYS) == {f.name for f in fields(StudentGeometry)}
    for geometry in GEOMETRIES.values():
        assert PolynerStudentConfig.from_geometry(geometry).geometry == geometry


def test_a_config_json_without_optional_sizes_reads_the_same_in_both_paths(tmp_path):
    """The runtime filled absent keys with its own defaults (embedding_rank 0 where transformers said 128)."""
    data = PolynerStudentConfig(vocab_size=90, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, **ner_config_kwargs()).to_dict()
    for optional in ("embedding_rank", "max_position_embeddings", "layer_norm_eps", "pad_token_id",
                     "hidden_dropout_prob", "attention_probs_dropout_prob"):
        del data[optional]
    (tmp_path / "config.json").write_text(json.dumps(data))
    plain = StudentGeometry.from_config(read_config(tmp_path))
    assert plain == PolynerStudentConfig.from_dict(data).geometry == StudentGeometry.from_config(data)
    assert plain == replace(StudentGeometry(), vocab=90, hidden=128, layers=2, heads=2, ffn=64)


def test_sizes_that_do_not_fit_together_are_refused():
    with pytest.raises(ValueError, match="not a multiple of the number of heads"):
        StudentGeometry(hidden=30, heads=4)
    with pytest.raises(ValueError, match="embedding rank 64"):
        PolynerStudentConfig(hidden_size=32, num_attention_heads=2, embedding_rank=64)


def _batch(geometry: StudentGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, geometry.vocab, (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    return ids, mask


@pytest.mark.parametrize("name", GEOMETRIES)
def test_a_student_saved_by_transformers_runs_in_the_plain_runtime_bit_for_bit(name, tokenizer, tmp_path):
    geometry = GEOMETRIES[name]
    torch.manual_seed(0)
    labels = {"id2label": {i: f"L{i}" for i in range(geometry.labels)}}
    model = PolynerStudentForTokenClassification(PolynerStudentConfig.from_geometry(geometry, **labels)).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    runtime, _ = load_student_runtime(tmp_path)
    assert runtime.geometry == geometry and runtime.config.id2label == labels["id2label"]
    assert list(runtime.state_dict()) == list(model.state_dict())  # the same tree: names, and their order
    assert [type(m) for m in runtime.modules()][1:] == [type(m) for m in model.modules()][1:]
    ids, mask = _batch(geometry)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        assert torch.equal(runtime(input_ids=ids, attention_mask=mask).logits, expected.logits)
        encoder = PolynerStudentModel.from_pretrained(str(tmp_path)).eval()  # AutoModel: the encoder alone
        states = encoder(ids, mask, output_hidden_states=True).hidden_states
    assert len(states) == geometry.layers + 1
    assert all(torch.equal(a, b) for a, b in zip(states, expected.hidden_states))


def test_the_parameter_groups_cover_the_tree_top_down():
    model = PolynerStudentForTokenClassification(PolynerStudentConfig.from_geometry(GEOMETRIES["factorized"]))
    groups = group_parameters(model)
    assert list(groups) == ["embeddings", "layer0", "layer1", "classifier"]
    assert [id(p) for params in groups.values() for p in params] == [id(p) for p in model.parameters()]
