"""Seeds as worked examples for the plan writer: the verified seed closest to an intent (ise/seeds), written in
the very JSON the writer must answer with (ise/stages/plan_drafts.py), so a small model sees a proven plan of its
own domain. `simulate.seed_examples` says how many (0: the fixed examples only).

Only seeds the draft format can say exactly are shown: files in /workspace or the agent's home, owned by the
agent, as text; answers the draft's `answer` can carry (exact, contains, number, regex; at most one per
milestone), and none at all when the request asks nothing (answers are only taught for questions); examples
longer than EXAMPLE_LIMIT characters are left out (they would crowd a small model's context).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from ise.records import AnswerCheck, FileFixture, Intent, Plan, Profile, ShellCheck
from ise.scope import AGENT_HOME, WORKSPACE

_NO_ANSWER = {"match": "none", "expected": "", "expected_from": ""}
EXAMPLE_LIMIT = 5000
"""Characters of draft JSON one seed example may take."""


def seed_examples_for(
    intent: Intent, count: int, *, profile: Profile, question: bool, with_card: bool
) -> list[tuple[str, str]]:
    """Up to `count` (request, draft JSON) pairs from the seeds closest to the intent that the format can say and
    that run under the same profile (the prompt describes the sandbox of that profile)."""
    if count <= 0:
        return []
    from ise.seeds import seed_examples

    found: list[tuple[str, str]] = []
    for seed in seed_examples(intent.domain, intent.tasks, limit=1000):
        if seed.profile != profile:
            continue
        draft = draft_of(seed, question=question, with_card=with_card)
        if draft is not None:
            text = json.dumps(draft, ensure_ascii=False)
            if len(text) <= EXAMPLE_LIMIT:
                found.append((seed.intent.request, text))
        if len(found) == count:
            break
    return found


def draft_of(plan: Plan, *, question: bool, with_card: bool) -> dict[str, Any] | None:
    """The plan as the writer's draft JSON, or None when the draft format cannot say it exactly."""
    files = [_file(f) for f in plan.fixtures.files]
    if any(f is None for f in files) or plan.fixtures.dirs:
        return None
    by_id = {c.id: c for c in plan.checks}
    milestones = []
    for index, milestone in enumerate(plan.user.milestones):
        drafted = _milestone(milestone.ask, plan.solution[index], [by_id[c] for c in milestone.checks], question)
        if drafted is None:
            return None
        milestones.append(drafted)
    draft: dict[str, Any] = {
        "goal": plan.user.goal,
        "files": files,
        "setup_as_agent": "",
        "setup_as_root": plan.fixtures.setup_script or "",
        "milestones": milestones,
        "perturbations": [
            {
                "description": p.description,
                "script": p.script,
                "at_user_turn": p.at_user_turn or 1,
                "when": p.when or "",
            }
            for p in plan.perturbations
        ],
    }
    if with_card:
        draft["voice"] = plan.user.persona
        draft["hidden_facts"] = [h.model_dump() for h in plan.user.hidden_facts]
    return draft if _fits(draft, with_card) else None


def _fits(draft: dict[str, Any], with_card: bool) -> bool:
    """Would the writer's schema take this answer (lengths, counts)? The schema always has an `answer`; the
    prompt leaves it out when the request asks nothing, as the fixed examples do."""
    from ise.stages.plan_drafts import PlanDraft, WorldDraft

    answered = {
        **draft,
        "milestones": [
            {"answer": {"match": "none", "expected": "", "expected_from": ""}, **m} for m in draft["milestones"]
        ],
    }
    try:
        (PlanDraft if with_card else WorldDraft).model_validate(answered)
    except ValidationError:
        return False
    return True


def _file(fixture: FileFixture) -> dict[str, Any] | None:
    if fixture.encoding != "text" or fixture.owner != "agent":
        return None
    if fixture.path.startswith(WORKSPACE + "/"):
        path = fixture.path.removeprefix(WORKSPACE + "/")
    elif fixture.path.startswith(AGENT_HOME + "/"):
        path = "~/" + fixture.path.removeprefix(AGENT_HOME + "/")
    else:
        return None
    return {"path": path, "content": fixture.content, "executable": int(fixture.mode, 8) & 0o111 != 0}


def _milestone(ask: str, solution: str, checks: list[Any], question: bool) -> dict[str, Any] | None:
    shell = [c for c in checks if isinstance(c, ShellCheck)]
    answers = [c for c in checks if isinstance(c, AnswerCheck)]
    if len(shell) + len(answers) != len(checks) or len(shell) > 3 or len(answers) > 1:
        return None
    drafted: dict[str, Any] = {
        "ask": ask,
        "solution": solution,
        "checks": [
            {
                "description": c.description,
                "command": c.command,
                "expect_exit": c.expect_exit,
                "expect_stdout": c.expect_stdout or "",
            }
            for c in shell
        ],
    }
    if not question:
        return None if answers else drafted
    if not answers:
        drafted["answer"] = dict(_NO_ANSWER)
        return drafted
    (answer,) = answers
    if answer.match not in ("exact", "contains", "number", "regex") or answer.tolerance or answer.case_sensitive:
        return None
    drafted["answer"] = {
        "match": answer.match,
        "expected": answer.expected or "",
        "expected_from": answer.command or "",
    }
    return drafted
