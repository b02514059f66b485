"""Config loading: YAML files and dotted overrides applied in order; unknown keys and bad values name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ise.config import Config, load_config
from ise.errors import InputError
from ise.llm.config import EmbeddedBackend, OpenAIBackend, ScriptedBackend
from ise.seeds import load_seeds

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def test_defaults_without_sources() -> None:
    config = load_config([])
    assert config == Config()
    assert isinstance(config.llm, EmbeddedBackend)
    assert config.intents.complexity_priors == {"simple": 0.1, "medium": 0.4, "complex": 0.5}
    assert config.intents.dedup_threshold is None  # the embedder's calibrated default applies


def test_demo_config_loads() -> None:
    config = load_config([str(DEMO)])
    assert isinstance(config.llm, EmbeddedBackend)
    assert config.intents.count == 2
    assert config.intents.taxonomy == Path("configs/taxonomy")
    assert config.simulate.verify_solution
    assert config.execute.attempts == 2
    assert {plan.id for plan in load_seeds(config.simulate.seeds)} == set(config.simulate.seeds)


def test_sources_apply_in_order(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("seed: 1\nworkers: 2\nintents:\n  count: 50\n  max_attempts: 4\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("intents:\n  count: 70\n")
    config = load_config([str(base), "intents.count=5", str(extra), "seed=9"])
    assert config.seed == 9
    assert config.workers == 2
    assert config.intents.count == 70  # the later file wins over the earlier override
    assert config.intents.max_attempts == 4  # nested keys merge instead of replacing the section


def test_override_values_are_parsed_as_yaml() -> None:
    config = load_config(
        ["intents.complexity_priors={simple: 1, medium: 1, complex: 2}", "intents.dedup_threshold=0.8"]
    )
    assert config.intents.complexity_priors == {"simple": 1, "medium": 1, "complex": 2}
    assert config.intents.dedup_threshold == 0.8


def test_backend_kind_switches_the_class() -> None:
    config = load_config(["llm.kind=openai", "llm.base_url=http://127.0.0.1:9/v1", "models.intents.kind=scripted"])
    assert isinstance(config.llm, OpenAIBackend)
    assert config.llm.base_url == "http://127.0.0.1:9/v1"
    assert isinstance(config.llm_for("intents"), ScriptedBackend)
    assert config.llm_for("simulate") is config.llm


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (["intents.colour=blue"], "config: unknown key 'intents.colour'"),
        (["llm.kind=embedded", "llm.base_url=x"], "config: unknown key 'llm.embedded.base_url'"),
        (["intents.count=lots"], "config: intents.count: Input should be a valid integer"),
        (["intents.count=0"], "config: intents.count: Input should be greater than or equal to 1"),
        (["intents.dedup_threshold=1.5"], "config: intents.dedup_threshold: Input should be less than or equal"),
        (["intents.embedding_model=bert"], "config: intents.embedding_model: Input should be"),
        (["llm.kind=gpt"], "config: llm: Input tag 'gpt' found using 'kind' does not match"),
        (["seed=[1"], "value is not valid YAML"),
    ],
)
def test_bad_overrides_name_the_key(sources: list[str], message: str) -> None:
    with pytest.raises(InputError) as caught:
        load_config(sources)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read config .*missing\.yaml"):
        load_config([str(tmp_path / "missing.yaml")])
    broken = tmp_path / "broken.yaml"
    broken.write_text("intents: {count: 3\n")
    with pytest.raises(InputError, match=r"config .*broken\.yaml is not valid YAML"):
        load_config([str(broken)])
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="must be a mapping"):
        load_config([str(listed)])


def test_backend_fields_without_kind_tune_the_default_backend() -> None:
    config = load_config(["llm.max_tokens=30"])
    assert isinstance(config.llm, EmbeddedBackend)
    assert config.llm.max_tokens == 30


def test_role_override_inherits_the_shared_backend_unless_it_names_another_kind() -> None:
    config = load_config(
        [
            "llm.kind=openai",
            "llm.base_url=http://127.0.0.1:9/v1",
            "llm.model=m",
            "models.user.temperature=0.1",
            "models.agent={kind: scripted}",
        ]
    )
    user = config.llm_for("user")
    assert isinstance(user, OpenAIBackend)
    assert (user.base_url, user.model, user.temperature) == ("http://127.0.0.1:9/v1", "m", 0.1)
    assert isinstance(config.llm, OpenAIBackend)
    assert config.llm.temperature == 0.7  # the shared backend itself is untouched
    assert isinstance(config.llm_for("agent"), ScriptedBackend)
