"""The ``mnist-lit`` entry point: its imports make no collector pass, and later passes skip what they made."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

from tests.conftest import env_with_repo_on_path

# Run in a fresh interpreter: the imports must be new, and freezing would also freeze this test session's objects.
PROBE = """
import gc, sys
import mnist_lit
assert 'lightning' not in sys.modules, 'import mnist_lit pulled in Lightning'
from mnist_lit.launch import TRAINING, import_frozen
passes = []
gc.callbacks.append(lambda phase, info: phase == 'start' and passes.append(info['generation']))
cli = import_frozen(TRAINING)
print(cli.__name__, gc.isenabled(), len(passes), gc.get_freeze_count(), len(gc.get_objects()))
gc.disable()
import_frozen('json')
print(gc.isenabled())
"""


def test_the_commands_imports_make_no_collector_pass_and_later_passes_skip_what_they_made() -> None:
    """Importing PyTorch, Lightning and torchmetrics makes hundreds of thousands of long-lived objects; the
    collector would walk them several times during the imports and at every full pass after."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env_with_repo_on_path(), check=True
    )
    imported, still_off = result.stdout.splitlines()
    module, enabled, passes, frozen, tracked = imported.split()
    assert (module, enabled, passes) == ("mnist_lit.cli", "True", "0")
    # gc.get_objects() is what a full pass walks: a few new objects, not the imports' hundreds of thousands.
    assert int(tracked) * 100 < int(frozen)
    assert still_off == "False", "a caller whose collector is off keeps it off"
    (script,) = entry_points(group="console_scripts", name="mnist-lit")
    assert script.value == "mnist_lit.launch:main"
