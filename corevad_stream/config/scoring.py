"""Sections `refinement` (causal scoring, corevad.params.CausalParams) and `alerts` (hysteresis, AlertParams)."""

from __future__ import annotations

from dataclasses import fields as dc_fields
from typing import Literal

from pydantic import Field, model_validator

from corevad.alerts import AlertParams
from corevad.params import CausalParams
from corevad.schema import StrictModel

__all__ = ["AlertsConfig", "RefinementConfig"]

# Method defaults live once, in corevad's dataclasses; the schema reads them from there.
_CAUSAL = CausalParams()
_ALERTS = AlertParams()


class RefinementConfig(StrictModel):
    """CausalParams fields (see corevad.params.CausalParams); position weighting never applies live."""

    tau: float = Field(_CAUSAL.tau, gt=0, description="Softmax temperature of the refinement.")
    lrc_lookback: int = Field(_CAUSAL.lrc_lookback, ge=0, le=1000,
                              description="LRC candidates reach this many segments back.")
    lrc_lookahead: int = Field(_CAUSAL.lrc_lookahead,
                               ge=0, le=1, description="LRC lookahead: 0 or 1 segment (adds delay).")
    refine_window: int = Field(_CAUSAL.refine_window,
                               gt=0, le=10_000, description="Softmax refinement over the last N cleaned responses.")
    smooth_length: int = Field(_CAUSAL.smooth_length,
                               gt=0, le=10_000, description="Causal Gaussian over the past N refined scores.")
    smooth_sigma: float = Field(_CAUSAL.smooth_sigma, gt=0, description="Sigma of the causal Gaussian (segments).")
    smooth_lookahead: int = Field(_CAUSAL.smooth_lookahead,
                                  ge=0, le=100, description="Future taps of the Gaussian (adds delay).")
    renormalise_visual: bool = Field(_CAUSAL.renormalise_visual, description="Re-normalise the mean frame embedding.")
    use_features: bool | Literal["auto"] = Field(
        "auto", description="CLIP features (the paper's causal LRC + softmax refinement) for cameras with frames: "
                            "true, false, or auto (the default: on where a CUDA GPU is present and model.clip "
                            "loads, the deployment the paper's design assumes; off on CPU machines, where "
                            "segments are scored from labels or with text_context). Thresholds were tuned "
                            "text-only: re-tune them for CLIP scores.")
    lrc: bool = Field(True, description="Local response cleaning (needs use_features).")
    text_context: bool = Field(False, description="Text-anchored context refinement (no CLIP): weigh the "
                                                  "labels of recent answers by the similarity of this answer to "
                                                  "their descriptions (model.text encodes them).")
    text_window: int = Field(_CAUSAL.text_window, gt=0, le=10_000, description="Answers the context looks back on.")
    text_tau: float = Field(_CAUSAL.text_tau, gt=0, le=10, description="Softmax temperature of the context.")
    text_mix: float = Field(_CAUSAL.text_mix, ge=0, le=1, description="Weight of the context against the "
                                                                      "segment's own label.")
    segment_score: Literal["label", "p_anomalous"] = Field(
        "label", description="What each answer contributes: its binary label (the paper), or the backend's "
                             "P(Anomalous) where it gives one (transformers; servers with logprobs), the label "
                             "elsewhere. The thresholds were tuned on labels: p_anomalous is not measured "
                             "with real weights yet.")
    start_prior: bool = Field(_CAUSAL.start_prior, description="At a stream's start, count the missing "
                                                               "smoothing history as normal (no alert on "
                                                               "one anomalous first answer).")

    @model_validator(mode="after")
    def _one_refinement(self) -> RefinementConfig:
        if self.use_features is True and self.text_context:
            raise ValueError("use_features: true (CLIP) and text_context are exclusive: choose one, or "
                             "use_features: auto (CLIP where frames and a GPU exist, the text context elsewhere)")
        return self

    def params(self) -> CausalParams:
        known = {f.name for f in dc_fields(CausalParams)}
        return CausalParams(**{k: v for k, v in self.model_dump().items() if k in known})


class AlertsConfig(StrictModel):
    """Alert hysteresis on the refined score (corevad.alerts.AlertParams)."""

    open_threshold: float = Field(_ALERTS.open_threshold,
                                  ge=0, le=1, description="An alert opens when the score reaches this.")
    close_threshold: float = Field(_ALERTS.close_threshold,
                                   ge=0, le=1, description="The score must stay below this ...")
    close_after_s: float = Field(_ALERTS.close_after_s,
                                 ge=0, le=86400, description="... for this many seconds for the alert to end.")
    cooldown_s: float = Field(_ALERTS.cooldown_s, ge=0, le=86400,
                              description="No new alert on the camera this long after one ends.")
    explanation_top_k: int = Field(_ALERTS.top_k, gt=0, le=100,
                                   description="Descriptions kept in an alert's explanation.")
    update_min_delta: float = Field(_ALERTS.update_min_delta,
                                    ge=0, description="An update is sent when the peak grows this much.")
    rank_explanations: bool = Field(True, description="Rank an alert's descriptions by how much they read like "
                                                      "an anomaly (needs the text encoder: "
                                                      "refinement.text_context).")
    max_unscored_s: float = Field(_ALERTS.max_unscored_s, ge=0, le=86400,
                                  description="An open alert whose camera gets no valid model answer waits "
                                              "this long, then ends with reason 'model unavailable'.")
    snapshot: bool = Field(True, description="Attach a JPEG of the peak segment's middle frame.")
    snapshot_quality: int = Field(80, ge=10, le=100, description="JPEG quality of snapshots.")

    @model_validator(mode="after")
    def _order(self) -> AlertsConfig:
        if self.close_threshold > self.open_threshold:
            raise ValueError(f"close_threshold ({self.close_threshold}) must be <= open_threshold "
                             f"({self.open_threshold})")
        return self

    def params(self) -> AlertParams:
        return AlertParams(open_threshold=self.open_threshold, close_threshold=self.close_threshold,
                           close_after_s=self.close_after_s, cooldown_s=self.cooldown_s,
                           top_k=self.explanation_top_k, update_min_delta=self.update_min_delta,
                           max_unscored_s=self.max_unscored_s)
