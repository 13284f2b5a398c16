"""A knowledge-base corpus for the Confluence test server, with questions whose answer page
is known (used by `benchmarks.kb_retrieval`).

Each page documents one made-up component (a unique name such as "Velmorix"): an
overview, configuration, operations and troubleshooting section of fact sentences, then
the test server's own generated content (`confluence_pages.generate_body`: tables, code
macros, panels, lists) as its reference part. Facts come from shared vocabularies, so pages
look alike except for their component and the combination of details - like a real
runbook space. Half of the fact sentences name the component; the other half say "the
service", as documentation does once the page title has named it.

A question rephrases one fact without its answer ("How often is the signing key of
Velmorix rotated?" for "The Velmorix signing key is rotated every 30 days."), so it shares
the component, the subject and a verb with its sentence, never the answer itself.
Everything is seeded by page number: the same corpus and questions every run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from html import escape

from deployments.sandbox.confluence_pages import generate_body, page_title

SYLLABLES = (
    "vel mor ix qua tra nel dor ka zen fi lum bar sto rio gal pen tur vex ol mi "
    "cra sun dal hex ory bel tas nov pri"
).split()
OBJECTS = (
    "signing key|api token|database password|tls certificate|session cache|audit log|"
    "event queue|search index|backup snapshot|feature flag|rate limit|worker pool|"
    "message broker|config bundle|access policy|metrics exporter|job scheduler|"
    "image registry|dns record|webhook secret"
).split("|")
TEAMS = (
    "payments platform identity storage networking billing search observability "
    "security data mobile checkout logistics messaging"
).split()
STORES = "postgres redis cassandra kafka elasticsearch s3 dynamodb clickhouse".split()
REGIONS = "frankfurt dublin virginia oregon tokyo sydney montreal singapore".split()
RUNBOOKS = (
    "drain-and-restart rolling-reload failover-promote cache-flush reindex "
    "rotate-credentials scale-out quarantine"
).split()
UNITS = ("days", "hours", "minutes", "weeks")


@dataclass(frozen=True)
class Fact:
    """One fact sentence of a page and the question that asks for it."""

    section: str
    sentence: str
    question: str


@dataclass(frozen=True)
class CorpusPage:
    number: int
    space: str
    title: str
    component: str
    body: str  # Confluence storage format
    facts: tuple[Fact, ...]


def component_name(number: int) -> str:
    """A unique made-up name per page number (three syllables, mixed radix)."""
    n = len(SYLLABLES)
    parts = [SYLLABLES[(number * 7 + 3) % n], SYLLABLES[(number // n) % n]]
    parts.append(SYLLABLES[(number // (n * n) + number) % n])
    return "".join(parts).capitalize() + str(number // (n * n * n) or "")


def _facts(rng: random.Random, name: str) -> list[Fact]:
    """Fact sentences (and their questions), one template per kind, random details."""
    obj, obj2, obj3, obj4 = rng.sample(OBJECTS, 4)
    team, store, region, runbook = (
        rng.choice(TEAMS),
        rng.choice(STORES),
        rng.choice(REGIONS),
        rng.choice(RUNBOOKS),
    )
    every, unit, limit = rng.randint(2, 90), rng.choice(UNITS), rng.randint(100, 9000)
    subject = [name if rng.random() < 0.5 else "the service" for _ in range(4)]
    return [
        Fact(
            "Overview",
            f"{subject[0].capitalize()} keeps its {obj} in the {store} cluster in {region}.",
            f"Where does {name} keep its {obj}?",
        ),
        Fact(
            "Configuration",
            f"The {obj2} of {subject[1]} is rotated every {every} {unit} by the {team} team.",
            f"How often is the {obj2} of {name} rotated?",
        ),
        Fact(
            "Operations",
            f"When the {obj3} backlog of {subject[2]} exceeds {limit} items, the {team} "
            "on-call engineer is paged.",
            f"When is the on-call engineer paged about the {obj3} backlog of {name}?",
        ),
        Fact(
            "Troubleshooting",
            f"If the {obj4} of {subject[3]} stops responding, run the {runbook} runbook "
            f"and wait for the {obj4} health check.",
            f"Which runbook fixes {name} when its {obj4} stops responding?",
        ),
    ]


def corpus_page(space: str, number: int, reference_bytes: int = 3000) -> CorpusPage:
    """Page `number` of `space`: the component's facts, then generated reference content."""
    rng = random.Random(number * 104_729 + 17)
    name = component_name(number)
    title = f"{name} service guide ({page_title(space, number)})"
    facts = _facts(rng, name)
    parts = [f"<p>This page describes {escape(name)}, owned by the platform group.</p>"]
    for fact in facts:
        parts.append(f"<h2>{fact.section}</h2>")
        filler = " ".join(rng.choice(TEAMS + STORES) for _ in range(10))
        parts.append(f"<p>{escape(fact.sentence)} It also relates to {escape(filler)}.</p>")
    parts.append("<h2>Reference</h2>")
    parts.append(generate_body(space, number, [title], reference_bytes))
    return CorpusPage(number, space, title, name, "\n".join(parts), tuple(facts))


def corpus(spaces: list[str], pages: int, reference_bytes: int = 3000) -> list[CorpusPage]:
    """`pages` pages spread over `spaces` (page numbers are unique across spaces)."""
    return [corpus_page(spaces[n % len(spaces)], n, reference_bytes) for n in range(pages)]


def sample_questions(pages: list[CorpusPage], count: int, seed: int = 7) -> list[tuple[str, int]]:
    """`count` (question, page index) pairs: distinct facts drawn with a fixed seed."""
    rng = random.Random(seed)
    pairs = [(fact.question, i) for i, page in enumerate(pages) for fact in page.facts]
    return rng.sample(pairs, min(count, len(pairs)))
