"""The model worker: one batch of segments -> VLM answers, parsed verdicts and CLIP features (blocking).

Two steps, each called off the event loop on its own daemon thread: prepare() (the backend's CPU
preprocessing, when it has one) and finish() (the model call, parsing, features). The runtime prepares
batch k+1 while the model runs batch k, so the GPU does not wait for the CPU; infer() is the two in a row.
A backend failure does not stop the monitor, and it is never read as an answer: the batch's results carry
the error (and its kind) instead of a verdict, and scoring publishes them as unavailable, not as "Normal".
An empty answer is a failure of its segment alone; a non-empty answer that cannot be parsed is an answer
(counted as unparsed, label 0) as before.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from corevad.errors import ModelError
from corevad.models.base import Answer, Clip, ImageTextEncoder, VLMBackend, answers
from corevad.models.text import TextEncoder
from corevad.prompt import parse_answer
from corevad.types import Verdict

from .entities import DescriptionPass, DescriptionUpdate, PreparedBatch, SegmentJob, SegmentResult

log = logging.getLogger(__name__)


def _failure(exc: BaseException) -> tuple[str, str]:
    return (exc.kind if isinstance(exc, ModelError) else "error"), (str(exc) or type(exc).__name__)


def _answer_error(a: Answer) -> tuple[str, str] | None:
    """(kind, message) of an answer that cannot be scored: the backend's own error, or no text at all."""
    if a.error is not None:
        return (a.error_kind or "error", a.error)
    if not a.text.strip():
        return ("empty", "the model returned an empty answer")
    return None


def _result(job: SegmentJob, verdict: Verdict, visual: np.ndarray | None, resp: np.ndarray | None,
            desc: np.ndarray | None, snap: np.ndarray | None, model_s: float, err: tuple[str, str] | None,
            text_emb: np.ndarray | None, p_anomalous: float | None, *, pending: bool = False) -> SegmentResult:
    """A segment's result; a failed one carries its error and never a label probability."""
    return SegmentResult(job, verdict, visual, resp, desc, snap, model_s,
                         error=None if err is None else err[1], error_kind=None if err is None else err[0],
                         answer_text_emb=text_emb, description_text_emb=text_emb,
                         p_anomalous=p_anomalous if err is None else None, description_pending=pending and err is None)


