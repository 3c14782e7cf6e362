"""A command imports what it uses: ``eoscale --version`` and ``--help`` none of the engine,
rasterio, rich's progress, dask or scipy, ``validate`` not the engine's executor, dask nor
eoscale's operations; the public names stay importable from the packages, loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from cli_helpers import REPO

#: Runs the console script's ``main`` with the given arguments, then lists the modules imported.
PROBE = """\
import sys
from eoscale.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print("modules:", *sorted(sys.modules), sep="\\n", file=sys.stderr)
sys.exit(code)
"""


def imported_by(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``eoscale ARGS`` in a fresh interpreter; its result and the modules it imported."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    modules = done.stderr.rpartition("modules:\n")[2].split()
    return done, set(modules)


def heavy(modules: set[str], names: tuple[str, ...]) -> set[str]:
    """The modules among ``modules`` that are one of ``names`` or inside one."""
    return {module for module in modules
            if any(module == name or module.startswith(name + ".") for name in names)}


#: What the group's help and version must not import: each costs a new user's every command.
NOT_FOR_HELP = ("eoscale.engine.core", "eoscale.pipeline", "rich.progress", "rich.table", "dask",
                "distributed", "scipy", "rasterio", "numpy", "yaml")


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["-h"]])
def test_version_and_help_import_nothing_heavy(args):
    done, modules = imported_by(*args)
    assert done.returncode == 0, done.stderr
    assert "eoscale" in done.stdout
    assert "eoscale.cli.main" in modules  # the probe saw the command's imports
    assert heavy(modules, NOT_FOR_HELP) == set()
    assert not {"eoscale.cli.run", "eoscale.cli.info", "eoscale.cli.validate"} & modules


def test_validate_imports_what_validating_needs():
    done, modules = imported_by("validate", "pipelines/quickstart.yaml")
    assert done.returncode == 0, done.stderr
    assert "valid (1 input(s), 3 step(s), 2 output(s))" in done.stdout
    assert {"eoscale.pipeline.loader", "rasterio"} <= modules
    # nor eoscale's own operations (and their scipy): the quick start's callables are its own
    assert heavy(modules, ("eoscale.engine.core", "eoscale.cli.run", "rich.progress", "dask",
                           "distributed", "eoscale.ops")) == set()


def test_the_group_lists_each_command_with_its_own_summary(runner):
    """The summaries ``--help`` lists without importing the commands are the commands' own."""
    from eoscale.cli.main import COMMANDS, cli

    ctx = click.Context(cli, info_name="eoscale")
    for name, (_module, summary) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command.name == name
        assert " ".join(command.help.split("\n\n")[0].split()) == summary
    assert cli.get_command(ctx, "nonsense") is None
    result = runner.invoke(cli, ["nonsense"])
    assert result.exit_code == 2 and "No such command 'nonsense'" in result.output


def test_public_names_load_on_first_use():
    import eoscale
    import eoscale.engine
    from eoscale.api import load, plan, run, validate
    from eoscale.engine.core import Engine
    from eoscale.engine.tasks import tile_context
    from eoscale.engine.tiling import ExplicitLayout, TileLayout, Tiling

    assert (eoscale.load, eoscale.plan, eoscale.run, eoscale.validate) == (load, plan, run,
                                                                          validate)
    assert (eoscale.Engine, eoscale.Tiling, eoscale.tile_context) == (Engine, Tiling,
                                                                      tile_context)
    assert eoscale.engine.Plan is TileLayout and eoscale.engine.ExplicitPlan is ExplicitLayout
    for package in (eoscale, eoscale.engine):
        assert set(package.__all__) <= set(dir(package))
        for name in package.__all__:
            assert getattr(package, name) is not None
        with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
            package.nonsense  # noqa: B018
    namespace: dict = {}
    exec("from eoscale.engine import *", namespace)  # noqa: S102
    assert set(eoscale.engine.__all__) <= set(namespace)


def test_submodules_stay_reachable_from_the_packages():
    """``import eoscale`` brought ``eoscale.api`` with it, ``import eoscale.engine`` its modules;
    code that relied on it still runs (in a fresh interpreter, where nothing else imported them)."""
    probe = ("import eoscale, eoscale.engine\n"
             "assert eoscale.api.overrides and eoscale.engine.core.Engine is eoscale.Engine\n"
             "assert eoscale.pipeline.load_pipeline and eoscale.engine.shared.SharedRaster")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr


def test_imports_pause_the_garbage_collector_and_resume_it_as_it_was():
    import gc

    from eoscale.lazy import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block found it paused: it stays so
    assert gc.isenabled()
    with pytest.raises(ImportError), collector_paused():
        import eoscale_no_such_module  # noqa: F401
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # paused by someone else: left so
    finally:
        gc.enable()


def test_a_command_runs_with_the_collector_running_again():
    probe = PROBE.replace('print("modules:"', 'import gc; print("collector", gc.isenabled(), '
                          'file=sys.stderr)\nprint("modules:"')
    done = subprocess.run([sys.executable, "-c", probe, "validate", "pipelines/quickstart.yaml"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "collector True" in done.stderr
