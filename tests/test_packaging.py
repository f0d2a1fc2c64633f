"""Layering and packaging facts: racing/ stands alone; the CLI and presets ship."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_racing_imports_without_gymnasium_torch_or_ray():
    code = (
        "import sys, importlib, pkgutil, racing\n"
        "for m in pkgutil.iter_modules(racing.__path__):\n"
        "    importlib.import_module('racing.' + m.name)\n"
        "heavy = [n for n in ('gymnasium', 'torch', 'ray', 'stable_baselines3', 'pettingzoo', 'pygame', 'matplotlib')"
        " if n in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_vehicle_presets_ship_with_the_package():
    from racing.vehicle import PRESET_DIR, list_presets

    assert {"gt3", "road"} <= set(list_presets())
    assert (ROOT / "configs" / "vehicles").resolve() == Path(PRESET_DIR).resolve()


def test_cli_help_lists_commands(capsys):
    from racing.cli import main

    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    for cmd in ("tracks", "demo"):
        assert cmd in out


def test_demo_laps_a_builtin_circuit(capsys):
    from racing.cli import main

    assert main(["demo", "--track", "oval", "--laps", "1"]) == 0
    out = capsys.readouterr().out
    assert "lap 1:" in out and "valid" in out


def test_demo_rejects_bad_arguments(capsys):
    from racing.cli import main

    assert main(["demo", "--laps", "0"]) == 2
    assert "--laps must be >= 1" in capsys.readouterr().err
    assert main(["demo", "--vehicle", "tank"]) == 2
    assert "unknown vehicle 'tank'" in capsys.readouterr().err
