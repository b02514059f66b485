"""`ise sandbox ...` commands: engine, build, check, gc."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="sandbox commands: engine, build, check, gc")


@app.command()
def engine() -> None:
    """Make sure a Docker engine answers (as root on Debian: install docker.io and start dockerd if needed)."""
    from ise.sandbox.engine import ensure_engine

    typer.echo(ensure_engine())


@app.command()
def build(
    name: Annotated[str, typer.Argument(help="Directory under sandbox_images/")] = "workspace",
    force: Annotated[bool, typer.Option(help="Rebuild even when the image is up to date.")] = False,
) -> None:
    """Build sandbox_images/NAME into ise-NAME:latest (bootstrapping the Debian base offline if it cannot be pulled)."""
    from ise.sandbox.image import build_image

    started = time.monotonic()
    built = build_image(name, force=force)
    state = f"built in {time.monotonic() - started:.0f} s" if built.built else "up to date"
    typer.echo(f"{built.tag} {built.id} ({state}; context sha256 {built.context_sha256[:12]})")


@app.command()
def check(
    image: Annotated[str, typer.Option(help="Image to check.")] = "ise-workspace:latest",
    profile: Annotated[str, typer.Option(help="Sandbox profile: user or admin.")] = "user",
) -> None:
    """Run the sandbox conformance checks on this machine, in one fresh hardened container."""
    from ise.errors import IseError
    from ise.sandbox.config import SandboxConfig
    from ise.sandbox.conformance import run_checks
    from ise.sandbox.docker import open_sandbox

    if profile not in ("user", "admin"):
        raise IseError(f"--profile must be user or admin, not {profile!r}")
    config = SandboxConfig(image=image).for_profile("admin" if profile == "admin" else "user")
    started = time.monotonic()
    with open_sandbox(config, run_id=f"check-{uuid.uuid4().hex[:8]}") as box:
        ready = time.monotonic() - started
        outcomes = run_checks(box)
    typer.echo(f"sandbox ready in {ready * 1000:.0f} ms ({box.info.image_id[:19]})")
    for name, failure, seconds in outcomes:
        verdict = "ok  " if failure is None else "FAIL"
        typer.echo(f"  {verdict} {name} ({seconds:.2f} s){'' if failure is None else ': ' + failure}")
    failed = [name for name, failure, _ in outcomes if failure is not None]
    if failed:
        raise IseError(f"{len(failed)} of {len(outcomes)} sandbox checks failed: {', '.join(failed)}")
    typer.echo(f"all {len(outcomes)} checks passed")


@app.command()
def gc(
    all_: Annotated[
        bool, typer.Option("--all", help="Remove every ise sandbox container, also those of live runs.")
    ] = False,
) -> None:
    """Remove sandbox containers left behind by runs whose process is gone."""
    from ise.sandbox.docker_api import shared_api
    from ise.sandbox.lifecycle import reap_orphans

    removed = reap_orphans(shared_api(), everything=all_)
    typer.echo(f"removed {len(removed)} container(s){': ' + ', '.join(removed) if removed else ''}")
