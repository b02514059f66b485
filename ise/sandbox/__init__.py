"""Isolated OS workspaces for trajectories.

- base.py: the Sandbox protocol and its records (the seam the stages code against; read its docstring).
- config.py: SandboxConfig, every hardening option and limit, and the `user` and `admin` profiles.
- provider.py: `open_provider` and `SandboxFactory`, what stages open sandboxes with (imports no backend).
- docker.py: the Docker backend, `open_sandbox`, `require_image`; its layers docker_container.py,
  docker_commands.py, docker_files.py; docker_api.py: the shared engine client; docker_pool.py: `SandboxPool`.
- channel.py: the host's end of the drivers that run commands, one `docker exec` socket each.
- lifecycle.py: labels, clean-up on exit and signals, the orphan reaper.
- engine.py / image.py: making sure an engine answers and the images exist (offline bootstrap included).
- conformance.py: the checks every backend must pass (`ise sandbox check`).
- incontainer/: stdlib Python programs run inside the sandbox (shell drivers, file tools, snapshot, seeding).
"""
