"""Small stdlib-only Python programs that ise runs inside the sandbox with `python3 -c` (read as text, never imported
by ise itself). Each reads one JSON request of exactly argv[1] bytes from stdin and prints one JSON object."""

from importlib import resources


def source(name: str) -> str:
    """The text of incontainer/<name>.py, to pass to `python3 -c`."""
    return resources.files(__package__).joinpath(f"{name}.py").read_text(encoding="utf-8")
