"""The knowledge-base side of an erasure: S3 objects (every version) and manifest entries.

Which objects hold a subject:
- a Confluence page: the `key` of its entry in every space manifest under
  `external_services.confluence.manifest_prefix`, and any `{s3_prefix}/{space}/{id}.md`
  left without one (a page moved between spaces, a manifest lost);
- a Git file: `git/{owner}/{repo}/{branch}/{path}` on every branch (of the one repository
  when given), the layout `nura.git.ingest.PushEvent.key` writes.

In a versioned bucket a plain DeleteObject only adds a delete marker and keeps the data:
there every version and delete marker of the key is deleted by VersionId.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from nura import get_call_layer
from nura.config.schema import IntegrationsConfig
from nura.core.aws_clients import aws_client
from nura.kb import s3
from nura.retention.subject import Subject

GIT_PREFIX = "git/"


@dataclass
class KbFindings:
    objects: list[str] = field(default_factory=list)  # S3 keys of the documents
    manifests: dict[str, list[str]] = field(default_factory=dict)  # manifest key -> page ids
    versions: int = 0  # object versions and delete markers removed (versioned bucket)
    versioned: bool = False


def _call(operation: str, fn: Any, **kwargs: Any) -> Any:
    return get_call_layer().call("s3", operation, fn, **kwargs).value


def list_keys(prefix: str) -> Iterator[str]:
    """Every key under `prefix` (ListObjectsV2, page by page)."""
    client = aws_client("s3")
    kwargs: dict[str, Any] = {"Bucket": s3.knowledge_base().bucket, "Prefix": prefix}
    while True:
        page = _call("list_objects_v2", client.list_objects_v2, **kwargs)
        yield from (o["Key"] for o in page.get("Contents") or [])
        if not page.get("IsTruncated"):
            return
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def bucket_versioned() -> bool:
    """Versioning enabled or suspended (a suspended bucket still holds older versions)."""
    client = aws_client("s3")
    bucket = s3.knowledge_base().bucket
    answer = _call("get_bucket_versioning", client.get_bucket_versioning, Bucket=bucket)
    return answer.get("Status") in ("Enabled", "Suspended")


def _versions(key: str) -> list[str]:
    """Version ids of `key` itself (not of longer keys sharing the prefix), markers too."""
    client = aws_client("s3")
    kwargs: dict[str, Any] = {"Bucket": s3.knowledge_base().bucket, "Prefix": key}
    found: list[str] = []
    while True:
        page = _call("list_object_versions", client.list_object_versions, **kwargs)
        for item in [*(page.get("Versions") or []), *(page.get("DeleteMarkers") or [])]:
            if item["Key"] == key:
                found.append(item["VersionId"])
        if not page.get("IsTruncated"):
            return found
        kwargs["KeyMarker"] = page["NextKeyMarker"]
        kwargs["VersionIdMarker"] = page["NextVersionIdMarker"]


def delete_object(key: str, versioned: bool) -> int:
    """Delete `key` for good; the versions removed (0 in an unversioned bucket)."""
    if not versioned:
        s3.delete_document(key)
        return 0
    client = aws_client("s3")
    bucket = s3.knowledge_base().bucket
    versions = _versions(key)
    for version in versions:
        _call("delete_object", client.delete_object, Bucket=bucket, Key=key, VersionId=version)
    return len(versions)


# -- finding what holds a subject ------------------------------------------------------------
def _confluence(cfg: IntegrationsConfig, page_id: str, found: KbFindings) -> None:
    conf = cfg.external_services.confluence
    keys: set[str] = set()
    for manifest_key in list_keys(conf.manifest_prefix.strip("/") + "/"):
        data = s3.get_json(manifest_key)
        entry = (data or {}).get("pages", {}).get(page_id) if isinstance(data, dict) else None
        if entry is not None:
            found.manifests.setdefault(manifest_key, []).append(page_id)
            keys.add(str(entry["key"]))
    suffix = f"/{page_id}.md"
    keys.update(k for k in list_keys(conf.s3_prefix.strip("/") + "/") if k.endswith(suffix))
    found.objects = sorted(keys)


def _git(subject: Subject, found: KbFindings) -> None:
    for key in list_keys(GIT_PREFIX):
        parts = key.split("/", 4)  # git / owner / repo / branch / path
        if len(parts) < 5 or parts[4] != subject.value:
            continue
        if subject.repo is None or f"{unquote(parts[1])}/{parts[2]}" == subject.repo:
            found.objects.append(key)


def find(cfg: IntegrationsConfig, subject: Subject) -> KbFindings:
    found = KbFindings()
    if subject.kind == "confluence_page":
        _confluence(cfg, subject.value, found)
    elif subject.kind == "git_path":
        _git(subject, found)
    if found.objects:
        found.versioned = bucket_versioned()
    return found


def remove(found: KbFindings) -> None:
    """Drop the manifest entries, then the objects (every version if versioned). The
    manifest goes first: a sync running meanwhile then sees the page as new, never as
    stored with a document that is gone."""
    for manifest_key, page_ids in found.manifests.items():
        data = s3.get_json(manifest_key)
        if not isinstance(data, dict):
            continue
        for page_id in page_ids:
            data.get("pages", {}).pop(page_id, None)
        s3.put_json(manifest_key, data)
    for key in found.objects:
        found.versions += delete_object(key, found.versioned)
