"""The command-line entry points keep freed heap memory; importing the library does not."""

import subprocess
import sys

import pytest


def test_mallopt_is_accepted_on_glibc():
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt: Linux only")
    from recbole_usr.malloc import keep_freed_memory

    assert keep_freed_memory() is True


def test_library_import_leaves_the_allocator_alone():
    # A process that only imports the package must not call mallopt: check by making the
    # call raise, which only an entry point would trigger.
    code = (
        "import recbole_usr.malloc as m\n"
        "m.keep_freed_memory = lambda: (_ for _ in ()).throw(SystemExit(3))\n"
        "import recbole_usr, recbole_usr.quick_start, recbole_usr.cli, recbole_usr.evaluate, recbole_usr.recommend\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=300).returncode == 0