class ModelWorker:
    """Runs the VLM backend and the CLIP encoder on batches of segments."""

    def __init__(self, backend: VLMBackend, encoder: ImageTextEncoder | None = None, *,
                 keep_snapshot: bool = False, text_encoder: TextEncoder | None = None) -> None:
        self.backend = backend
        self.encoder = encoder
        self.text_encoder = text_encoder
        self.keep_snapshot = keep_snapshot
        self.batches = 0
        self.errors = 0
        self.descriptions = 0  # two-phase delivery: descriptions delivered after their verdict ...
        self.descriptions_failed = 0  # ... and lost to a failed description pass (the verdicts stood)

    def warm_up(self, batch: int, frames: int, size: int) -> float | None:
        """One full-size batch of blank segments through an in-process model before cameras go online, so
        the first live batch does not pay for CUDA start-up and kernel selection. Returns its seconds (None:
        the backend has no prepare step, or the warm-up failed, which is logged: live batches will report)."""
        prepare = getattr(self.backend, "prepare", None)
        if prepare is None:
            return None
        clips = [Clip("warm-up", i, np.zeros((frames, size, size, 3), np.uint8)) for i in range(batch)]
        t0 = time.perf_counter()
        try:
            self.backend.run(prepare(clips))  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - reported; the monitor still starts
            log.warning("model warm-up failed: %s", exc)
            return None
        return time.perf_counter() - t0

    def infer(self, batch: list[SegmentJob]) -> list[SegmentResult]:
        """Blocking: prepare() then finish(). Releases every segment's ring slot before returning."""
        return self.finish(self.prepare(batch))

    def prepare(self, batch: list[SegmentJob]) -> PreparedBatch:
        """The backend's CPU preprocessing (prepare(clips)), if it has one. Never raises: a failure is
        carried to finish() and reported for this batch only."""
        t0 = time.perf_counter()
        # Each clip carries its own camera's context: a batch that mixes cameras gives every row its own prompt.
        clips = [Clip(job.camera, job.index, job.frames, job.context) for job in batch]
        out = PreparedBatch(batch, clips)
        prepare = getattr(self.backend, "prepare", None)
        if prepare is not None:
            try:
                out.prepared = prepare(clips)
            except Exception as exc:  # noqa: BLE001 - this batch fails, the monitor keeps running
                out.error = _failure(exc)
        out.prep_s = time.perf_counter() - t0
        return out

    def finish(self, pb: PreparedBatch) -> list[SegmentResult]:
        """The model call on a prepared batch, parsing, features. Releases every segment's ring slot."""
        t0 = time.perf_counter()
        batch, clips = pb.jobs, pb.clips
        try:
            errors: list[tuple[str, str] | None] = [None] * len(batch)
            probs: list[float | None] = [None] * len(batch)
            try:
                if pb.error is not None:
                    raise ModelError(pb.error[1], kind=pb.error[0])
                scored = (self.backend.run(pb.prepared) if pb.prepared is not None  # type: ignore[attr-defined]
                          else answers(self.backend, clips))
                if len(scored) != len(clips):
                    raise ModelError(f"backend {self.backend.name} returned {len(scored)} answers "
                                     f"for {len(clips)} segments", kind="malformed")
                texts = [a.text for a in scored]
                probs = [a.p_anomalous for a in scored]
                # A segment the backend could not answer alone (describe on_demand: its description pass
                # failed and its verdict is unknown) fails alone.
                errors = [_answer_error(a) for a in scored]
            except Exception as exc:  # noqa: BLE001 - model failure: no answers for this batch, keep running
                self.errors += 1
                kind, message = _failure(exc)
                log.error("model backend failed on %s: %s",
                          ", ".join(f"{j.camera}#{j.index}" for j in batch), message)
                texts = [""] * len(batch)
                errors = [(kind, message)] * len(batch)
            verdicts = [parse_answer(a) for a in texts]
            visual, resp, desc = self._features(batch, verdicts)
            desc_t = self._text(verdicts, errors)
            snaps = [self._snapshot(job) for job in batch]
        finally:
            for job in batch:
                job.release()
        self.batches += 1
        model_s = pb.prep_s + time.perf_counter() - t0
        out = []
        for i, job in enumerate(batch):
            out.append(_result(job, verdicts[i], visual[i], resp[i], desc[i], snaps[i], model_s, errors[i],
                               desc_t[i], probs[i]))
        return out

    # -- two-phase delivery (a backend with two_phase: describe on_demand) -----------------------------------
    @property
    def two_phase(self) -> bool:
        """The backend delivers verdicts before descriptions (verdicts() then describe() split the batch)."""
        return bool(getattr(self.backend, "two_phase", False))

    def verdicts(self, pb: PreparedBatch) -> tuple[list[SegmentResult | None], DescriptionPass | None]:
        """Phase one: every segment's result with its verdict, scored by the verdict alone (a segment whose
        description is to come carries its verdict line and description_pending). None in place of a result:
        that segment's verdict is not known until its full answer (describe()). The pass is None when nothing
        is left for phase two (or the backend answers in one pass: then this is finish()). Releases every
        segment's ring slot."""
        if not self.two_phase:
            return list(self.finish(pb)), None
        t0 = time.perf_counter()
        batch, clips = pb.jobs, pb.clips
        try:
            try:
                if pb.error is not None:
                    raise ModelError(pb.error[1], kind=pb.error[0])
                vp = self.backend.verdicts(clips, pb.prepared)  # type: ignore[attr-defined]
                if len(vp.answers) != len(clips):
                    raise ModelError(f"backend {self.backend.name} returned {len(vp.answers)} verdicts "
                                     f"for {len(clips)} segments", kind="malformed")
            except Exception as exc:  # noqa: BLE001 - model failure: no answers for this batch, keep running
                pb.error = _failure(exc)
                return list(self.finish(pb)), None  # finish() reports it for every segment and releases them
            known = [i for i, a in enumerate(vp.answers) if a is not None]
            verdicts = [parse_answer(a.text if a is not None else "") for a in vp.answers]
            errors: list[tuple[str, str] | None] = [None] * len(batch)
            for i in known:
                a = vp.answers[i]
                assert a is not None
                errors[i] = _answer_error(a)
            visual = self._visual(batch)
            resp, desc = self._answer_embeddings(verdicts, [i for i in known if visual[i] is not None])
            desc_t = self._text(verdicts, [errors[i] if i in known else ("held", "") for i in range(len(batch))])
            snaps = [self._snapshot(job) for job in batch]
        finally:
            for job in batch:
                job.release()
        self.batches += 1
        model_s = pb.prep_s + time.perf_counter() - t0
        pending = set(vp.pending)
        out: list[SegmentResult | None] = []
        for i, job in enumerate(batch):
            a = vp.answers[i]
            if a is None:
                out.append(None)
                continue
            out.append(_result(job, verdicts[i], visual[i], resp[i], desc[i], snaps[i], model_s, errors[i],
                               desc_t[i], a.p_anomalous, pending=i in pending))
        if not vp.pending:
            return out, None
        held = {i: (visual[i], snaps[i]) for i in vp.pending if vp.answers[i] is None}
        return out, DescriptionPass(verdict_pass=vp, jobs=batch, held=held)

    def describe(self, dp: DescriptionPass) -> tuple[list[SegmentResult], list[DescriptionUpdate]]:
        """Phase two: the descriptions of the rows that need one. Returns the results of the rows whose verdict
        waited for its answer (held, in order) and one DescriptionUpdate per row whose verdict is already out.
        A failure of this pass costs only these rows: a held row is unanswered (never "normal"), an update
        carries the error instead of a description. Never raises for a backend failure."""
        t0 = time.perf_counter()
        vp = dp.verdict_pass
        try:
            got = vp.describe()
        except Exception as exc:  # noqa: BLE001 - these rows lose their descriptions, nothing else
            kind, message = _failure(exc)
            log.error("description pass failed for %s: %s",
                      ", ".join(f"{dp.jobs[i].camera}#{dp.jobs[i].index}" for i in vp.pending), message)
            got = [Answer("", None, described=False, error=message, error_kind=kind) for _ in vp.pending]
        model_s = time.perf_counter() - t0
        verdicts = [parse_answer(a.text) for a in got]
        errors = [_answer_error(a) for a in got]
        described = [k for k, e in enumerate(errors) if e is None]
        self.descriptions += sum(1 for k in described if vp.answers[vp.pending[k]] is not None)
        self.descriptions_failed += sum(1 for k, e in enumerate(errors)
                                        if e is not None and vp.answers[vp.pending[k]] is not None)
        desc_t = self._text(verdicts, errors)
        held_k = [k for k, i in enumerate(vp.pending) if i in dp.held]
        resp, desc = self._answer_embeddings(verdicts, [k for k in held_k if dp.held[vp.pending[k]][0] is not None])
        results: list[SegmentResult] = []
        updates: list[DescriptionUpdate] = []
        for k, i in enumerate(vp.pending):
            job, err, a = dp.jobs[i], errors[k], got[k]
            if i in dp.held:
                visual, snap = dp.held[i]
                results.append(_result(job, verdicts[k], visual, resp[k], desc[k], snap, model_s, err, desc_t[k],
                                       a.p_anomalous))
            else:
                updates.append(DescriptionUpdate(
                    camera=job.camera, index=job.index, model_s=model_s,
                    description=None if err is not None else verdicts[k].description,
                    error=None if err is None else err[1], error_kind=None if err is None else err[0],
                    text_emb=desc_t[k]))
        return results, updates

    def _features(self, batch: list[SegmentJob], verdicts: list[Verdict]
                  ) -> tuple[list[np.ndarray | None], list[np.ndarray | None], list[np.ndarray | None]]:
        """Per segment: mean unit frame embedding, answer embedding, description embedding (None: no frames)."""
        visual = self._visual(batch)
        resp, desc = self._answer_embeddings(verdicts, [i for i, v in enumerate(visual) if v is not None])
        return visual, resp, desc

    def _visual(self, batch: list[SegmentJob]) -> list[np.ndarray | None]:
        """Each segment's mean unit frame embedding (None: no frames or no encoder). Needs the frames: before
        release."""
        out: list[np.ndarray | None] = [None] * len(batch)
        idx = [i for i, job in enumerate(batch) if job.frames is not None]
        if self.encoder is None or not idx:
            return out
        frames = [f for i in idx if (f := batch[i].frames) is not None]
        counts = [f.shape[0] for f in frames]
        emb = np.asarray(self.encoder.encode_images(np.concatenate(frames, axis=0)), dtype=np.float32)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        means = np.add.reduceat(emb, starts, axis=0) / np.asarray(counts, dtype=np.float32)[:, None]
        for k, i in enumerate(idx):
            out[i] = means[k]
        return out

    def _answer_embeddings(self, verdicts: list[Verdict], idx: list[int]
                           ) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
        """CLIP text embeddings of rows idx: the answer, and the description (the answer where it has none)."""
        resp: list[np.ndarray | None] = [None] * len(verdicts)
        desc: list[np.ndarray | None] = [None] * len(verdicts)
        if self.encoder is None or not idx:
            return resp, desc
        texts = [verdicts[i].text for i in idx] + [verdicts[i].description or verdicts[i].text for i in idx]
        t = np.asarray(self.encoder.encode_texts(texts), dtype=np.float32)
        for k, i in enumerate(idx):
            resp[i], desc[i] = t[k], t[len(idx) + k]
        return resp, desc

    def _text(self, verdicts: list[Verdict], errors: list[tuple[str, str] | None]) -> list[np.ndarray | None]:
        """Sentence embeddings of each answered segment's description, one call per batch. The description is
        both the query and the key of the context (the query the tuning protocol chose over the whole answer).
        A segment answered by its verdict line alone (describe on_demand, or a description still to come) has
        an empty description, as a recorded one-line answer has under describe: all, so the two modes agree
        where nothing was removed."""
        n = len(verdicts)
        desc: list[np.ndarray | None] = [None] * n
        idx = [i for i in range(n) if errors[i] is None]
        if self.text_encoder is None or not idx:
            return desc
        emb = self.text_encoder.encode_texts([verdicts[i].description for i in idx])
        for k, i in enumerate(idx):
            desc[i] = emb[k]
        return desc

    def _snapshot(self, job: SegmentJob) -> np.ndarray | None:
        """The segment's snapshot candidate, BGR: the full-resolution middle frame when the source kept one
        (it is already a private copy), else the middle sampled frame (squashed to the model's input)."""
        if not self.keep_snapshot:
            return None
        if job.full_frame_bgr is not None:
            return job.full_frame_bgr
        if job.frames is None:
            return None
        return np.ascontiguousarray(job.frames[job.frames.shape[0] // 2][..., ::-1])
