"""The two README commands' plumbing: pins agree, CI runs `make test`, the CLI is installed."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(specs: list[str]) -> dict[str, str]:
    pins = {}
    for spec in specs:
        name, _, version = spec.partition("==")
        pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return pins


def test_environment_yml_pins_the_same_versions_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dev = _pins(pyproject["project"]["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = _pins([s for s in pip_section if "==" in s])
    assert conda == dev
    assert all(dev.values()), "every dev dependency is pinned exactly"


def test_lock_file_agrees_with_the_pins():
    lock = _pins([line for line in (ROOT / "requirements-lock.txt").read_text().splitlines()
                  if line and not line.startswith("#")])
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for name, version in _pins(pyproject["project"]["optional-dependencies"]["dev"]).items():
        assert lock.get(name) == version, name


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_console_script_answers():
    out = subprocess.run([sys.executable, "-m", "polcore", "--help"], capture_output=True, text=True, check=True)
    assert "book" in out.stdout
