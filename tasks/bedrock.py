"""Bedrock: one invocation through the model chain, and the cost artifact.

Prefect tasks around the functions of the `nura` package: the task is what a flow
calls (and what the Prefect UI shows as a task run); the work is the plain function.
"""

from prefect import task
from prefect.cache_policies import NO_CACHE

from nura.bedrock import invoke

invoke_bedrock = task(name="bedrock-invoke-model", cache_policy=NO_CACHE, log_prints=False)(
    invoke.invoke_bedrock
)
invoke_bedrock_sync = task(name="bedrock-invoke-model-sync", cache_policy=NO_CACHE)(
    invoke.invoke_bedrock_sync
)
publish_cost_artifact = task(name="bedrock-cost-artifact", cache_policy=NO_CACHE)(
    invoke.publish_cost_artifact
)

__all__ = ["invoke_bedrock", "invoke_bedrock_sync", "publish_cost_artifact"]
