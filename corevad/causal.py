"""The causal protocol as a step function over per-camera state (what the live runtime calls).

CausalScorer.push() takes one segment's answer (and its CLIP features when available) and returns
every segment whose score became final: segment i is final once segment i + params.delay has arrived.
flush() finalises the rest at the end of a stream. Scores equal pipeline.score_causal on the same input.
Memory is bounded: only the windows the parameters need are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import CausalParams
from .refine import causal_kernel, softmax_weights, start_mass


@dataclass(frozen=True, slots=True)
class ScoredSegment:
    """A final causal score for one segment, with what drove it."""

    index: int
    score: float
    refined: float
    label: float  # the cleaned segment's label: 0/1, or P(Anomalous) when the runtime scores probabilities
    chosen: int
    # (index of the segment whose cleaned response contributed, softmax weight), heaviest first.
    contributors: tuple[tuple[int, float], ...]


@dataclass(slots=True)
class _Raw:
    label: float
    visual: np.ndarray | None
    response_emb: np.ndarray | None
    description_emb: np.ndarray | None
    answer_text_emb: np.ndarray | None = None
    description_text_emb: np.ndarray | None = None


@dataclass(slots=True)
class _Cleaned:
    label: float
    description_emb: np.ndarray | None
    chosen: int
    description_text_emb: np.ndarray | None = None


class CausalScorer:
    """Per-camera causal scoring state.

    use_features: CLIP LRC + softmax refinement (push needs visual, description_emb, response_emb);
    text_context: text-anchored context refinement (push needs answer_text_emb, description_text_emb);
    neither: labels only. The two refinements are exclusive.
    """

    def __init__(self, params: CausalParams = CausalParams(), *, use_features: bool, lrc: bool = True,
                 top_k: int = 3, text_context: bool = False) -> None:
        if use_features and text_context:
            raise ValueError("use_features and text_context are exclusive")
        self.params = params
        self.use_features = use_features
        self.text_context = text_context
        self.lrc = lrc and use_features
        self.top_k = top_k
        self._raw: dict[int, _Raw] = {}
        self._cleaned: dict[int, _Cleaned] = {}
        self._refined: dict[int, tuple[float, tuple[tuple[int, float], ...]]] = {}
        self._received = 0
        self._next_clean = 0
        self._next_smooth = 0
        self._taps = causal_kernel(params.smooth_length, params.smooth_sigma, params.smooth_lookahead)
        self._ring: np.ndarray | None = None  # text context: the window's description embeddings, by i % window
        self._ring_labels = np.zeros(0)
        self._ring_index = np.zeros(0, dtype=np.int64)

    @property
    def received(self) -> int:
        return self._received

    @property
    def pending(self) -> int:
        """Segments received but not yet final."""
        return self._received - self._next_smooth

    def push(self, label: float, *, visual: np.ndarray | None = None, response_emb: np.ndarray | None = None,
             description_emb: np.ndarray | None = None, answer_text_emb: np.ndarray | None = None,
             description_text_emb: np.ndarray | None = None) -> list[ScoredSegment]:
        if self.use_features and (visual is None or description_emb is None):
            raise ValueError("this scorer uses features: visual and description_emb are required")
        if self.lrc and response_emb is None:
            raise ValueError("LRC is on: response_emb is required")
        if self.text_context and (answer_text_emb is None or description_text_emb is None):
            raise ValueError("text context is on: answer_text_emb and description_text_emb are required")
        if not 0.0 <= label <= 1.0:
            raise ValueError(f"label must be in [0, 1] (0/1, or a probability), got {label}")
        self._raw[self._received] = _Raw(float(label), visual, response_emb, description_emb, answer_text_emb,
                                         description_text_emb)
        self._received += 1
        return self._advance(final=False)

    def flush(self) -> list[ScoredSegment]:
        """End of stream: finalise every pending segment with the taps that exist."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> list[ScoredSegment]:
        p = self.params
        while self._next_clean < self._received and (final or self._next_clean + p.lrc_lookahead < self._received):
            self._clean(self._next_clean)
            self._refine(self._next_clean)
            self._next_clean += 1
        out = []
        while self._next_smooth < self._next_clean and (
            final or self._next_smooth + p.smooth_lookahead < self._next_clean
        ):
            out.append(self._smooth(self._next_smooth))
            self._next_smooth += 1
        self._prune()
        return out

    def _clean(self, i: int) -> None:
        raw = self._raw[i]
        chosen = i
        if self.lrc:
            lo = max(0, i - self.params.lrc_lookback)
            hi = min(self._received, i + self.params.lrc_lookahead + 1)
            v = self._visual(raw.visual)
            sims = [float(v @ np.asarray(self._raw[j].response_emb, dtype=np.float32)) for j in range(lo, hi)]
            chosen = lo + int(np.argmax(sims))
        src = self._raw[chosen]
        self._cleaned[i] = _Cleaned(src.label, src.description_emb, chosen, src.description_text_emb)

    def _refine(self, i: int) -> None:
        if self.text_context:
            self._refine_text(i)
            return
        if not self.use_features:
            self._refined[i] = (float(self._cleaned[i].label), ((i, 1.0),))
            return
        lo = max(0, i - self.params.refine_window + 1)
        idx = list(range(lo, i + 1))
        v = self._visual(self._raw[i].visual)
        desc = np.stack([np.asarray(self._cleaned[j].description_emb, dtype=np.float32) for j in idx])
        w = softmax_weights((desc @ v).astype(np.float64), self.params.tau)
        labels = np.array([self._cleaned[j].label for j in idx], dtype=np.float64)
        order = np.argsort(-w, kind="stable")[: self.top_k]
        self._refined[i] = (float(w @ labels), tuple((idx[k], float(w[k])) for k in order))

    def _refine_text(self, i: int) -> None:
        """refine.text_context_refine, one segment at a time (same window, weights and mix).

        The window's keys live in a ring of text_window rows, so each step is one matrix-vector product
        (stacking 120 rows per segment took longer than the rest of a replay's scoring)."""
        p = self.params
        key = np.asarray(self._cleaned[i].description_text_emb, dtype=np.float32)
        if self._ring is None:
            self._ring = np.zeros((p.text_window, key.shape[0]), dtype=np.float32)
            self._ring_labels = np.zeros(p.text_window, dtype=np.float64)
            self._ring_index = np.zeros(p.text_window, dtype=np.int64)
        slot = i % p.text_window
        self._ring[slot], self._ring_labels[slot], self._ring_index[slot] = key, self._cleaned[i].label, i
        n = min(i + 1, p.text_window)
        q = np.asarray(self._raw[i].answer_text_emb, dtype=np.float32)
        w = softmax_weights((self._ring[:n] @ q).astype(np.float64), p.text_tau)
        value = (1.0 - p.text_mix) * self._cleaned[i].label + p.text_mix * float(w @ self._ring_labels[:n])
        order = np.argsort(-w, kind="stable")[: self.top_k]
        self._refined[i] = (value, tuple((int(self._ring_index[k]), float(w[k])) for k in order))

    def _smooth(self, i: int) -> ScoredSegment:
        p = self.params
        lo, hi = max(0, i - p.smooth_length + 1), min(self._next_clean, i + p.smooth_lookahead + 1)
        js = range(lo, hi)
        w = self._taps[i - np.arange(lo, hi) + p.smooth_lookahead]
        vals = np.array([self._refined[j][0] for j in js])
        refined, contributors = self._refined[i]
        c = self._cleaned[i]
        norm = w.sum() + start_mass(self._taps, i, p.smooth_length, p.smooth_lookahead, p.start_prior)
        return ScoredSegment(i, float(w @ vals / norm), refined, c.label, c.chosen, contributors)

    def _visual(self, v: np.ndarray | None) -> np.ndarray:
        x = np.asarray(v, dtype=np.float32)
        if self.params.renormalise_visual:
            x = x / max(float(np.linalg.norm(x)), 1e-12)
        return x

    def _prune(self) -> None:
        p = self.params
        for d, floor in ((self._raw, self._next_clean - p.lrc_lookback),
                         (self._cleaned, min(self._next_clean - (p.text_window if self.text_context
                                                                 else p.refine_window), self._next_smooth)),
                         (self._refined, self._next_smooth - p.smooth_length - 1)):
            for k in [k for k in d if k < floor]:
                del d[k]
