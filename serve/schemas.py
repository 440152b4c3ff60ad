"""Request and response models of the HTTP API (pydantic), with the examples shown at /docs."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Label = Literal["PER", "ORG", "LOC"]


class NERRequest(BaseModel):
    """Texts to tag, with an optional language and an optional label filter."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"texts": ["Angela Merkel besuchte Paris.", "Владимир Путин прилетел в Москву."]},
        {"texts": ["Lionel Messi jugó en Barcelona."], "language": "es", "labels": ["PER"]},
    ]})

    texts: list[str] = Field(..., description="Texts to tag (limits: see /v1/model).")
    language: Optional[str] = Field(None, description="ISO 639-1 code; detected per text when absent.")
    labels: Optional[list[Label]] = Field(None, description="Keep only these entity types.")


class Entity(BaseModel):
    """One entity; ``text[start:end]`` of the request text equals ``text``."""

    text: str
    label: Label
    start: int
    end: int
    score: float


class TextResult(BaseModel):
    """The entities of one request text and its language."""

    entities: list[Entity]
    language: Optional[str] = Field(None, description="Given in the request, else detected; null without letters "
                                    "or too short to tell (under 30 letters of Latin or Cyrillic).")


class NERResponse(BaseModel):
    """Per text, in request order."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "polyner-default", "results": [
            {"language": None, "entities": [  # under 30 letters: too short to tell
                {"text": "Angela Merkel", "label": "PER", "start": 0, "end": 13, "score": 0.98},
                {"text": "Paris", "label": "LOC", "start": 23, "end": 28, "score": 0.97}]}]}]})

    model: str
    results: list[TextResult]


class ModelInfo(BaseModel):
    """What the service runs and the limits it enforces."""

    name: str
    version: str
    languages: list[str]
    labels: list[str]
    parameters: int
    size_bytes: int
    backend: str = "torch"  # torch, onnx or onnx-int8
    limits: dict[str, float]


class ErrorBody(BaseModel):
    code: str
    message: str
    limit: Optional[str] = None


class ErrorResponse(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorBody
