"""The `kb-ask` flow: a question answered from the knowledge base, with numbered citations.

    python -m flows.kb_ask "How does the ingest worker retry?" --space TECH

Deployment `kb-ask` (on demand; `nura ask` runs it in the CLI process). The run retrieves
the top chunks (filtered by space, repository, labels), answers through the Bedrock model
chain (budgets, ledger) and publishes the Markdown artifact `kb-answer`: the answer, its
sources and cost. "Not in the knowledge base" is a completed run; a refused budget, bad
input or no model answering fail the run.
"""

from __future__ import annotations

import argparse

from prefect import flow

from nura.kb.ask import Answer
from tasks.kb_ask import ask_question, publish_answer_artifact


@flow(name="kb-ask", log_prints=True)
def kb_ask(
    question: str,
    space: str | None = None,
    repo: str | None = None,
    labels: list[str] | None = None,
    k: int | None = None,
) -> Answer:
    """Answer `question` from the knowledge base and publish the `kb-answer` artifact."""
    answer = ask_question(question, space=space, repo=repo, labels=labels, k=k)
    publish_answer_artifact(answer)
    where = "not in the knowledge base" if answer.not_found else f"{len(answer.citations)} cited"
    print(f"{where}; ${answer.cost_usd:f} ({answer.model_id or 'no model called'})")
    return answer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the kb-ask flow once.")
    parser.add_argument("question")
    parser.add_argument("--space", default=None)
    parser.add_argument("--repo", default=None)
    parser.add_argument("--label", action="append", default=None)
    args = parser.parse_args(argv)
    answer = kb_ask(args.question, space=args.space, repo=args.repo, labels=args.label)
    print(answer.text)


if __name__ == "__main__":
    main()
