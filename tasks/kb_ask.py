"""Knowledge-base answers: the Prefect tasks around `nura.kb.ask`."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from nura.kb import ask as _ask

ask_question = task(name="kb-ask-question", cache_policy=NO_CACHE)(_ask.ask)
publish_answer_artifact = task(name="kb-answer-artifact", cache_policy=NO_CACHE)(
    _ask.publish_answer_artifact
)

__all__ = ["ask_question", "publish_answer_artifact"]
