"""Method hyper-parameters as frozen dataclasses (paper defaults)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


def _check_positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_non_negative(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class OfflineParams:
    """The paper's offline protocol (every segment of the video is known in advance)."""

    segment_len: int = 30
    tau: float = 0.05
    kernel_size: int = 9
    sigma: float = 5.0
    # The authors build the kernel grid with linspace(-size//2, size//2, size), i.e. -5..4 for size 9:
    # slightly off-centre. False reproduces that; True gives a centred grid -4..4.
    centred_kernel: bool = False
    position_weighting: bool = True
    lrc_window: int = 1
    # The authors' eval casts to float16 at a few points, which creates score ties that move the AUC.
    paper_precision: bool = False
    # The authors' "cosine" is a dot product with the (not re-normalised) mean of unit frame embeddings.
    renormalise_visual: bool = False

    def __post_init__(self) -> None:
        _check_positive("segment_len", self.segment_len)
        _check_positive("tau", self.tau)
        _check_positive("kernel_size", self.kernel_size)
        _check_positive("sigma", self.sigma)
        _check_non_negative("lrc_window", self.lrc_window)

    def with_(self, **changes: Any) -> OfflineParams:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class CausalParams:
    """The streaming protocol: every score uses only past segments plus a fixed lookahead."""

    segment_len: int = 30
    tau: float = 0.05
    # LRC candidates for segment i: responses j in [i - lrc_lookback, i + lrc_lookahead].
    lrc_lookback: int = 1
    lrc_lookahead: int = 0
    # Softmax refinement over the last `refine_window` cleaned responses (segment i included).
    refine_window: int = 30
    # One-sided Gaussian over the past `smooth_length` refined scores (i included), plus
    # `smooth_lookahead` future ones; the kernel is normalised over all its taps.
    # Chosen by the tuning protocol (tools/tune_causal.py) on the tune half of UCF-Crime.
    smooth_length: int = 12
    smooth_sigma: float = 2.0
    smooth_lookahead: int = 0
    renormalise_visual: bool = False
    # Text-anchored context refinement (CLIP-free; used when text embeddings are given): the labels of the
    # last `text_window` answers (this one included) weighted by softmax(sim(this answer, their
    # description) / text_tau), mixed with the segment's own label: (1 - text_mix) * label + text_mix * context.
    # Chosen by tools/tune_text.py on the tune half of UCF-Crime (all-MiniLM-L6-v2, frame AUC).
    text_window: int = 120
    text_tau: float = 0.05
    text_mix: float = 0.1
    # The start of a stream: True counts the smoothing taps before the first segment as "normal" (score 0),
    # so one anomalous first answer cannot open an alert; False renormalises over the taps that exist.
    start_prior: bool = False

    def __post_init__(self) -> None:
        _check_positive("segment_len", self.segment_len)
        _check_positive("tau", self.tau)
        _check_positive("text_window", self.text_window)
        _check_positive("text_tau", self.text_tau)
        if not 0.0 <= self.text_mix <= 1.0:
            raise ValueError(f"text_mix must be in [0, 1], got {self.text_mix!r}")
        _check_non_negative("lrc_lookback", self.lrc_lookback)
        _check_non_negative("lrc_lookahead", self.lrc_lookahead)
        _check_positive("refine_window", self.refine_window)
        _check_positive("smooth_length", self.smooth_length)
        _check_positive("smooth_sigma", self.smooth_sigma)
        _check_non_negative("smooth_lookahead", self.smooth_lookahead)

    @property
    def delay(self) -> int:
        """Segments after segment i that must arrive before i's score is final."""
        return self.lrc_lookahead + self.smooth_lookahead

    def with_(self, **changes: Any) -> CausalParams:
        return replace(self, **changes)


def params_from_mapping(cls: type, data: dict[str, Any]) -> Any:
    """Build a params dataclass from a mapping, naming any unknown field."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; known: {sorted(known)}")
    return cls(**data)
