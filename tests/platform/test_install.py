"""`pip install .` (not editable) installs one top-level package, `nura`, and its console
script; the installed CLI works from any directory, and finds the project by prefect.yaml.

The wheel is installed into a fresh virtualenv whose only other path is the test
environment's site-packages (for the dependencies, which a real install downloads).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("install")
    # A copy: setuptools builds in ./build, whose leftovers would end up in the wheel.
    source = work / "source"
    shutil.copytree(
        PROJECT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", ".nura", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(work / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (work / "dist").glob("nura_integrations-*.whl")
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Dependencies from the test environment, after the new venv's own site-packages.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
        + [str(wheel)],
        check=True,
        capture_output=True,
    )
    return wheel, env_dir


def test_the_wheel_holds_one_top_level_package(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"nura"}
    assert "nura/config/integrations.yaml" in names  # the defaults are package data
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "nura = nura.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _nura(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NURA_", "PYTHON"))}
    return subprocess.run(
        [str(env_dir / "bin" / "nura"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_installed_cli_runs_outside_the_project(installed, tmp_path: Path) -> None:
    _, env_dir = installed
    helped = _nura(env_dir, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "bootstrap" in helped.stdout
    checked = _nura(env_dir, "config", "check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "confluence" in checked.stdout
    imported = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", "import nura; print(nura.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(env_dir) in imported.stdout  # the wheel's copy, not the project's


def test_project_commands_need_the_project_and_say_so(installed, tmp_path: Path) -> None:
    _, env_dir = installed
    outside = _nura(env_dir, "bootstrap", cwd=tmp_path)
    assert outside.returncode == 2
    assert "prefect.yaml" in outside.stderr and "Traceback" not in outside.stderr
    status = _nura(env_dir, "--project", str(PROJECT), "status", cwd=tmp_path)
    assert "Traceback" not in status.stderr + status.stdout
