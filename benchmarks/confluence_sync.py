"""Benchmark: Confluence -> S3 sync (full + incremental) against LangChain's ConfluenceLoader.

    python -m benchmarks.confluence_sync [--pages 3000] [--latency-ms 20] [--skip-baseline]
        [--rate-pages 750] [--rate-per-minute 30]

Starts the Confluence test server (3 spaces, ~10 KB of storage XHTML a page, 20 ms per
request) and moto, each in its own process (they must not share our GIL); uses
PREFECT_API_URL if set, else a temporary Prefect server on PostgreSQL. Runs a full sync
through the `confluence-sync` flow (S3 writes included), touches 1 % of the pages, runs an
incremental sync, and loads the same spaces with LangChain's `ConfluenceLoader`
(`keep_markdown_format=True`, `max_pages` >= the page count) as the baseline.
The main runs configure a Confluence rate limit of 600,000/min, so the sync's own speed
is measured. A second run then syncs a `--rate-pages` site (a new test server and
bucket) at the seed's default limit, 30 requests a minute: there the calls are the time.
LangChain's loader has no rate limiter, so its time at that limit is computed from the
requests it made to the same site (calls / limit), not measured. Last line: one JSON
object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from tests.support.servers import PrefectServer, free_port, temp_database, wait_http

SPACES = ["TECH", "DOCS", "ARCH"]
EMAIL, TOKEN = "bot@example.com", "sandbox-token"


@contextlib.contextmanager
def process(
    args: list[str], ready_url: str, timeout: float = 180
) -> Iterator[subprocess.Popen[bytes]]:
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(ready_url, timeout, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def prefect_api() -> Iterator[int | None]:
    """A Prefect API for the flow runs; yields the server's pid when it is ours."""
    if os.environ.get("PREFECT_API_URL"):
        yield None
        return
    with temp_database("nura_bench_prefect") as db:
        server = PrefectServer(db).start()
        os.environ["PREFECT_API_URL"] = server.api_url
        try:
            yield server.proc.pid if server.proc is not None else None
        finally:
            server.stop()
            os.environ.pop("PREFECT_API_URL", None)


def stats(url: str) -> int:
    return int(httpx.get(f"{url}/_stats").json().get("requests", 0))


def convert_ms_per_page(url: str, sample: int = 150) -> float:
    """Single-core conversion cost of one page (our walker), on pages of the test site."""
    from nura.confluence.markdown import storage_to_markdown

    auth = (EMAIL, TOKEN)
    space_id = httpx.get(f"{url}/wiki/api/v2/spaces", params={"keys": "TECH"}, auth=auth).json()[
        "results"
    ][0]["id"]
    pages = httpx.get(
        f"{url}/wiki/api/v2/spaces/{space_id}/pages",
        params={"limit": sample, "body-format": "storage"},
        auth=auth,
        timeout=60,
    ).json()["results"]
    bodies = [p["body"]["storage"]["value"] for p in pages]
    started = time.process_time()
    for body in bodies:
        storage_to_markdown(body, base_url=url, space="TECH", page_id="1")
    ours = (time.process_time() - started) * 1000 / max(1, len(bodies))
    from markdownify import markdownify

    started = time.process_time()
    for body in bodies:
        markdownify(body, heading_style="ATX")
    theirs = (time.process_time() - started) * 1000 / max(1, len(bodies))
    print(f"markdownify (the baseline's converter): {theirs:.2f} ms/page on the same pages")
    return ours


def baseline(url: str, pages: int) -> tuple[float, int]:
    """LangChain's ConfluenceLoader as users get it (restriction lookup per page included)."""
    warnings.filterwarnings("ignore")
    from langchain_community.document_loaders import ConfluenceLoader

    started = time.perf_counter()
    docs = 0
    for space in SPACES:
        loader = ConfluenceLoader(
            url=f"{url}/wiki",
            username=EMAIL,
            api_key=TOKEN,
            space_key=space,
            keep_markdown_format=True,
            max_pages=pages,
            limit=100,
        )
        docs += len(loader.load())
    return time.perf_counter() - started, docs


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (Linux /proc; 0.0 where there is none)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_now(servers: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far: this process, its finished children (the conversion processes
    of a flow run are joined when it ends), and each server process."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "sync": time.process_time(),
        "conversion": children.ru_utime + children.ru_stime,
        **{name: cpu_seconds(pid) for name, pid in servers.items()},
    }


