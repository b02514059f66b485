"""One pydantic config tree, loaded from YAML files and `a.b=value` overrides, applied in order."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import Field, ValidationError

from ise.errors import InputError
from ise.llm.config import EmbeddedBackend, LLMBackend
from ise.records import Budgets, Complexity, Record
from ise.sandbox.config import SandboxConfig


class ModelsConfig(Record):
    """Per-role LLM overrides; a role left unset uses the top-level `llm`."""

    intents: LLMBackend | None = None
    simulate: LLMBackend | None = None
    agent: LLMBackend | None = None
    user: LLMBackend | None = None


class IntentsConfig(Record):
    taxonomy: Path = Path("configs/taxonomy")
    """Directory holding personas.yaml, domains.yaml, tasks.yaml, complexity.yaml."""
    count: int = Field(default=100, ge=1)
    """How many matrix cells to sample (before dedup)."""
    domains: list[str] = Field(default_factory=list)
    """Domain ids to sample from (e.g. [data, logs]); empty: every domain of the taxonomy."""
    complexity_priors: dict[str, float] = Field(default_factory=lambda: {"simple": 0.1, "medium": 0.4, "complex": 0.5})
    """Share of each complexity level (simple, medium, complex); normalised, need not sum to 1."""
    max_attempts: int = Field(default=3, ge=1)
    """LLM attempts per intent; each retry is shown the validation error."""
    dedup_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Cosine similarity at or above which two intents count as paraphrases; unset: the embedder's calibrated
    default (0.72 for all-MiniLM-L6-v2, 0.55 for hashing; see tests/test_dedup.py)."""
    near_dup_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    """Character 5-gram Jaccard at or above which two requests count as near-verbatim copies."""
    embedding_model: Literal["all-MiniLM-L6-v2", "hashing"] = "all-MiniLM-L6-v2"
    """Sentence embedder for semantic dedup and Vendi; `hashing` is a dependency-free fallback."""


def _default_budgets() -> dict[Complexity, Budgets]:
    return {
        "simple": Budgets(
            max_user_turns=3, max_agent_steps_per_turn=10, command_timeout_s=30, wall_clock_s=300, max_tokens=16_000
        ),
        "medium": Budgets(
            max_user_turns=5, max_agent_steps_per_turn=15, command_timeout_s=30, wall_clock_s=600, max_tokens=32_000
        ),
        "complex": Budgets(
            max_user_turns=8, max_agent_steps_per_turn=20, command_timeout_s=60, wall_clock_s=900, max_tokens=48_000
        ),
    }


class SimulateConfig(Record):
    """How plans are written, validated and budgeted (see ise/stages/simulate.py)."""

    max_attempts: int = Field(default=4, ge=1)
    """Plans drafted per intent; each failed dry-run is shown to the model with its exact errors."""
    schema_attempts: int = Field(default=2, ge=1)
    """Tries per draft to get JSON that matches the schema (constrained models rarely need a second)."""
    two_part: bool = True
    """Draft the world (files, checks, perturbations) first, then the user card: easier for small models."""
    budgets: dict[Complexity, Budgets] = Field(default_factory=_default_budgets)
    """Episode budgets per complexity level; max_user_turns is raised to fit every milestone plus one fix."""
    max_files: int = Field(default=12, ge=1)
    max_file_bytes: int = Field(default=32_000, ge=1)
    max_total_bytes: int = Field(default=128_000, ge=1)
    max_script_bytes: int = Field(default=8_000, ge=1)
    """Cap for the setup script, each perturbation and each check command."""
    system_domains: list[str] = Field(
        default_factory=lambda: ["services", "network", "security", "packages", "automation"]
    )
    """Domain ids (configs/taxonomy/domains.yaml) whose plans run under the admin profile and may touch paths outside
    /workspace and the agent's home. automation is one: crontab needs a writable /var/spool/cron."""
    check_timeout_s: float = Field(default=10.0, gt=0)
    """Per check, perturbation and trigger condition in the dry run (the setup script has sandbox.setup_timeout_s)."""
    seed_examples: int = Field(default=0, ge=0, le=3)
    """Worked examples taken from the seed library (the verified seeds closest to the intent), after the fixed
    ones; 0 shows the fixed examples only (bench/simulate_bench.py compares)."""
    verify_solution: bool = True
    """The model also writes a reference solution per milestone; a second sandbox runs it and every check must
    pass afterwards, so checks are proven satisfiable as well as failing at first."""
    solution_timeout_s: float = Field(default=30.0, gt=0)
    """Per milestone's reference solution."""
    calibrate: bool = True
    """When a check exits as expected after the reference solution but prints other text than the model expected
    (small models miscount), expect what the solved run printed; the dry run then re-checks that it fails at first."""
    prune: bool = True
    """When the dry run disproves only some checks (pass too early, fail once solved, cannot run) or perturbations
    (fail to apply), drop those instead of asking the model again, provided every milestone keeps a proven check."""
    seeds: list[str] = Field(default_factory=list)
    """Seed domains or seed ids (ise/seeds; ["all"] for every seed) whose hand-written plans the stage adds,
    proven again here."""


