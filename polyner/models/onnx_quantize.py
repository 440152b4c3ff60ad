"""int8 quantization of an exported ONNX token classifier, with activation scales per token or per call.

Weights are int8 (onnxruntime's ``quantize_dynamic``: one scale per output channel by default), and the inputs of
each weight matrix are quantized on the fly. onnxruntime picks one scale for the whole input tensor of a call
(``"per-batch"``), so a sentence's logits depend on the other sentences and the padding in its batch: the same text
can get other entities when tagged alone. ``"per-token"`` (the default) rewrites the graph so that each token's
vector gets its own symmetric scale (its largest absolute value maps to 127): a token's result no longer depends on
anything but its own sentence, and the logits are closer to fp32 (outlier tokens no longer coarsen the others).
It costs a few elementwise passes per matrix (the fused kernel takes a single input scale; the row scale is applied
to its output): measure with ``polyner bench``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)
ACTIVATION_SCALES = ("per-token", "per-batch")
MS_DOMAIN = "com.microsoft"
#: Initializers the per-token rewrite adds (shared by every quantized input).
_ZERO_POINT, _UNIT, _QMAX, _FLOOR, _LAST_AXIS = ("per_token_zero_point", "per_token_unit", "per_token_qmax",
                                                 "per_token_floor", "per_token_last_axis")


def quantize_int8(source: Path, target: Path, per_channel: bool, embeddings: bool,
                  activations: str = "per-token") -> None:
    """Write the int8 model of the fp32 graph ``source`` to ``target`` (see the module docstring)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if activations not in ACTIVATION_SCALES:
        raise ValueError(f"unknown activation scales {activations!r}: expected one of {ACTIVATION_SCALES}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantizer logs every tensor it skips on the root logger
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=["MatMul", "Gather"] if embeddings else ["MatMul"])
    finally:
        root.setLevel(level)
    if activations == "per-token":
        import onnx

        model = onnx.load(str(target))
        rewritten = per_token_activations(model)
        onnx.save(model, str(target))
        logger.info("int8 activations: %d inputs quantized per token", rewritten)


def per_token_activations(model) -> int:
    """Rewrite every ``DynamicQuantizeLinear`` of a ``quantize_dynamic`` graph into per-token symmetric quantization
    (in place); return how many. Each quantized matrix product becomes ``MatMulIntegerToFloat`` (input scale 1,
    per-channel weight scales) followed by a product with the token scales; the bias ``Add`` after it stays.

    The row scales are applied after the integer product, not left in the ``MatMulInteger -> Cast -> Mul`` pattern:
    onnxruntime fuses that pattern into ``MatMulIntegerToFloat``, whose kernel takes one input scale, and the fused
    graph's logits were wrong (onnxruntime 1.32: argmax agreement with fp32 0.965, against 0.998 for this graph).

    Raises ValueError when a scale is used other than as ``quantize_dynamic`` writes it (then the graph is unchanged).
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    replacements: dict[int, list] = {}  # id(old node) -> its new nodes ([] removes it)
    quantizers: set[int] = set()
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            continue
        source, (quantized, scale, _) = node.input[0], node.output
        prefix = node.name or quantized
        for scales_mul in consumers.get(scale, []):  # Mul(scale, weight scale) -> Mul(Cast(MatMulInteger), .)
            product = _only(consumers.get(scales_mul.output[0], []), "Mul", scale)
            casted = _other_input(product, scales_mul.output[0])
            cast = producer.get(casted)
            matmul = producer.get(cast.input[0]) if cast is not None and cast.op_type == "Cast" else None
            if scales_mul.op_type != "Mul" or matmul is None or matmul.op_type != "MatMulInteger" or \
                    len(consumers.get(casted, [])) != 1 or len(consumers.get(matmul.output[0], [])) != 1:
                raise ValueError(f"the scale {scale!r} is not used as quantize_dynamic writes it")
            weight_scale = _other_input(scales_mul, scale)
            a, weight, _, weight_zero = (list(matmul.input) + [""] * 4)[:4]
            unscaled = product.output[0] + "_per_token"
            replacements[id(scales_mul)] = replacements[id(cast)] = replacements[id(matmul)] = []
            replacements[id(product)] = [
                helper.make_node("MatMulIntegerToFloat", [a, weight, _UNIT, weight_scale, _ZERO_POINT, weight_zero],
                                 [unscaled], name=product.name + "_integer", domain=MS_DOMAIN),
                helper.make_node("Mul", [unscaled, scale], [product.output[0]], name=product.name + "_rows")]
        if any(id(consumer) not in replacements for consumer in consumers.get(quantized, [])):
            raise ValueError(f"{quantized!r} feeds something other than a rewritten MatMulInteger")
        quantizers.add(id(node))
        reduce_axes = {"axes": [-1]} if opset < 18 else {}
        reduce_inputs = [] if opset < 18 else [_LAST_AXIS]
        replacements[id(node)] = [
            helper.make_node("ReduceMax", [source, *reduce_inputs], [prefix + "_max"], name=prefix + "_max",
                             keepdims=1, **reduce_axes),
            helper.make_node("ReduceMin", [source, *reduce_inputs], [prefix + "_min"], name=prefix + "_min",
                             keepdims=1, **reduce_axes),
            helper.make_node("Neg", [prefix + "_min"], [prefix + "_neg_min"], name=prefix + "_neg_min"),
            helper.make_node("Max", [prefix + "_max", prefix + "_neg_min", _FLOOR], [prefix + "_range"],
                             name=prefix + "_range"),
            helper.make_node("Div", [prefix + "_range", _QMAX], [scale], name=prefix + "_scale"),
            helper.make_node("Div", [_QMAX, prefix + "_range"], [prefix + "_inverse"], name=prefix + "_inverse"),
            helper.make_node("Mul", [source, prefix + "_inverse"], [prefix + "_scaled"], name=prefix + "_scaled"),
            helper.make_node("QuantizeLinear", [prefix + "_scaled", _UNIT, _ZERO_POINT], [quantized],
                             name=prefix + "_quantize")]
    if not replacements:
        return 0
    nodes = []
    for node in graph.node:
        nodes.extend(replacements.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend([
        numpy_helper.from_array(np.array(128, dtype=np.uint8), _ZERO_POINT),  # symmetric: uint8 with zero at 128
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), _UNIT),
        numpy_helper.from_array(np.array(127.0, dtype=np.float32), _QMAX),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), _FLOOR)])  # an all-zero vector stays zero
    if opset >= 18:
        graph.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), _LAST_AXIS))
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(quantizers)


def _only(nodes: list, op_type: str, what: str):
    if len(nodes) != 1 or nodes[0].op_type != op_type:
        raise ValueError(f"the scale {what!r} is not used as quantize_dynamic writes it")
    return nodes[0]


def _other_input(node, name: str) -> str:
    """The input of a two-input node that is not ``name``."""
    first, second = node.input
    return second if first == name else first
