"""File tools follow symlinks that stay inside the allowed roots, directories included (real Docker backend)."""

from __future__ import annotations

import pytest
from execute_support import docker_engine  # noqa: F401  (a fixture, requested by name)

from ise.config import load_config
from ise.sandbox.base import FileToolError
from ise.sandbox.provider import open_provider

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]


def test_list_dir_and_read_file_through_a_symlink_inside_the_workspace() -> None:
    with open_provider(load_config([]).sandbox, run_id="test-links") as sandboxes, sandboxes("user") as box:
        box.run("mkdir -p data/v2 && echo hi > data/v2/a.txt && ln -s data/v2 current && ln -s /etc outside")
        assert [e.path for e in box.list_dir("current")] == ["/workspace/data/v2/a.txt"]  # where it really is
        assert box.read_file("current/a.txt") == "hi\n"
        with pytest.raises(FileToolError, match="outside the allowed directories"):
            box.list_dir("outside")
