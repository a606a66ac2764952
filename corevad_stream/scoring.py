"""Per-camera causal scoring and alerting: model results in, messages out (synchronous, cheap).

Wraps corevad.causal.CausalScorer (LRC + sliding-window softmax refinement + causal Gaussian) and
corevad.alerts.AlertTracker for one camera, and turns what they return into Messages. Segments dropped
under overload simply never reach the scorer: it sees the camera's surviving segments in order. Segments
the model gave no valid answer for never reach it either: they are published with `score: null,
available: false` and the error, and an open alert waits for answers to resume (bounded by
alerts.max_unscored_s). The retained `state` is `unknown` until the first score and while the camera's
model is down with no alert open, and `disarmed` while the camera is not armed (corevad_stream.arming):
disarming flushes what the scorer held, ends an open alert with end_reason "disarmed" and forgets the
scorer's history; re-arming starts a fresh scorer (its window would otherwise join segments minutes or days
apart as if they were neighbours) and the state is `unknown` until the first new score.

Two-phase delivery (describe on_demand with a backend that splits): a segment is scored with its verdict's
own text when its verdict arrives and is never rescored. Its description comes later (describe()) and only
updates explanations: the segment's own, which later scores and alerts read, and an open alert that it drove
while the description was awaited (the tracker's next `update`). Why no rescoring: a score already published
must not change under a subscriber, and waiting for descriptions is what the split avoids.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from corevad.alerts import END_STREAM, AlertEvent, AlertParams, AlertTracker
from corevad.causal import CausalScorer, ScoredSegment
from corevad.params import CausalParams

from .entities import DISARMED_REASON, CameraCounters, DescriptionUpdate, ScoringOutput, SegmentResult
from .messages import AlertEventRecord, AlertRecord, CameraState, EventTiming, Message, ScoreRecord


@dataclass(slots=True)
class _Meta:
    index: int
    start: float
    end: float
    clock: float
    label: int
    parsed: bool
    description: str
    model_s: float
    snapshot: np.ndarray | None
    support: float = 1.0  # how much the description reads like an anomaly (explanation ranking)
    p_anomalous: float | None = None
    pending: bool = False  # two-phase delivery: the description is still to come (describe())
    missing: bool = False  # ... and was lost to a failed description pass


class CameraScoring:
    """One camera's CausalScorer + AlertTracker."""

    def __init__(self, camera: str, *, params: CausalParams, alerts: AlertParams, use_features: bool,
                 lrc: bool = True, counters: CameraCounters | None = None, top_k: int = 3,
                 run_id: str | None = None, text_context: bool = False,
                 support: Callable[[np.ndarray], float] | None = None, use_probability: bool = False) -> None:
        self.camera = camera
        self.use_probability = use_probability  # push P(Anomalous) instead of the 0/1 label where there is one
        self.params = params
        self.use_features = use_features
        self.text_context = text_context
        self.support = support  # description text embedding -> support in (0, 1); None: rank by weight only
        self._new_scorer = functools.partial(CausalScorer, params, use_features=use_features, lrc=lrc,
                                             top_k=max(top_k, 3), text_context=text_context)
        self.scorer = self._new_scorer()
        self.tracker = AlertTracker(camera, alerts, run_id=run_id)
        self.state: str = "unknown"  # the last published retained state (a CameraState)
        self.model_down = False
        self.finished = False  # nobody watches after the stream ended or the monitor stopped: unknown
        self.disarmed = False  # not armed (disarmed, snoozed, off schedule): no segment reaches the scorer
        self._scored_since_arm = 0
        self.counters = counters or CameraCounters()
        # scorer index -> (label, description, support, scorer index of the segment whose description it is)
        self._cleaned: dict[int, tuple[float, str, float, int]] = {}
        self._metas: dict[int, _Meta] = {}  # scorer index -> meta, kept for LRC choices and contributors
        self._n = 0
        self._alert_p: float | None = None  # the open alert's highest P(Anomalous) so far (severity)
        self._keep = max(params.refine_window, params.lrc_lookback + 1) + params.delay + 2

    def process(self, result: SegmentResult) -> ScoringOutput:
        """Push one model result; return the messages for every segment whose score became final."""
        if not result.answered:
            return self._unanswered(result)
        job, v = result.job, result.verdict
        if not v.parsed:
            self.counters.unparsed += 1
        meta = _Meta(job.index, job.start, job.end, job.clock, v.label, v.parsed, v.description,
                     result.model_s, result.snapshot, p_anomalous=result.p_anomalous,
                     pending=result.description_pending)
        if self.support is not None and result.description_text_emb is not None:
            meta.support = float(self.support(result.description_text_emb))
        self._metas[self._n] = meta
        self._n += 1
        kwargs = {}
        if self.text_context:
            kwargs = {"answer_text_emb": result.answer_text_emb, "description_text_emb": result.description_text_emb}
        if self.use_features:
            kwargs = {"visual": result.visual, "description_emb": result.description_emb}
            if self.scorer.lrc:
                kwargs["response_emb"] = result.response_emb
        value = float(v.label)
        if self.use_probability and result.p_anomalous is not None:
            value = result.p_anomalous
        return self._emit(self.scorer.push(value, **kwargs))

    def describe(self, update: DescriptionUpdate) -> ScoringOutput:
        """A segment's description after its verdict (two-phase delivery): it explains from now on, the scores
        stay. None as the description: its pass failed, which the alerts it drove count (descriptions_missing)."""
        text = update.description
        support = 1.0
        if text is not None and self.support is not None and update.text_emb is not None:
            support = float(self.support(update.text_emb))
        meta = next((m for m in self._metas.values() if m.index == update.index), None)
        if meta is not None:
            meta.pending = False
            if text is None:
                meta.missing = True
            else:
                meta.description, meta.support = text, support
        out = ScoringOutput()
        for ev in self.tracker.describe(update.index, text, weight=support):
            out.messages.extend(self._event_messages(ev, None))
        return out

    def finish(self, reason: str = END_STREAM) -> ScoringOutput:
        """End of stream or shutdown: finalise pending segments and end an open alert."""
        out = self._emit(self.scorer.flush())
        self.finished = True
        for ev in self.tracker.close(reason=reason):
            out.messages.extend(self._event_messages(ev, None))
        self._sync_state(out.messages)
        return out

    def disarm(self) -> ScoringOutput:
        """The camera is no longer armed: final scores for what the scorer held, an open alert ends
        ("disarmed"), the scorer's history is forgotten, and the state becomes `disarmed`."""
        out = self._emit(self.scorer.flush())
        self.disarmed = True  # before the alert ends: its state message says disarmed, never a passing normal
        for ev in self.tracker.close(reason=DISARMED_REASON):
            out.messages.extend(self._event_messages(ev, None))
        self._reset()
        self._sync_state(out.messages)
        return out

    def rearm(self) -> ScoringOutput:
        """The camera is armed again: a fresh scorer; `unknown` until its first score."""
        self.disarmed = False
        self._reset()
        out = ScoringOutput()
        self._sync_state(out.messages)
        return out

    def _reset(self) -> None:
        self.scorer = self._new_scorer()
        self._metas.clear()
        self._cleaned.clear()
        self._n = 0
        self._scored_since_arm = 0

    def unscored_until(self, clock: float, *, segment: bool = False) -> ScoringOutput:
        """No valid answer up to `clock` (stream seconds): end an open alert that has waited too long.
        segment: an unanswered segment ends at `clock` (False: a timer check)."""
        out = ScoringOutput()
        for ev in self.tracker.unscored(clock=clock, segment=segment):
            out.messages.extend(self._event_messages(ev, None))
        return out

    def set_model_down(self, down: bool) -> ScoringOutput:
        """The camera's model went down or came back: `unknown` while down (an open alert stays anomalous)."""
        self.model_down = down
        out = ScoringOutput()
        self._sync_state(out.messages)
        return out

    def _unanswered(self, result: SegmentResult) -> ScoringOutput:
        job = result.job
        self.counters.unanswered += 1
        out = self.unscored_until(job.clock, segment=True)
        out.messages.insert(0, Message("score", ScoreRecord(
            index=job.index, start=job.start, end=job.end, available=False, error=result.error_kind,
            reason=result.error, latency_s=time.time() - job.end, model_s=result.model_s), camera=self.camera))
        return out

    def _sync_state(self, messages: list[Message]) -> None:
        state: CameraState
        if self.tracker.state == "anomalous":
            state = "anomalous"
        elif self.finished:
            state = "unknown"
        elif self.disarmed:
            state = "disarmed"
        elif self.model_down or self._scored_since_arm == 0:
            state = "unknown"
        else:
            state = "normal"
        self.counters.state = state
        if state != self.state:
            self.state = state
            messages.append(Message("state", state, camera=self.camera, retain=True))

    def _emit(self, scored: list[ScoredSegment]) -> ScoringOutput:
        out = ScoringOutput(scored=scored)
        now = time.time()
        for s in scored:
            meta = self._metas[s.index]
            chosen_key = s.chosen if s.chosen in self._metas else s.index
            chosen = self._metas[chosen_key]
            self._cleaned[s.index] = (s.label, chosen.description, chosen.support, chosen_key)
            drivers, waiting, missing = self._drivers(s.contributors)
            latency = now - meta.end
            c = self.counters
            c.scored += 1
            self._scored_since_arm += 1
            c.last_score = s.score
            c.last_latency_s = latency
            out.messages.append(Message("score", ScoreRecord(
                index=meta.index, start=meta.start, end=meta.end, score=s.score, refined=s.refined, label=s.label,
                raw_label=meta.label, parsed=meta.parsed, description=chosen.description,
                chosen=self._metas[s.chosen].index if s.chosen in self._metas else meta.index,
                latency_s=latency, model_s=meta.model_s, p_anomalous=meta.p_anomalous), camera=self.camera))
            events = self.tracker.update(index=meta.index, start=meta.start, end=meta.end, score=s.score,
                                         drivers=drivers, clock=meta.clock, waiting=waiting, missing=missing)
            self._note_p(events, meta.p_anomalous)
            for ev in events:
                out.messages.extend(self._event_messages(ev, meta))
                if ev.type != "end" and (ev.before is None or ev.before.peak_index != ev.after.peak_index):
                    peak = next((m for m in self._metas.values() if m.index == ev.after.peak_index), None)
                    if peak is not None and peak.snapshot is not None:
                        out.snapshot, out.snapshot_alert = peak.snapshot, ev.after.id
            self._sync_state(out.messages)
        self._prune()
        return out

    def _note_p(self, events: list[AlertEvent], p: float | None) -> None:
        """Keep the open alert's highest P(Anomalous) (a new alert starts from its opening segment's)."""
        if any(ev.type == "new" for ev in events):
            self._alert_p = None
        if p is not None and (events or self.tracker.active is not None):
            self._alert_p = p if self._alert_p is None else max(self._alert_p, p)

    def _drivers(self, contributors: Sequence[tuple[int, float]]
                 ) -> tuple[list[tuple[str, float]], list[tuple[int, float]], list[int]]:
        """The (description, weight x support) pairs that explain a score (the description that best explains an
        anomaly comes first in the alert), the (segment, weight) pairs whose description is still to come, and
        the segments whose description was lost. A description that came after its verdict counts from then."""
        drivers: list[tuple[str, float]] = []
        waiting: list[tuple[int, float]] = []
        missing: list[int] = []
        for j, w in contributors:
            c = self._cleaned.get(j)
            if c is None or c[0] < 0.5:
                continue
            src = self._metas.get(c[3])
            if src is None:
                drivers.append((c[1], w * c[2]))
            elif src.pending:
                waiting.append((src.index, w))
            elif src.missing:
                missing.append(src.index)
            else:
                drivers.append((src.description, w * src.support))
        return drivers, waiting, missing

    def _event_messages(self, ev: AlertEvent, meta: _Meta | None) -> list[Message]:
        # Timing for the latency figure: when the driving segment ended and how long the model took.
        timing = None if meta is None else EventTiming(segment_end=meta.end, model_s=meta.model_s,
                                                       scored_at=time.time())
        # The camera's latest alert, retained (Home Assistant reads its explanation as attributes).
        msgs = [Message("events", AlertEventRecord.of(ev, timing, p_anomalous=self._alert_p)),
                Message("alert", AlertRecord(ev.after), camera=self.camera, retain=True)]
        self._sync_state(msgs)
        if ev.after.explanation:
            self.counters.last_explanation = ev.after.explanation[0]
        return msgs

    def _prune(self) -> None:
        floor = self._n - self._keep
        for d in (self._metas, self._cleaned):
            for k in [k for k in d if k < floor]:
                del d[k]
        # Snapshot copies are only needed until the segment is final (or while it is an alert's peak).
        active = self.tracker.active
        for k, m in self._metas.items():
            if m.snapshot is not None and k < self._n - self.params.delay - 1 and (
                    active is None or active.peak_index != m.index):
                m.snapshot = None
