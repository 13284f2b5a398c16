"""`nura bootstrap`: make any Prefect server ready for Nura, idempotently.

Registers the block types, saves blocks from environment variables, creates/updates one
global concurrency limit per service from config, creates the process work pool and every
deployment of prefect.yaml with the schedules that config/integrations.yaml gives.
Running it twice changes nothing the second time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import yaml

from nura.config import IntegrationsConfig
from nura.errors import NuraError
from nura.platform.project import project_dir

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import DeploymentSchedule
    from prefect.client.schemas.schedules import IntervalSchedule


@dataclass
class DeploymentSpec:
    name: str
    entrypoint: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    interval_seconds: float | None = None

    @property
    def flow_module(self) -> str:
        return self.entrypoint.split(":", 1)[0].removesuffix(".py").replace("/", ".")


@dataclass
class BootstrapReport:
    blocks: list[str] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)
    work_pool: str = ""
    deployments: list[str] = field(default_factory=list)
    automations: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds


def config_intervals(cfg: IntegrationsConfig) -> dict[str, float]:
    """Schedules come from config, not from prefect.yaml's copies of the defaults."""
    redrive_minutes = cfg.webhooks.outgoing.dead_letters.redrive_interval_minutes
    return {
        "confluence-sync": cfg.external_services.confluence.sync_interval_hours * 3600,
        "health-monitor": cfg.health_monitoring.check_interval_minutes * 60,
        "webhook-redrive": redrive_minutes * 60,
        "retention": cfg.retention.interval_hours * 3600,
        "confluence-watch": cfg.external_services.confluence.watch.interval_seconds,
    }


def load_specs(cfg: IntegrationsConfig, path: Path | None = None) -> list[DeploymentSpec]:
    data = yaml.safe_load((path or project_dir() / "prefect.yaml").read_text())
    intervals = config_intervals(cfg)
    specs = []
    for d in data.get("deployments", []):
        yaml_interval = next(
            (s["interval"] for s in d.get("schedules") or [] if "interval" in s), None
        )
        specs.append(
            DeploymentSpec(
                name=d["name"],
                entrypoint=d["entrypoint"],
                description=d.get("description", ""),
                tags=list(d.get("tags") or []),
                parameters=dict(d.get("parameters") or {}),
                interval_seconds=intervals.get(d["name"], yaml_interval),
            )
        )
    return specs


def block_types() -> list[Any]:
    from prefect_aws import AwsCredentials, S3Bucket

    from nura.platform.blocks import NURA_BLOCKS, SlackWebhook

    return [*NURA_BLOCKS, AwsCredentials, S3Bucket, SlackWebhook]


async def register_and_save_blocks(blocks_to_save: list[tuple[str, Any]]) -> list[str]:
    """Register every block type (concurrently: one by one they took ~5 s of `nura up`
    under load), then save the given blocks one by one (Prefect's save is not safe to run
    concurrently: it answered 409 and then 404 for the same new name)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectAlreadyExists

    types = block_types()
    async with get_client() as client:
        results = await asyncio.gather(
            *(t.aregister_type_and_schema(client=client) for t in types), return_exceptions=True
        )
        for block_type, result in zip(types, results, strict=True):
            if isinstance(result, ObjectAlreadyExists):
                # two registrations (ours, or a server starting beside us) created the same
                # nested block type at once: now it exists, once more reads it
                await block_type.aregister_type_and_schema(client=client)
            elif isinstance(result, BaseException):
                raise result
    for name, block in blocks_to_save:
        await block.asave(name, overwrite=True)
    return [t.get_block_type_slug() for t in types] + [f"saved:{n}" for n, _ in blocks_to_save]


# Environment variable -> block it creates (name, factory). Only set variables create blocks.
def _env_blocks(env: Mapping[str, str]) -> list[tuple[str, Callable[[], Any]]]:
    from prefect_aws import AwsCredentials
    from pydantic import SecretStr

    from nura.notify.slack import slack_webhook_block
    from nura.platform.blocks import ConfluenceCredentials, GitProviderCredentials

    out: list[tuple[str, Callable[[], Any]]] = []
    if env.get("CONFLUENCE_BASE_URL") and env.get("CONFLUENCE_API_TOKEN"):
        out.append(
            (
                "confluence",
                lambda: ConfluenceCredentials(
                    base_url=env["CONFLUENCE_BASE_URL"],
                    email=env.get("CONFLUENCE_EMAIL"),
                    api_token=SecretStr(env["CONFLUENCE_API_TOKEN"]),
                ),
            )
        )
    if env.get("GIT_TOKEN"):
        out.append(
            (
                "git",
                lambda: GitProviderCredentials(
                    provider=env.get("GIT_PROVIDER", "github"),  # type: ignore[arg-type]
                    api_url=env.get("GIT_API_URL", "https://api.github.com"),
                    token=SecretStr(env["GIT_TOKEN"]),
                ),
            )
        )
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        out.append(
            (
                "nura-aws",
                lambda: AwsCredentials(
                    aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=SecretStr(env["AWS_SECRET_ACCESS_KEY"]),
                    region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
                ),
            )
        )
    if env.get("SLACK_WEBHOOK_URL"):
        out.append(("nura-slack", lambda: slack_webhook_block(env["SLACK_WEBHOOK_URL"])))
    return out


def env_blocks(env: Mapping[str, str] | None = None) -> list[tuple[str, Any]]:
    """The blocks the environment's variables describe, to save."""
    return [(name, make()) for name, make in _env_blocks(os.environ if env is None else env)]


