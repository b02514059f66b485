"""Sandbox speed, side by side in one run: per-call time of ise's session and exec modes against mini-swe-agent's
docker environment on the same commands and image, how long a sandbox takes to be ready (cold and from the
warm pool), and what a snapshot costs per step, by watched roots.

    .venv/bin/pip install --no-deps mini-swe-agent==2.4.6 python-dotenv platformdirs   # or: pip install '.[bench]'
    .venv/bin/python bench/sandbox_bench.py [--rounds 200] [--only snapshot]

Calls are interleaved (one of each backend per round) so that load from elsewhere hits all of them alike.
Overhead is the time of a call of `true`, whose own work is nil. Goals: session <= 1 ms, exec <= 30 ms,
>= 20x faster than mini-swe-agent per call; ready <= 200 ms cold, <= 10 ms from the pool.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from ise.sandbox.config import SandboxConfig
from ise.sandbox.docker import DockerSandbox, open_sandbox
from ise.sandbox.docker_pool import SandboxPool
from ise.sandbox.engine import ensure_engine
from ise.sandbox.image import build_image

COMMANDS = ("true", "echo hello", "ls -la /usr/bin | wc -l", "cat /etc/os-release")
RUN_ID = "bench"


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def median_p90(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


def mini_swe_agent(image: str) -> Any:
    os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")
    try:
        from minisweagent.environments.docker import DockerEnvironment
    except ImportError:
        raise SystemExit(
            "mini-swe-agent is not installed: .venv/bin/pip install --no-deps mini-swe-agent==2.4.6 "
            "python-dotenv platformdirs"
        ) from None
    quiet = logging.getLogger("bench.mini-swe-agent")
    quiet.setLevel(logging.WARNING)
    return DockerEnvironment(image=image, cwd="/workspace", logger=quiet)


def per_call(config: SandboxConfig, rounds: int) -> None:
    mini = mini_swe_agent(config.image)
    try:
        with open_sandbox(config, run_id=RUN_ID) as box:
            box.warm()
            backends: dict[str, Callable[[str], Any]] = {
                "ise session (run)": box.run,
                "ise exec": box.exec,
                "mini-swe-agent": lambda c: mini.execute({"command": c}),
            }
            for command in COMMANDS:  # same answers everywhere before timing anything
                outputs = {name: run(command) for name, run in backends.items()}
                assert outputs["ise session (run)"].stdout == outputs["ise exec"].stdout, command
                assert outputs["ise exec"].stdout == outputs["mini-swe-agent"]["output"], command
            samples: dict[tuple[str, str], list[float]] = {(n, c): [] for n in backends for c in COMMANDS}
            for _ in range(rounds):
                for command in COMMANDS:
                    for name, run in backends.items():
                        samples[name, command].append(timed(lambda r=run, c=command: r(c)))  # type: ignore[misc]
    finally:
        mini.cleanup()
    print(f"\nper-call time, ms (median / p90 of {rounds} calls each, interleaved)")
    print(
        f"{'command':28} " + " ".join(f"{name:>22}" for name in backends) + f" {'mini/session':>13} {'mini/exec':>10}"
    )
    for command in COMMANDS:
        cells = {name: median_p90(samples[name, command]) for name in backends}
        row = " ".join(f"{cells[n][0]:>12.2f} / {cells[n][1]:>7.2f}" for n in backends)
        mini_median = cells["mini-swe-agent"][0]
        ratios = f"{mini_median / cells['ise session (run)'][0]:>12.0f}x {mini_median / cells['ise exec'][0]:>9.1f}x"
        print(f"{command:28} {row} {ratios}")


def readiness(config: SandboxConfig, samples: int) -> None:
    cold, cold_first, pooled, pooled_first = [], [], [], []
    for _ in range(samples):
        started = time.perf_counter()
        box = DockerSandbox(config, run_id=RUN_ID)
        cold.append((time.perf_counter() - started) * 1000)
        box.run("true")
        cold_first.append((time.perf_counter() - started) * 1000)
        box.close()
    with SandboxPool(config, run_id=RUN_ID, size=2) as pool:
        for _ in range(samples):
            pool.wait_ready(60)
            started = time.perf_counter()
            box = pool.acquire()
            pooled.append((time.perf_counter() - started) * 1000)
            box.run("true")
            pooled_first.append((time.perf_counter() - started) * 1000)
            box.close()
    mini_start = []
    for _ in range(max(3, samples // 3)):
        started = time.perf_counter()
        env = mini_swe_agent(config.image)
        mini_start.append((time.perf_counter() - started) * 1000)
        env.cleanup()
    print(f"\ncontainer ready, ms (median / p90 of {samples})")
    for name, values in (
        ("ise cold (create + start)", cold),
        ("ise cold + first session command", cold_first),
        ("ise from the warm pool", pooled),
        ("ise from the pool + first command", pooled_first),
        ("mini-swe-agent docker run -d", mini_start),
    ):
        median, p90 = median_p90(values)
        print(f"{name:36} {median:9.2f} / {p90:9.2f}")


SNAPSHOT_ROOTS: dict[str, list[str] | None] = {
    "workspace": ["/workspace"],
    "workspace + home + /etc": ["/workspace", "/home/agent", "/root", "/etc"],
    "admin watch roots": None,
}
"""What is watched per step: the workspace alone (the user profile's watch roots but for an empty home), plus both
homes and /etc, and everything the admin profile watches (/usr/local, /srv and /opt too)."""


def snapshots(config: SandboxConfig, rounds: int) -> None:
    """Median snapshot time per step in an admin sandbox whose workspace holds 1,000 files of 1 KiB (50 folders),
    one file appended to between steps, as an agent's step would."""
    with open_sandbox(config.for_profile("admin"), run_id=RUN_ID) as box:
        made = box.exec(
            "cd /workspace && for d in $(seq -w 0 49); do mkdir -p src/d$d && for f in $(seq -w 0 19); do "
            "head -c 1024 /dev/urandom > src/d$d/f$f.txt; done; done; find /workspace -type f | wc -l",
            timeout_s=120,
        )
        assert made.stdout.strip() == "1000", made
        entries = {name: len(box.snapshot(roots)) for name, roots in SNAPSHOT_ROOTS.items()}
        samples: dict[str, list[float]] = {name: [] for name in SNAPSHOT_ROOTS}
        for step in range(rounds):
            box.exec(f"echo step {step} >> /workspace/src/d00/f00.txt")
            for name, roots in SNAPSHOT_ROOTS.items():
                samples[name].append(timed(lambda r=roots: box.snapshot(r)))  # type: ignore[misc]
    print(f"\nsnapshot per step, ms (median / p90 of {rounds}, interleaved; workspace of 1,000 files)")
    print(" ".join(f"{name:>30}" for name in SNAPSHOT_ROOTS))
    print(" ".join(f"{f'{entries[name]:,} entries':>30}" for name in SNAPSHOT_ROOTS))
    cells = (median_p90(samples[name]) for name in SNAPSHOT_ROOTS)
    print(" ".join(f"{f'{median:.2f} / {p90:.2f}':>30}" for median, p90 in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="calls per backend and command")
    parser.add_argument("--ready-samples", type=int, default=15)
    parser.add_argument("--snapshot-rounds", type=int, default=100)
    parser.add_argument("--only", choices=["calls", "ready", "snapshot"], help="run one part only")
    args = parser.parse_args()
    print(ensure_engine(say=lambda _: None))
    image = build_image("workspace", say=lambda _: None)
    config = SandboxConfig(image=image.tag)
    print(f"image {image.tag} {image.id[:19]}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}")
    if args.only in (None, "calls"):
        per_call(config, args.rounds)
    if args.only in (None, "ready"):
        readiness(config, args.ready_samples)
    if args.only in (None, "snapshot"):
        snapshots(config, args.snapshot_rounds)


if __name__ == "__main__":
    main()
