"""Inference benchmark: teacher, an xlm-roberta-base-sized encoder and the student (torch fp32, ONNX fp32,
ONNX int8) side by side, each in a fresh process, on the same gold test texts; prints the report (and writes it
with ``--write docs/benchmarks.md``).

The same as ``polyner bench`` (all its options apply)::

    python benchmarks/inference.py --teacher runs/teacher-ner --gold ../shared/data/gold --write docs/benchmarks.md
    python benchmarks/inference.py --teacher runs/teacher-ner --gold ../shared/data/gold --model runs/student \\
        --threads 2 --max-sentences 200 --speed-sentences 256
"""
from __future__ import annotations

import sys

from polyner.cli import app

if __name__ == "__main__":
    sys.argv = ["polyner bench", "bench", *sys.argv[1:]]
    app(sys.argv[1:], prog_name="polyner")
