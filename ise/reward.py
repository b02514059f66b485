"""Reward checks: verifiers in Harbor's manner, run against the final state (the verdict rule of ise/checks.py
calls this).

One root command does it all, so nothing the agent left behind can slip in between the steps:
1. `root` (the tests folder, /tests) and `reward_dir` (/logs/verifier) are removed and made anew, root-owned and
   not writable by others: a reward file or a test the agent planted is gone before the verifier starts;
2. the check's files are unpacked there from a tar archive carried in the command;
3. `command` (bash /tests/test.sh) runs from `workdir` under `timeout`, its output going to
   `reward_dir`/test-stdout.txt;
4. the reward files are read back. reward.txt holds a number; reward.json an object whose "reward" is the reward
   (or, with no "reward" key, its only numeric value). The check passes when the reward is at least `threshold`.
A verifier that writes no readable reward fails the check, whatever its exit code.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shlex
import tarfile

from ise.records import CheckResult, RewardCheck
from ise.sandbox.base import ExecResult, Sandbox

GRACE_S = 15.0
"""Time beyond the verifier's own limit for unpacking and reading back."""
_FRAME = "__ISE_REWARD_{}__"
_FRAMES = re.compile(r"^__ISE_REWARD_(EXIT|FILE|OUTPUT)__ ?(.*)$", re.M)


def tests_archive(check: RewardCheck) -> bytes:
    """The check's files as a gzipped tar, root-owned; paths are relative to `root`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for file in check.files:
            data = base64.b64decode(file.content) if file.encoding == "base64" else file.content.encode()
            info = tarfile.TarInfo(file.path.lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(data), int(file.mode, 8), 0, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def verifier_script(check: RewardCheck, timeout_s: float) -> str:
    root, rewards, workdir = (shlex.quote(p) for p in (check.root, check.reward_dir, check.workdir))
    payload = base64.b64encode(tests_archive(check)).decode()
    return "\n".join(
        [
            f"rm -rf -- {root} {rewards} && mkdir -p -- {root} {rewards} || exit 97",
            f"printf '%s' {shlex.quote(payload)} | base64 -d | tar -xzf - --no-same-owner -C {root} || exit 97",
            f"chown -R root:root {root} {rewards} && chmod -R go-w {root} && chmod 0755 {rewards}",
            f"cd {workdir} 2>/dev/null || cd /",
            f"timeout -k 5 {math.ceil(timeout_s)} bash -c {shlex.quote(check.command)} "
            f"> {rewards}/test-stdout.txt 2>&1 < /dev/null",
            f"echo; echo {_FRAME.format('EXIT')} $?",
            "for name in reward.txt reward.json; do",
            f'  if [ -f {rewards}/"$name" ]; then echo {_FRAME.format("FILE")} "$name"; '
            f'head -c 65536 {rewards}/"$name"; echo; fi',
            "done",
            f"echo {_FRAME.format('OUTPUT')}; tail -c 4000 {rewards}/test-stdout.txt",
        ]
    )


def parse_reward(name: str, text: str) -> float | None:
    """The reward a reward.txt or reward.json holds, or None when it holds none (see the module docstring)."""
    try:
        if name == "reward.txt":
            value = float(text.strip())
        else:
            data = json.loads(text)
            if not isinstance(data, dict):
                return None
            numbers = [v for v in data.values() if isinstance(v, int | float) and not isinstance(v, bool)]
            found = data["reward"] if "reward" in data else (numbers[0] if len(numbers) == 1 else None)
            if not isinstance(found, int | float) or isinstance(found, bool):
                return None
            value = float(found)
    except (ValueError, json.JSONDecodeError):
        return None
    return value if math.isfinite(value) else None


def _sections(stdout: str) -> tuple[int | None, dict[str, str], str]:
    """The verifier's exit code, the reward files by name, and the tail of its output."""
    marks = list(_FRAMES.finditer(stdout))
    exit_code: int | None = None
    files: dict[str, str] = {}
    output = ""
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(stdout)
        body = stdout[mark.end() + 1 : end]
        kind, value = mark.group(1), mark.group(2).strip()
        if kind == "EXIT" and value.lstrip("-").isdigit():
            exit_code = int(value)
        elif kind == "FILE":
            files[value] = body
        elif kind == "OUTPUT":
            output = body
    return exit_code, files, output


def run_reward(check: RewardCheck, sandbox: Sandbox, *, timeout_s: float) -> CheckResult:
    result: ExecResult = sandbox.exec(verifier_script(check, timeout_s), timeout_s=timeout_s + GRACE_S, user="root")
    exit_code, files, output = _sections(result.stdout)
    reward: float | None = None
    for name in ("reward.txt", "reward.json"):
        reward = parse_reward(name, files[name]) if name in files else None
        if reward is not None:
            break
    if result.timed_out or exit_code is None:
        reason: str | None = "the verifier timed out" if result.timed_out else "the tests could not be put in place"
        passed: bool = False
    elif reward is None:
        passed, reason = False, "the verifier wrote no readable reward (reward.txt or reward.json)"
    else:
        passed = reward >= check.threshold
        reason = None if passed else f"reward {reward:g} is below {check.threshold:g}"
    return CheckResult(
        id=check.id,
        passed=passed,
        exit_code=result.exit_code if exit_code is None else exit_code,
        stdout=output[-4000:],
        stderr=result.stderr[-4000:],
        duration_s=round(result.duration_s, 4),
        timed_out=result.timed_out or exit_code == 124,
        kind="reward",
        reward=reward,
        reason=reason,
    )
