"""The ``mnist-lit`` entry point: imports without collector passes, and dispatches ``compare`` to its module."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

from tests.conftest import env_with_repo_on_path


def test_the_command_imports_without_collector_passes_and_leaves_the_collector_on() -> None:
    """The ``mnist-lit`` command's start (``mnist_lit.launch``): no cyclic-GC pass over the 400,000 objects the
    imports create, those objects frozen out of later passes, and the collector on again for the run."""
    probe = "\n".join(
        [
            "import gc, sys",
            "import mnist_lit",
            "assert 'lightning' not in sys.modules, 'import mnist_lit pulled in Lightning'",
            "from mnist_lit.launch import import_cli_frozen",
            "passes = []",
            "gc.callbacks.append(lambda phase, info: phase == 'start' and passes.append(info['generation']))",
            "cli = import_cli_frozen()",
            "print(cli.__name__, gc.isenabled(), len(passes), gc.get_freeze_count())",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env_with_repo_on_path(), check=True
    )
    module, enabled, passes, frozen = result.stdout.split()
    assert (module, enabled, passes) == ("mnist_lit.cli", "True", "0")
    assert int(frozen) > 100_000
    (script,) = entry_points(group="console_scripts", name="mnist-lit")
    assert script.value == "mnist_lit.launch:main"
