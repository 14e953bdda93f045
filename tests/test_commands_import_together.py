"""The experiments modules the tests import run in one pytest process, so their absl flags must not
collide (two modules defining --workdir fail with DuplicateFlagError, but only when both are
imported, which depends on test order). This imports all of them at once, in a fresh process,
so a collision fails here every time instead of now and then elsewhere."""
import pathlib
import re
import subprocess
import sys

TESTS = pathlib.Path(__file__).parent
IMPORTED = re.compile(r"from experiments(?:\.(\w+))? import (\w+)|import experiments\.(\w+)")


def imported_commands() -> set:
    names = set()
    for path in TESTS.glob("*.py"):
        for dotted, name, plain in IMPORTED.findall(path.read_text()):
            names.add(dotted or plain or name)
    return names


def test_the_commands_the_tests_import_can_be_imported_together():
    names = sorted(imported_commands())
    assert "cli" in names  # the pattern still finds the imports
    code = "; ".join(f"import experiments.{n}" for n in names)
    done = subprocess.run([sys.executable, "-c", code], cwd=TESTS.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

