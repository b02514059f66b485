"""The base of every persisted record."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """Base of every persisted record: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")
