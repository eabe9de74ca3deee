"""A what-if (dry run) of inference: today's answer to a past turn, nothing published and no
cache entry written; the same fakes as the inference use-case tests. No network."""

from __future__ import annotations

from taskpilot.contracts.inference import ReplyGenerated, ReplyWhatIf, Turn
from tests.unit.test_inference_service import HOURS, answer, build


def what_if(text: str) -> ReplyWhatIf:
    return ReplyWhatIf(
        tenant_id="aurora",
        correlation_id="what-if:wamid.1",
        conversation_id="c",
        turn_id="wamid.1",
        lead="346",
        text=text,
        history=[Turn(role="lead", text="hola"), Turn(role="assistant", text="¡Hola!")],
    )


async def test_a_model_answer_today_is_returned_but_neither_published_nor_cached() -> None:
    rig = build()
    assert rig.model is not None
    rig.model.queue("L2", rig.model.text("L2", answer("A full colour is 60 €.")))

    now = await rig.service.what_if(what_if("How much is a full colour?"))

    assert (now.text, now.tier, now.model, now.cache_hit) == (
        "A full colour is 60 €.",
        "L2",
        "scripted-l2",
        False,
    )
    assert now.error is None and now.tool_calls == []
    assert rig.bus.of(ReplyGenerated) == [] and len(rig.store) == 0


async def test_a_grounded_faq_is_answered_at_level_one_as_for_a_lead() -> None:
    rig = build(models=False)
    rig.bus.hits = [HOURS]

    now = await rig.service.what_if(what_if("when do you open?"))

    assert (now.text, now.tier, now.source) == ("9:00 to 19:00.", "L1", "faq")
    assert rig.bus.published == []


async def test_an_answer_cached_for_leads_is_what_they_would_get_today() -> None:
    rig = build()
    assert rig.model is not None
    rig.model.queue("L2", rig.model.text("L2", answer("Yes, cards too.")))
    await rig.ask("Do you take cards?")

    now = await rig.service.what_if(what_if("do you take cards"))

    assert (now.text, now.cache_hit) == ("Yes, cards too.", True)
    assert len(rig.model.requests) == 1