def write_config(
    work: Path, cf_url: str, moto_url: str, bucket: str, rate: float, conc: int
) -> None:
    config = {
        "external_services": {
            "aws": {
                "endpoint_url": moto_url,
                "s3": {"bucket_name": bucket, "rate_limit_per_minute": 600000},
            },
            "confluence": {
                "base_url": cf_url,
                "rate_limit_per_minute": rate,
                "spaces": SPACES,
                "credentials_block": "nura-bench-none",
                "concurrency": conc,
            },
        }
    }
    (work / "integrations.yaml").write_text(yaml.safe_dump(config))


def baseline_calls(url: str, pages: int) -> int:
    """Requests LangChain's loader makes to load `url`'s spaces."""
    before = stats(url)
    baseline(url, pages)
    return stats(url) - before


def rate_limited_run(
    args: argparse.Namespace, work: Path, moto_url: str
) -> dict[str, float | int | None]:
    """A full sync of a `--rate-pages` site at `--rate-per-minute` (see the docstring)."""
    from flows.confluence_sync import confluence_sync
    from nura.core.runtime import reset_runtime

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "deployments.sandbox.confluence_server", "--port", str(port),
        "--pages", str(args.rate_pages), "--spaces", ",".join(SPACES),
        "--latency-ms", str(args.latency_ms),
    ]  # fmt: skip
    with process(cmd, f"{url}/_stats"):
        write_config(work, url, moto_url, "nura-bench-kb-rate", args.rate_per_minute, 8)
        reset_runtime()
        calls0 = stats(url)
        started = time.perf_counter()
        result = confluence_sync(spaces=SPACES)
        seconds = time.perf_counter() - started
        calls = stats(url) - calls0
        stored = sum(r["created"] + r["updated"] + r["unchanged"] for r in result.values())
        print(
            f"at {args.rate_per_minute:g}/min: full sync of {stored} pages in {seconds:.1f} s, "
            f"{calls} API calls",
            flush=True,
        )
        theirs = None if args.skip_baseline else baseline_calls(url, args.rate_pages)
    out: dict[str, float | int | None] = {
        "rate_per_minute": args.rate_per_minute,
        "rate_pages": stored,
        "rate_full_api_calls": calls,
        "rate_full_s": round(seconds, 1),
        "rate_baseline_api_calls": theirs,
        "rate_baseline_s_computed": None,
    }
    if theirs is not None:
        computed = theirs / args.rate_per_minute * 60
        out["rate_baseline_s_computed"] = round(computed, 1)
        print(
            f"at {args.rate_per_minute:g}/min: LangChain ConfluenceLoader makes {theirs} calls "
            f"for the same site: {computed / 60:.1f} min at that limit (computed from its "
            "call count: it has no rate limiter of its own)",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--rate-pages", type=int, default=750, help="pages of the 30/min run")
    parser.add_argument("--rate-per-minute", type=float, default=30.0)
    parser.add_argument("--skip-rate-run", action="store_true")
    args = parser.parse_args()

    cf_port, moto_port = free_port(), free_port()
    cf_url, moto_url = f"http://127.0.0.1:{cf_port}", f"http://127.0.0.1:{moto_port}"
    work = Path(tempfile.mkdtemp(prefix="nura-bench-cf-"))
    write_config(work, cf_url, moto_url, "nura-bench-kb", 600000, args.concurrency)
    os.environ.update(
        NURA_CONFIG=str(work / "integrations.yaml"),
        NURA_STORE_URL=f"sqlite:///{work / 'nura.db'}",
        CONFLUENCE_EMAIL=EMAIL,
        CONFLUENCE_API_TOKEN=TOKEN,
        AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "bench"),
        AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "bench"),
        AWS_DEFAULT_REGION="us-east-1",
        PREFECT_LOGGING_LEVEL=os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    )
    moto_bin = str(Path(sys.executable).with_name("moto_server"))
    server_cmd = [
        sys.executable, "-m", "deployments.sandbox.confluence_server", "--port", str(cf_port),
        "--pages", str(args.pages), "--spaces", ",".join(SPACES),
        "--latency-ms", str(args.latency_ms),
    ]  # fmt: skip
    with (
        process(server_cmd, f"{cf_url}/_stats") as confluence,
        process(
            [moto_bin, "-H", "127.0.0.1", "-p", str(moto_port)], f"{moto_url}/moto-api/"
        ) as moto,
        prefect_api() as prefect_pid,
    ):
        load = os.getloadavg()[0]
        convert_ms = convert_ms_per_page(cf_url)
        print(f"conversion: {convert_ms:.2f} ms/page (one core, CPU time)", flush=True)
        # Imported before the clock starts, as the baseline's loader is.
        from flows.confluence_sync import confluence_sync

        servers = {"moto": moto.pid, "confluence server": confluence.pid}
        if prefect_pid is not None:
            servers["prefect server"] = prefect_pid
        calls0 = stats(cf_url)
        cpu0 = cpu_now(servers)
        started = time.perf_counter()
        full = confluence_sync(spaces=SPACES)
        full_s = time.perf_counter() - started
        cpu1 = cpu_now(servers)
        full_calls = stats(cf_url) - calls0
        stored = sum(r["created"] + r["updated"] + r["unchanged"] for r in full.values())
        print(f"full sync: {stored} pages in {full_s:.1f} s, {full_calls} API calls", flush=True)
        per_page = {k: (cpu1[k] - cpu0[k]) * 1000 / max(1, stored) for k in cpu0}
        print(
            "full sync CPU, ms/page: "
            + ", ".join(f"{k} {v:.2f}" for k, v in per_page.items())
            + f"; total {sum(per_page.values()):.2f}",
            flush=True,
        )

        touched = 0
        for space in SPACES:
            body = {"space": space, "count": max(1, args.pages // 100 // len(SPACES))}
            touched += len(httpx.post(f"{cf_url}/_edit", json=body).json()["ids"])
        calls0 = stats(cf_url)
        started = time.perf_counter()
        incr = confluence_sync(spaces=SPACES)
        incr_s = time.perf_counter() - started
        incr_calls = stats(cf_url) - calls0
        changed = sum(r["updated"] + r["created"] for r in incr.values())
        print(
            f"incremental: {touched} touched, {changed} rewritten in {incr_s:.2f} s, "
            f"{incr_calls} API calls ({incr_s / full_s:.1%} of the time, "
            f"{incr_calls / max(1, full_calls):.1%} of the calls)",
            flush=True,
        )

        if args.skip_baseline:
            base_s, docs, base_calls = float("nan"), 0, 0
        else:
            cpu0 = cpu_now(servers)
            calls0 = stats(cf_url)
            base_s, docs = baseline(cf_url, args.pages)
            base_calls = stats(cf_url) - calls0
            cpu1 = cpu_now(servers)
            print(
                f"baseline ConfluenceLoader: {docs} documents in {base_s:.1f} s, "
                f"{base_calls} API calls",
                flush=True,
            )
            print(
                "baseline CPU, ms/page: "
                + ", ".join(
                    f"{k} {(cpu1[k] - cpu0[k]) * 1000 / max(1, docs):.2f}"
                    for k in ("sync", "confluence server")
                ),
                flush=True,
            )
        rate: dict[str, float | int | None] = {}
        if not args.skip_rate_run:
            rate = rate_limited_run(args, work, moto_url)
        load_after = os.getloadavg()[0]
        print(
            f"conditions: {os.cpu_count()} CPUs, load average {load:.1f} before / "
            f"{load_after:.1f} after, latency {args.latency_ms} ms/request, "
            f"concurrency {args.concurrency}",
            flush=True,
        )
    result = {
        "bench": "confluence_sync",
        "pages": stored,
        "full_s": round(full_s, 2),
        "pages_per_s": round(stored / full_s, 1),
        "convert_ms_per_page": round(convert_ms, 2),
        "incremental_s": round(incr_s, 2),
        "full_api_calls": full_calls,
        "incremental_api_calls": incr_calls,
        "baseline": "langchain ConfluenceLoader",
        "baseline_s": round(base_s, 2),
        "baseline_api_calls": base_calls,
        "speedup": round(base_s / full_s, 1),
        **rate,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
