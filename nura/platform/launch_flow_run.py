"""The flow-run command of `nura up`'s work pool: hand the run to the preloader, or run it.

    python -m nura.platform.launch_flow_run        # what the process worker starts per run

Prefect's process worker starts one `python -m prefect.engine` per flow run, and each
one imports Prefect and the flow's modules again: ~4-6 s of CPU here, which on two cores
is most of the time between "submitted" and "running". When NURA_FLOW_RUN_PRELOADER names
the socket of a running preloader (nura/platform/preloader.py, started by `nura up`), this
process sends it its argv, environment, working directory and stdin/stdout/stderr; the
preloader forks a child that has all of that imported already and runs the engine there.
This process stays the run's process for the worker: it forwards signals to the child and
exits with the child's exit status. Without a preloader it simply becomes
`python -m prefect.engine`, so the command is safe on any machine.

Standard library only, and nothing imported from the project: it must start in ~30 ms.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

ENV = "NURA_FLOW_RUN_PRELOADER"


def _exec_engine() -> None:
    argv = [sys.executable, "-m", "prefect.engine", *sys.argv[1:]]
    os.execv(sys.executable, argv)  # noqa: S606 - our interpreter, fixed arguments


def main() -> None:
    path = os.environ.get(ENV)
    if not path:
        _exec_engine()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)  # type: ignore[arg-type]
    except OSError:
        sock.close()
        _exec_engine()  # no preloader (stopped, other machine): the plain engine
    payload = json.dumps(
        {"argv": ["prefect.engine", *sys.argv[1:]], "env": dict(os.environ), "cwd": os.getcwd()}
    ).encode()
    socket.send_fds(sock, [struct.pack("!I", len(payload))], [0, 1, 2])
    sock.sendall(payload)

    def forward(signum: int, _frame: object) -> None:
        try:
            sock.sendall(f"kill {signum}\n".encode())
        except OSError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    buffer = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            print("nura: the flow-run preloader went away during the run", file=sys.stderr)
            sys.exit(1)
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            kind, _, value = line.decode().partition(" ")
            if kind == "exit":
                sys.exit(int(value))
            if kind == "signal":  # the child died of a signal: so do we, as the engine would
                signum = int(value)
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                sys.exit(128 + signum)


if __name__ == "__main__":
    main()
