"""What every imported task has in common: the field's suites give a task text and a verifier, not a persona, a
request drafted for one or a user card. An imported task is asked once, in its own words, by a neutral user who
adds nothing; one place says so for every source."""

from __future__ import annotations

from ise.records import Complexity, Intent, Milestone, Persona, UserCard

NEUTRAL_PERSONA = Persona(role="computer user", industry="general", experience="intermediate", style="neutral")
TASK_MILESTONE = "task"


def imported_intent(
    identifier: str,
    request: str,
    *,
    domain: str,
    tasks: list[str],
    complexity: Complexity,
    deliverable: str,
    workspace: list[str],
) -> Intent:
    """The intent of an imported task: its text is the request, as written."""
    return Intent(
        id=identifier,
        persona=NEUTRAL_PERSONA,
        domain=domain,
        tasks=tasks,
        tools=[],
        complexity=complexity,
        expected_turns=1,
        request=request,
        deliverable=deliverable,
        workspace=workspace,
    )


def single_ask_user(request: str, check_ids: list[str]) -> UserCard:
    """A user who asks once, in the task's words, and adds nothing: one milestone holding every check."""
    return UserCard(
        persona="A user who asks once, in the task's words, and adds nothing; terse.",
        goal=request,
        milestones=[Milestone(id=TASK_MILESTONE, ask=request, checks=check_ids)],
    )
