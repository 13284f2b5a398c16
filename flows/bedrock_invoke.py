"""The `bedrock-invoke` flow: one prompt through the model chain, costed and recorded.

    python -m flows.bedrock_invoke "Summarise our deployment guide"
    python -m flows.bedrock_invoke "Hi" --model amazon.nova-pro-v1:0
    python -m flows.bedrock_invoke "Tell me a story" --stream   # tokens as they arrive

Deployment `bedrock-invoke` (on demand): parameters are `InvocationRequest` fields under
`request`. The run returns the result (text, model used, tokens, cost, every model's
outcome) and publishes the table artifact `bedrock-costs`. Other flows call the task
`nura.bedrock.invoke.invoke_bedrock` directly.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from prefect import flow

from nura.bedrock.models import AllModelsFailed, InvocationRequest, InvocationResult
from tasks.bedrock import invoke_bedrock, publish_cost_artifact

DEFAULT_PROMPT = "Summarise in two sentences what Nura Integrations does."


def _show(piece: str) -> None:
    """Print a streamed piece at once (stdout, not the run log: it is one answer)."""
    sys.stdout.write(piece)
    sys.stdout.flush()


@flow(name="bedrock-invoke", log_prints=True)
async def bedrock_invoke(
    request: InvocationRequest = InvocationRequest(prompt=DEFAULT_PROMPT),  # noqa: B008 - pydantic default is immutable here
) -> InvocationResult:
    """Invoke the configured model chain once and publish the run's cost table.

    With `api="converse_stream"` the answer is printed as it arrives."""
    streaming = request.api == "converse_stream"
    try:
        result = await invoke_bedrock(request, on_text=_show if streaming else None)
    except AllModelsFailed as exc:
        publish_cost_artifact([], failed=exc.outcomes)  # the run still shows what was tried
        raise
    publish_cost_artifact([result])
    label = " (fallback)" if result.fallback_used else ""
    print(
        f"{result.model_id}{label}: {result.input_tokens} in / {result.output_tokens} out "
        f"tokens, ${result.cost_usd:f}"
        + (" (cost unknown)" if result.cost_unknown else "")
        + (" (estimated: the stream was cut off)" if result.stop_reason == "cut" else "")
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the bedrock-invoke flow once.")
    parser.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT)
    parser.add_argument("--model", default=None, help="one model id (no fallback)")
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--system", default=None)
    parser.add_argument("--scope", default="default")
    parser.add_argument("--api", choices=["converse", "invoke_model"], default="converse")
    parser.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    args = parser.parse_args(argv)
    request = InvocationRequest(
        prompt=args.prompt,
        model=args.model,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        system=args.system,
        scope=args.scope,
        api="converse_stream" if args.stream else args.api,
    )
    result = asyncio.run(bedrock_invoke(request))
    print("" if args.stream else result.text)


if __name__ == "__main__":
    main()
