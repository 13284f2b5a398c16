"""`nura up` as root in a shell whose PATH has no /usr/sbin (a new terminal, nothing
exported): the embedded PostgreSQL's system user is still created (a fresh machine's
`nura up` failed with "No such file or directory: 'useradd'")."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.skipif(
    os.name != "posix"
    or os.geteuid() != 0
    or shutil.which("useradd", path="/usr/sbin:/sbin") is None,
    reason="creates a system user: root with useradd only",
)


def _run(name: str) -> subprocess.CompletedProcess[str]:
    code = f"from nura.platform.processes import ensure_system_user; ensure_system_user({name!r})"
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_user_is_created_without_sbin_on_path_and_twice_is_fine() -> None:
    name = f"nura_t_{uuid.uuid4().hex[:8]}"
    try:
        first = _run(name)
        assert first.returncode == 0, first.stderr
        assert pwd.getpwnam(name).pw_shell == "/bin/bash"
        again = _run(name)  # a second `nura up`: the user is there, nothing to do
        assert again.returncode == 0, again.stderr
    finally:
        subprocess.run(["/usr/sbin/userdel", name], capture_output=True, check=False)
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