class ExecuteConfig(Record):
    """How episodes run (see ise/stages/execute.py). Budget caps lower a plan's budgets, never raise them."""

    max_user_turns: int | None = Field(default=None, ge=1)
    """Cap on the plan's user turns; None keeps the plan's."""
    max_agent_steps_per_turn: int | None = Field(default=None, ge=1)
    command_timeout_s: float | None = Field(default=None, gt=0)
    wall_clock_s: float | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)
    """Cap on the agent's conversation length in tokens (prompt + completion of its latest call)."""
    max_delegate_steps: int = Field(default=8, ge=1)
    """Tool steps a delegated sub-agent may take before it must answer."""
    delegate_for: list[Complexity] = Field(default_factory=lambda: list[Complexity](["complex"]))
    """Plan complexities whose agent is offered the delegate tool (and told of it); [] never offers it."""
    malformed_retries: int = Field(default=2, ge=0)
    """Re-asks after an agent reply that could not be parsed, before the episode ends as model_error."""
    user_regenerations: int = Field(default=2, ge=0)
    """Re-drafts of a user turn that slipped into the assistant's role, before a fallback."""
    probe_checks: bool = True
    """After each agent answer, run the current milestone's checks so the user simulator sees the truth."""
    check_timeout_s: float = Field(default=30.0, gt=0)
    """Per check, probe, perturbation script and trigger condition."""
    retry_infra_errors: bool = True
    """On start, drop traces tagged infra_error from the output so they run again."""
    retry_setup_errors: bool = False
    """On start, also rerun traces whose plan setup failed (setup_error); without it they are rerun only when their
    plan or the sandbox image changed since."""
    attempts: int = Field(default=1, ge=1)
    """Trajectories per plan, each with its own seed (ids `<plan>`, `<plan>.a1`, ...); the agent's sampling
    temperature is its backend's (`models.agent.temperature`), so keep it above 0 for attempts that differ."""
    stop_at_success: bool = True
    """With attempts > 1: no further attempt at a plan once one passed its checks."""
    max_consecutive_infra_errors: int = Field(default=5, ge=1)
    """Stop the stage after this many infra failures in a row: the endpoint or engine is down, not one episode."""

    def capped(self, budgets: Budgets) -> Budgets:
        """A plan's budgets lowered to these caps (never raised)."""

        def cap(value: float, limit: float | None) -> float:
            return value if limit is None else min(value, limit)

        return Budgets(
            max_user_turns=int(cap(budgets.max_user_turns, self.max_user_turns)),
            max_agent_steps_per_turn=int(cap(budgets.max_agent_steps_per_turn, self.max_agent_steps_per_turn)),
            command_timeout_s=cap(budgets.command_timeout_s, self.command_timeout_s),
            wall_clock_s=cap(budgets.wall_clock_s, self.wall_clock_s),
            max_tokens=int(cap(budgets.max_tokens, self.max_tokens)),
        )


SftFormat = Literal["openai", "trl", "sharegpt", "parquet"]
TaskFormat = Literal["harbor", "atif"]
"""Written on request only: harbor, each exported trajectory's plan as a Harbor task directory; atif, each exported
trace as an ATIF trajectory (ise/tasks)."""
ExportFormat = Literal[SftFormat, TaskFormat]


class ExportConfig(Record):
    """Which traces become SFT rows, how they are split, and which files are written (see ise/stages/export.py)."""

    include_failed: bool = False
    """Also export trajectories whose success checks did not all pass (default: verified successes only)."""
    require_recovery: bool = False
    """Keep only trajectories with at least one failure->recovery span."""
    include_unproven: bool = False
    """Also export trajectories of plans never proven solvable (env.plan_proven false: simulate.verify_solution
    was off), whose checks may not tell done work from undone."""
    include_whole_delegation: bool = False
    """Also export trajectories whose agent delegated the whole request at its first step (filtered reason
    delegated_whole_request): they teach delegating, not working."""
    subagent_rows: bool = False
    """Also export each sub-agent conversation of a kept trajectory as a row of its own (id
    `<trace id>/delegate/<call id>`, metadata.subagent true), in its parent's split."""
    min_user_turns: int = Field(default=1, ge=0)
    max_user_turns: int | None = Field(default=None, ge=0)
    exclude_infra_errors: bool = True
    """Drop trajectories tagged infra_error (the sandbox or endpoint broke, not the agent)."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Longest conversation kept, in tokens of the rendered chat template (see `token_counter`)."""
    token_counter: Literal["auto", "embedded", "approx"] = "auto"
    """embedded: the embedded model's tokenizer; approx: UTF-8 bytes / 4; auto: embedded if its model is fetched."""
    validation_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of intents (not rows) held out; no intent is in both splits."""
    seed: int = 0
    """Seeds the split and the render-check sample."""
    formats: list[ExportFormat] = Field(default_factory=lambda: list(get_args(SftFormat)))
    """The SFT formats by default; harbor and atif when asked for."""
    plans: Path | None = None
    """harbor: the plans the traces ran (default: plans.jsonl beside the traces file)."""
    render_samples: int = Field(default=3, ge=0)
    """Rows rendered through the embedded model's chat template as a check; 0 skips the check."""