def create_limits(cfg: IntegrationsConfig) -> list[str]:
    from nura.core.ratelimit import LimitSpec, _PrefectApi, ensure_limit

    api = _PrefectApi()
    names = []
    for policy in cfg.policies().values():
        ensure_limit(api, LimitSpec(policy.limit_name, policy.rate_limit_per_minute))
        names.append(policy.limit_name)
    return names


@dataclass
class LoadedFlow:
    spec: DeploymentSpec
    flow: Any
    schema: dict[str, Any]


def load_flows(specs: list[DeploymentSpec], report: BootstrapReport) -> list[LoadedFlow]:
    """Import every deployment's flow and build its parameter schema: local work only, so
    `nura up` runs it while the Prefect server is still starting."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    loaded = []
    for spec in specs:
        path = project_dir() / spec.entrypoint.split(":")[0]
        if not path.is_file():
            raise BootstrapError(f"deployment {spec.name}: entrypoint {spec.entrypoint} not found")
        flow: Any = load_flow_from_entrypoint(str(project_dir() / spec.entrypoint))
        loaded.append(LoadedFlow(spec, flow, parameter_schema(flow).model_dump_for_openapi()))
    return loaded


async def ensure_work_pool(cfg: IntegrationsConfig, flow_run_command: str | None = None) -> str:
    """The process work pool, with Prefect's default job template (as `prefect work-pool
    create --type process` makes it), created once. `flow_run_command` (from `nura up`:
    the preloader's launcher) becomes the template's default command, kept up to date."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    pool = cfg.platform.work_pool
    template = ProcessWorker.get_default_base_job_template()
    if flow_run_command:
        template["variables"]["properties"]["command"]["default"] = flow_run_command
    async with get_client() as client:
        try:
            await client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=template)
            )
        except ObjectAlreadyExists:
            if flow_run_command:
                existing = await client.read_work_pool(pool)
                if existing.base_job_template != template:
                    await client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))
    return pool


PENDING_RECOVERY = "nura-pending-recovery"


async def ensure_pending_recovery(cfg: IntegrationsConfig) -> str | None:
    """A Prefect automation that reschedules a flow run left Pending: its worker took it
    and died before the run started (nothing else moves such a run on; seen in the HA
    fault test). Proactive: `Pending` not followed by any other state of that run within
    `platform.pending_recovery_seconds` -> Scheduled, so a live worker takes it. Created
    or updated by name; 0 removes it."""
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    seconds = cfg.platform.pending_recovery_seconds
    async with get_client() as client:
        existing = await client.read_automations_by_name(PENDING_RECOVERY)
        if not seconds:
            for automation in existing:
                await client.delete_automation(automation.id)
            return None
        wanted = AutomationCore(
            name=PENDING_RECOVERY,
            description="Reschedules flow runs left Pending by a worker that died.",
            trigger=EventTrigger(
                match={"prefect.resource.id": "prefect.flow-run.*"},
                after={"prefect.flow-run.Pending"},
                expect={
                    f"prefect.flow-run.{state}"
                    for state in (
                        "Running",
                        "Completed",
                        "Failed",
                        "Crashed",
                        "Cancelled",
                        "Cancelling",
                        "Scheduled",
                        "Late",
                        "AwaitingRetry",
                        "Paused",
                    )
                },  # fmt: skip
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=seconds),
            ),
            actions=[
                ChangeFlowRunState(
                    state=StateType.SCHEDULED,
                    name="Rescheduled",
                    message=f"Pending for {seconds:g} s: its worker stopped before the run "
                    "started (nura-pending-recovery)",
                    force=True,
                )
            ],
        )
        if existing:
            await client.update_automation(existing[0].id, wanted)
            for extra in existing[1:]:
                await client.delete_automation(extra.id)
        else:
            await client.create_automation(wanted)
    return PENDING_RECOVERY


async def ensure_watch_automation() -> str | None:
    """The automation that runs `confluence-page-ingest` for the `confluence-watch` events
    (after the deployments: it names the ingest's id). Created or updated by name; None
    when the project deploys no page ingest (nothing for the events to run)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from nura.config.sections.webhooks import PAGE_INGEST
    from nura.confluence.watch import AUTOMATION, ingest_automation

    async with get_client() as client:
        try:
            ingest = await client.read_deployment_by_name(PAGE_INGEST)
        except ObjectNotFound:
            return None
        wanted = ingest_automation(ingest.id)
        existing = await client.read_automations_by_name(AUTOMATION)
        if existing:
            await client.update_automation(existing[0].id, wanted)
            for extra in existing[1:]:
                await client.delete_automation(extra.id)
        else:
            await client.create_automation(wanted)
    return AUTOMATION


async def apply_deployments(
    cfg: IntegrationsConfig, flows: list[LoadedFlow], report: BootstrapReport
) -> None:
    """Create or update every deployment; the flows first, then the deployments, each
    step's calls concurrently.

    A new deployment is created with its schedule. An existing one is updated with
    `update_deployment` (a PATCH that leaves its schedules and its `paused` flag alone:
    Prefect's `create_deployment` upserts, and its upsert deletes every schedule of the
    deployment), then its schedules are made to match config (`_sync_schedules`)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate, DeploymentUpdate
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.exceptions import ObjectNotFound

    pool = cfg.platform.work_pool
    pull = [{"prefect.deployments.steps.set_working_directory": {"directory": str(project_dir())}}]
    async with get_client() as client:
        names = sorted({item.flow.name for item in flows})
        ids = dict(
            zip(
                names,
                await asyncio.gather(*(client.create_flow_from_name(n) for n in names)),
                strict=True,
            )
        )

        async def apply(item: LoadedFlow) -> str:
            spec, flow = item.spec, item.flow
            wanted = (
                IntervalSchedule(interval=timedelta(seconds=spec.interval_seconds))
                if spec.interval_seconds
                else None
            )
            fields: dict[str, Any] = {
                "entrypoint": spec.entrypoint,
                "path": str(project_dir()),
                "work_pool_name": pool,
                "work_queue_name": "default",
                "parameters": spec.parameters,
                "parameter_openapi_schema": item.schema,
                "description": spec.description or flow.description,
                "tags": spec.tags,
                "pull_steps": pull,
                "enforce_parameter_schema": True,
            }
            try:
                existing = await client.read_deployment_by_name(f"{flow.name}/{spec.name}")
            except ObjectNotFound:
                schedules = (
                    [DeploymentScheduleCreate(schedule=wanted, active=True, slug=SCHEDULE_SLUG)]
                    if wanted is not None
                    else []
                )
                await client.create_deployment(
                    flow_id=ids[flow.name], name=spec.name, schedules=schedules, **fields
                )
            else:
                await client.update_deployment(existing.id, DeploymentUpdate(**fields))
                # The schedules as they are now, after the update (which leaves them).
                have = await client.read_deployment_schedules(existing.id)
                await _sync_schedules(client, existing.id, have, wanted)
            return f"{flow.name}/{spec.name}"

        report.deployments += await asyncio.gather(*(apply(item) for item in flows))


def wait_for_api(timeout: float) -> None:
    """Wait until the server PREFECT_API_URL names answers its health check."""
    from prefect.settings import PREFECT_API_URL

    from nura.platform.processes import WaitTimeout, answers_ok, wait_http

    url = f"{str(PREFECT_API_URL.value()).rstrip('/')}/health"
    try:
        wait_http(url, timeout, accept=answers_ok)
    except WaitTimeout as exc:
        raise BootstrapError(f"the Prefect API at {exc}") from exc


class BootstrapError(NuraError, RuntimeError):
    """The server to bootstrap cannot be reached."""


# The slug of the schedule bootstrap manages on each deployment (from config's interval).
SCHEDULE_SLUG = "nura-interval"


async def _sync_schedules(
    client: PrefectClient,
    deployment_id: UUID,
    have: list[DeploymentSchedule],
    wanted: IntervalSchedule | None,
) -> None:
    """Make a deployment's schedules `wanted` (one interval schedule, or none), in place.

    The schedule slugged SCHEDULE_SLUG is ours; without one, an unslugged interval
    schedule (as bootstrap made them before slugs) is adopted, its interval first. Ours
    gets the configured interval when it differs, and never its `active` flag: a schedule
    ops paused stays paused. Every other schedule is deleted (config owns the schedules).
    Nothing is called when the schedules already match."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate

    keep: DeploymentSchedule | None = None
    if wanted is not None:
        ours = [s for s in have if s.slug == SCHEDULE_SLUG]
        legacy = sorted(
            (s for s in have if s.slug is None and _interval(s) is not None),
            key=lambda s: _interval(s) != wanted.interval,
        )
        keep = next(iter(ours or legacy), None)
        if keep is None:
            await client.create_deployment_schedules(
                deployment_id,
                [DeploymentScheduleCreate(schedule=wanted, active=True, slug=SCHEDULE_SLUG)],
            )
        elif keep.slug != SCHEDULE_SLUG or _interval(keep) != wanted.interval:
            await client.update_deployment_schedule(
                deployment_id,
                keep.id,
                schedule=wanted if _interval(keep) != wanted.interval else None,
                slug=SCHEDULE_SLUG,
            )
    for schedule in have:
        if schedule is not keep:
            await client.delete_deployment_schedule(deployment_id, schedule.id)


def _interval(schedule: DeploymentSchedule) -> timedelta | None:
    return getattr(schedule.schedule, "interval", None)


def bootstrap(
    cfg: IntegrationsConfig,
    *,
    save_env: bool = True,
    wait_api: float = 0.0,
    extra_blocks: Callable[[IntegrationsConfig], list[tuple[str, Any]]] | None = None,
    flow_run_command: str | None = None,
) -> BootstrapReport:
    """Run every step against the server PREFECT_API_URL points at.

    The imports and parameter schemas come first, then (with `wait_api`) the wait for the
    server: `nura up` starts this while the server is still starting, so the two overlap.
    The work pool comes first once the server answers, so a worker can start meanwhile.
    """
    import asyncio
    import time

    import prefect.workers.process  # noqa: F401 - imported before the wait
    from prefect.deployments import run_deployment  # noqa: F401 - imported before the wait
    from prefect_aws import AwsCredentials  # noqa: F401 - imported before the wait

    import nura.platform.blocks  # noqa: F401 - imported before the wait

    report = BootstrapReport()
    last = time.monotonic()

    def step(name: str) -> None:
        nonlocal last
        now = time.monotonic()
        report.timings[name] = round(now - last, 2)
        last = now

    flows = load_flows(load_specs(cfg), report)
    step("import flows")
    if wait_api:
        wait_for_api(wait_api)
        step("wait for the API")
    report.work_pool = asyncio.run(ensure_work_pool(cfg, flow_run_command))
    step("work pool")
    recovery = asyncio.run(ensure_pending_recovery(cfg))
    if recovery:
        report.automations.append(recovery)
    step("automations")
    to_save = list(extra_blocks(cfg)) if extra_blocks is not None else []
    if save_env:
        to_save += env_blocks()
    report.blocks = asyncio.run(register_and_save_blocks(to_save))
    step("blocks")
    report.limits = create_limits(cfg)
    step("limits")
    from nura.bedrock.chain_check import bootstrap_lines  # LEGACY/missing models: skipped

    report.skipped += bootstrap_lines()
    step("bedrock models")
    asyncio.run(apply_deployments(cfg, flows, report))
    step("deployments")
    watch = asyncio.run(ensure_watch_automation())
    if watch is not None:
        report.automations.append(watch)
    step("watch automation")
    return report
