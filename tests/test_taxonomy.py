"""The shipped taxonomy is large enough for the 4D matrix, and a broken one fails with the file and key named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ise.errors import InputError
from ise.taxonomy import load_taxonomy

TAXONOMY = Path(__file__).resolve().parents[1] / "configs" / "taxonomy"


def test_shipped_taxonomy_sizes() -> None:
    taxonomy = load_taxonomy(TAXONOMY)
    assert taxonomy.personas.combinations >= 500
    assert len(taxonomy.domains) >= 10
    assert len(taxonomy.tasks) >= 150
    assert set(taxonomy.levels) == {"simple", "medium", "complex"}
    assert taxonomy.levels["simple"].tasks == (1, 1)
    assert taxonomy.levels["medium"].tasks == (2, 2)
    assert taxonomy.levels["complex"].tasks == (3, 4)


def test_every_task_is_usable() -> None:
    taxonomy = load_taxonomy(TAXONOMY)
    domains = {domain.id for domain in taxonomy.domains}
    assert len({task.id for task in taxonomy.tasks}) == len(taxonomy.tasks)
    for task in taxonomy.tasks:
        assert task.domain in domains
        assert task.id.startswith(task.domain + ".")
        assert task.tools, task.id
        assert all(requirement.strip("|") for requirement in task.requires), task.id
    for domain in domains:
        assert len(taxonomy.tasks_in(domain)) >= 4, domain  # complex intents combine up to 4 tasks of a domain


QUESTIONS = {
    "files": ["find_biggest", "count_matching"],
    "text": ["count_occurrences", "where_defined"],
    "git": ["who_changed", "unmerged_branches"],
    "packages": ["which_version", "missing_requirements"],
    "services": ["which_process", "count_workers"],
    "logs": ["count_errors", "first_error"],
    "data": ["query_answer", "csv_lookup"],
    "automation": ["which_job", "diagnose_failure"],
    "security": ["who_can_read", "group_members"],
    "backup": ["latest_archive", "find_in_archives"],
    "documents": ["doc_stats", "which_document"],
    "network": ["configured_port", "resolve_host"],
}
"""Question-shaped templates: the user wants an answer (a number, a name), which the plan checks in the reply."""


def test_every_domain_has_question_shaped_tasks() -> None:
    taxonomy = load_taxonomy(TAXONOMY)
    assert set(QUESTIONS) == {domain.id for domain in taxonomy.domains}
    asks = ("which", "how many", "who", "when", "why", "question", "report", "tell")
    for domain, ids in QUESTIONS.items():
        for task_id in ids:
            summary = taxonomy.task(f"{domain}.{task_id}").summary
            assert summary.startswith(("Say ", "Find ", "Answer ", "Look up ", "Work out ")), task_id
            assert any(word in summary for word in asks), task_id


def test_persona_facets_are_distinct_and_hinted() -> None:
    personas = load_taxonomy(TAXONOMY).personas
    for facet in (personas.roles, personas.experience, personas.styles):
        names = [value.name for value in facet]
        assert len(set(names)) == len(names)
        assert all(value.hint for value in facet)
    assert len(set(personas.industries)) == len(personas.industries)


@pytest.fixture
def taxonomy_copy(tmp_path: Path) -> Path:
    target = tmp_path / "taxonomy"
    shutil.copytree(TAXONOMY, target)
    return target


def test_malformed_yaml_names_the_file(taxonomy_copy: Path) -> None:
    (taxonomy_copy / "domains.yaml").write_text("domains: [unclosed\n")
    with pytest.raises(InputError, match=r"domains\.yaml is not valid YAML"):
        load_taxonomy(taxonomy_copy)


def test_unknown_key_names_file_and_key(taxonomy_copy: Path) -> None:
    path = taxonomy_copy / "personas.yaml"
    data = yaml.safe_load(path.read_text())
    data["roles"][3]["mood"] = "grumpy"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"personas\.yaml: key 'roles\.3\.mood': unknown key"):
        load_taxonomy(taxonomy_copy)


def test_task_with_bad_field_names_domain_and_index(taxonomy_copy: Path) -> None:
    path = taxonomy_copy / "tasks.yaml"
    data = yaml.safe_load(path.read_text())
    data["logs"][2]["tools"] = []
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"tasks\.yaml: key 'logs\.2\.tools'"):
        load_taxonomy(taxonomy_copy)


def test_tasks_of_unknown_domain_are_rejected(taxonomy_copy: Path) -> None:
    path = taxonomy_copy / "tasks.yaml"
    data = yaml.safe_load(path.read_text())
    data["gardening"] = data.pop("files")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"key 'gardening': unknown domain"):
        load_taxonomy(taxonomy_copy)


def test_domain_too_small_for_complex_intents(taxonomy_copy: Path) -> None:
    path = taxonomy_copy / "tasks.yaml"
    data = yaml.safe_load(path.read_text())
    data["network"] = data["network"][:2]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"domain 'network' has 2 tasks; complexity levels need 4"):
        load_taxonomy(taxonomy_copy)


def test_missing_file_and_missing_directory(taxonomy_copy: Path, tmp_path: Path) -> None:
    (taxonomy_copy / "complexity.yaml").unlink()
    with pytest.raises(InputError, match=r"cannot read taxonomy file .*complexity\.yaml"):
        load_taxonomy(taxonomy_copy)
    with pytest.raises(InputError, match="does not exist"):
        load_taxonomy(tmp_path / "nowhere")


def test_inverted_range_is_rejected(taxonomy_copy: Path) -> None:
    path = taxonomy_copy / "complexity.yaml"
    data = yaml.safe_load(path.read_text())
    data["levels"]["medium"]["user_turns"] = [4, 2]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"complexity\.yaml: key 'levels\.medium'"):
        load_taxonomy(taxonomy_copy)
