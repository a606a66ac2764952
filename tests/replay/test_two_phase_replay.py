"""Two-phase delivery through the whole runtime (App, batcher, model stage, scoring, dispatch, sinks) on recorded
answers (the replay backend's describe "deferred"): the alert opens on verdicts alone and its explanation
follows in an `update` event with the description text."""

from __future__ import annotations

from corevad.benchmarks import VideoGT
from corevad.models import ReplayBackend
from corevad_stream.replay import frameless_inputs, run_replay
from corevad_stream.sinks.memory import MemorySink

FIGHT = "Two men fight by the counter."


async def test_the_description_follows_the_alert_in_an_update_with_its_text() -> None:
    answers = (["Normal scenes.\nAn empty shop."] * 6 + [f"Anomalous scenes.\n{FIGHT}"] * 6
               + ["Normal scenes.\nAn empty shop."] * 6)
    gt = VideoGT(name="shop", cls="Fighting", frames=30 * len(answers), spans=((180, 360),))
    sink = MemorySink()
    backend = ReplayBackend({"shop": answers}, describe="deferred")
    # smooth_length 1 and no LRC: a score is final at once, before its description can arrive. One segment per
    # batch: each batch's description pass ends before the next batch's verdicts, so the alert (which closes on
    # later normal verdicts) has every description by its end; with bigger batches a batch's verdicts could close
    # the alert before that batch's descriptions come (they are then not added to the ended alert).
    await run_replay(frameless_inputs([gt]), backend=backend, sinks=[sink], concurrency=1,
                     runtime={"max_batch": 1, "max_wait_s": 0.0, "max_pending_per_camera": 32},
                     refinement={"smooth_length": 1, "lrc": False},
                     alerts={"open_threshold": 0.9, "close_threshold": 0.5, "close_after_s": 2.0})
    events = [m.payload for m in sink.of("events")]
    assert backend.deferred == 6
    new = next(e for e in events if e["type"] == "new")
    assert new["after"]["explanation"] == [] and new["after"]["descriptions_pending"] >= 1
    updates = [e for e in events if e["type"] == "update"]
    assert updates and FIGHT in updates[0]["after"]["explanation"]
    end = next(e for e in events if e["type"] == "end")
    assert end["after"]["explanation"] == [FIGHT] and "descriptions_pending" not in end["after"]
    # The scores went out on the verdict lines: no score message carries the description.
    assert all(m.payload.get("description", "") == "" for m in sink.of("score"))
    # The retained alert follows the updates too.
    assert FIGHT in sink.of("alert")[-1].payload["explanation"]
