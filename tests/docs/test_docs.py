"""The README and docs/ stay true: generated reference current, links and paths existing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import Field, SecretStr

from nura.config.reference import REDACTED, _default, render_reference
from nura.config.sections.common import Section

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
REGENERATE = "python -m nura.config.reference > docs/configuration.md"

SETUP = (
    "python3 -m venv .venv && .venv/bin/pip install -U pip && "
    ".venv/bin/pip install -e '.[sandbox]' && .venv/bin/nura up"
)
TESTS = "bash tests/run.sh"

# [text](target) and ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# Project paths written in prose or code: a known top-level folder, not in the middle of a
# longer path or URL (`.nura/logs`, `/wiki/...`), up to the last word character.
PATH = re.compile(
    r"(?<![\w/.\-{}<])((?:nura|flows|tasks|blocks|deployments|benchmarks|tests|docs|config)"
    r"/[\w./\-]*\w)"
)


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_configuration_reference_is_generated_from_the_schema() -> None:
    written = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert written == render_reference(), (
        f"docs/configuration.md is out of date with the schema; regenerate it: {REGENERATE}"
    )


def test_secret_defaults_are_never_rendered() -> None:
    class WithSecret(Section):
        token: SecretStr = SecretStr("hunter2-do-not-print")
        nested: dict[str, SecretStr] = Field(
            default_factory=lambda: {"a": SecretStr("also-secret")}
        )

    assert _default(WithSecret.model_fields["token"]) == REDACTED
    nested = _default(WithSecret.model_fields["nested"])
    assert REDACTED in nested and "also-secret" not in nested
    assert "hunter2" not in render_reference()


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines (at most 300)"
    head = "\n".join(lines[:30])
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)\n```", head, flags=re.S)
    assert blocks[:2] == [SETUP, TESTS], (
        "README.md must open with the set-up-and-run command, then the test command"
    )


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_point_to_existing_files(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{_rel(page)} links to missing files: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_project_paths_in_docs_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = sorted(
        {
            path
            for path in (m.split(":", 1)[0] for m in PATH.findall(text))
            if not (ROOT / path).exists()
        }
    )
    assert not missing, f"{_rel(page)} names paths that do not exist: {missing}"