class TrainConfig(Record):
    """`ise train`: supervised fine-tuning on an export's trl/ rows (see ise/train/trainer.py)."""

    model: str = "qwen2.5-coder-0.5b"
    """Base model: a Hugging Face model folder, a .gguf file, or an embedded model name (read from its GGUF)."""
    method: Literal["lora", "full"] = "lora"
    """lora: train a peft LoRA adapter on the frozen model; full: update every weight."""
    lora_r: int = Field(default=16, ge=1)
    """LoRA rank."""
    lora_alpha: int = Field(default=32, ge=1)
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Dropout on the LoRA branch."""
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Module names the adapter wraps (Qwen2/Llama naming: every attention and MLP projection)."""
    max_length: int = Field(default=4096, ge=16)
    """Longest training sequence, in tokens of the rendered chat template (tools included)."""
    overlong: Literal["truncate_turns", "drop", "error"] = "truncate_turns"
    """A row longer than max_length: cut after the last assistant turn that fits whole, drop it (counted), or stop
    with an error naming it. Never cut mid-message."""
    epochs: float = Field(default=1.0, gt=0)
    """Passes over the training rows (ignored when max_steps is set)."""
    max_steps: int | None = Field(default=None, ge=1)
    """Optimizer steps to run; overrides epochs."""
    learning_rate: float = Field(default=2e-4, gt=0)
    """Peak learning rate (2e-4 suits LoRA; use about 1e-5 for full fine-tuning)."""
    warmup_ratio: float = Field(default=0.03, ge=0.0, lt=1.0)
    """Share of the steps spent warming the learning rate up."""
    batch_size: int = Field(default=1, ge=1)
    """Rows per device per forward pass."""
    grad_accum: int = Field(default=8, ge=1)
    """Forward passes per optimizer step (effective batch = batch_size x grad_accum x devices)."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: much less memory for about a third more time."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """auto: bfloat16 on a GPU that supports it, else float32."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train; auto picks a GPU when there is one."""
    save_steps: int = Field(default=50, ge=1)
    """Checkpoint every this many optimizer steps (what --resume continues from)."""
    logging_steps: int = Field(default=1, ge=1)
    """Report the loss every this many optimizer steps."""
    merge: bool = False
    """Also write the base model with the adapter merged into it (merged/ inside the output folder)."""
    exclude_tasks: list[str] = Field(default_factory=list)
    """Task sources (as `ise eval --tasks`) whose tasks no training row may overlap; overlaps are refused and
    counted (ise/train/decontam.py)."""
    plans: Path | None = None
    """The plans the training traces ran, so decontamination can compare fixtures too."""


class Config(Record):
    run_dir: Path = Path("runs/default")
    """Where `ise run` keeps every stage's output."""
    seed: int = 0
    workers: int = Field(default=1, ge=1)
    """Records processed concurrently by each stage."""
    llm: LLMBackend = Field(default_factory=EmbeddedBackend)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    intents: IntentsConfig = Field(default_factory=IntentsConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    execute: ExecuteConfig = Field(default_factory=ExecuteConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)

    def llm_for(self, role: Literal["intents", "simulate", "agent", "user"]) -> LLMBackend:
        return getattr(self.models, role) or self.llm


def load_config(sources: Sequence[str] = ()) -> Config:
    """Merge each source in order: a YAML file path, or a `dotted.key=value` override (value parsed as YAML)."""
    tree: dict[str, Any] = {}
    for source in sources:
        if "=" in source and not Path(source).exists():
            key, _, raw = source.partition("=")
            _set_dotted(tree, key.strip(), _parse_value(source, raw))
        else:
            _merge(tree, _read_yaml(Path(source)))
    _inherit_backends(tree)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise InputError(_describe(exc)) from None


def _inherit_backends(tree: dict[str, Any]) -> None:
    """`llm` without `kind` tunes the default (embedded) backend; a role override without `kind`, or with the same
    kind, tunes `llm` (e.g. `models.user.temperature=0.2`); a role with another kind stands alone."""
    llm = tree.get("llm")
    if not isinstance(llm, dict):
        return
    llm.setdefault("kind", EmbeddedBackend().kind)
    models = tree.get("models")
    if not isinstance(models, dict):
        return
    for role, override in models.items():
        if isinstance(override, dict) and override.get("kind", llm["kind"]) == llm["kind"]:
            inherited = copy.deepcopy(llm)
            _merge(inherited, override)
            models[role] = inherited


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"config {path} is not UTF-8 text (byte {exc.start + 1}): is it a YAML file?") from None
    except yaml.YAMLError as exc:
        raise InputError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise InputError(f"config {path} is not valid YAML: nested too deeply") from None
    except ValueError as exc:  # PyYAML's resolvers raise it for some malformed scalars (e.g. `0x_`)
        raise InputError(f"config {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"config {path} must be a mapping at the top level")
    return data


def _parse_value(source: str, raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except (yaml.YAMLError, RecursionError, ValueError):
        raise InputError(f"override {source!r}: value is not valid YAML") from None


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"config: unknown key '{key}'"
    return f"config: {key}: {first['msg']}"
