"""Hugging Face interop of a student directory: ``auto_map`` and the code file it names (no torch imported here).

A student directory (``model_type: polyner_student``) carries ``polyner_student.py``, three lines importing
the student classes from the installed polyner, and ``auto_map`` in config.json pointing at it, so

    AutoModelForTokenClassification.from_pretrained(DIR, trust_remote_code=True)
    pipeline("token-classification", model=DIR, trust_remote_code=True, aggregation_strategy="simple")

work wherever polyner is installed, without importing it first. After ``import polyner.models.student`` the
model type is registered with the Auto classes and ``trust_remote_code`` is not needed.
"""
from __future__ import annotations

import json
from pathlib import Path

CODE_FILE = "polyner_student.py"
AUTO_MAP = {
    "AutoConfig": "polyner_student.PolynerStudentConfig",
    "AutoModel": "polyner_student.PolynerStudentModel",
    "AutoModelForTokenClassification": "polyner_student.PolynerStudentForTokenClassification",
}
CODE = '''"""The polyner student for transformers' Auto classes (auto_map in config.json): the installed polyner's classes."""
from polyner.models.student import (  # noqa: F401  (pip install polyner)
    PolynerStudentConfig, PolynerStudentForTokenClassification, PolynerStudentModel)
'''


def add_auto_map(folder: str | Path) -> None:
    """Write ``polyner_student.py`` into a student directory and ``auto_map`` into its config.json."""
    folder = Path(folder)
    (folder / CODE_FILE).write_text(CODE, encoding="utf-8")
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("auto_map") != AUTO_MAP:
        config["auto_map"] = dict(AUTO_MAP)
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
