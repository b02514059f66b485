"""Where a trace came from, in the few values it records: the config's and the plan's hashes, the ise version, and
the seed sent with every LLM call of a trajectory."""

from __future__ import annotations

import hashlib
from importlib import metadata

from ise.config import Config
from ise.records import Plan


def config_hash(config: Config) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


def ise_version() -> str:
    try:
        return metadata.version("ise")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def attempt_id(plan_id: str, attempt: int) -> str:
    """The trace id of one attempt at a plan: the plan's id for the first, `<plan>.a<i>` for the others."""
    return plan_id if attempt == 0 else f"{plan_id}.a{attempt}"


def trajectory_seed(seed: int, plan_id: str) -> int:
    """Stable per plan and config seed, so a rerun of one trajectory asks the models the same way."""
    digest = int(hashlib.sha256(f"{seed}:{plan_id}".encode()).hexdigest()[:8], 16)
    return digest % (2**31 - 1)


def plan_hash(plan: Plan) -> str:
    return hashlib.sha256(plan.model_dump_json().encode()).hexdigest()[:16]
