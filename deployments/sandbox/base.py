"""What every stand-in server shares: a threaded loopback server and its command line."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Self


class LocalServer(ThreadingHTTPServer):
    """A stand-in's HTTP server: `.start()` serves on a background thread, `.url`, `.stop()`."""

    daemon_threads = True
    allow_reuse_address = True

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        threading.Thread(target=self.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def serve_main(
    description: str,
    default_port: int,
    make: Callable[[argparse.Namespace], LocalServer],
    banner: Callable[[LocalServer], str],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """`python -m deployments.sandbox.<name> --host H --port P [...]`: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    if add_arguments is not None:
        add_arguments(parser)
    server = make(parser.parse_args())
    print(banner(server), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
