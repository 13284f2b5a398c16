"""`external_services` section: AWS (Bedrock, S3, SES, CloudWatch), Confluence, Git, partners."""

from __future__ import annotations

from pydantic import Field

from nura.config.sections.aws import AwsSettings
from nura.config.sections.common import Section, ServiceSettings
from nura.config.sections.confluence import ConfluenceSettings
from nura.config.sections.git import GitSettings


class ExternalServices(Section):
    aws: AwsSettings = Field(default_factory=AwsSettings)
    confluence: ConfluenceSettings = Field(default_factory=ConfluenceSettings)
    git: GitSettings = Field(default_factory=GitSettings)
    slack: ServiceSettings = Field(default_factory=ServiceSettings)
    # Any other HTTP service (partners, internal APIs): name -> settings.
    partners: dict[str, ServiceSettings] = Field(default_factory=dict)
