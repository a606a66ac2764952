"""CoReVAD, the method: training-free video anomaly scoring from VLM answers refined with CLIP."""

from .causal import CausalScorer, ScoredSegment
from .cleaning import clean_responses, lrc_choice, similarity
from .errors import AnnotationError, CorevadError, DataError, FeatureError, ModelError, ResponseCountError
from .params import CausalParams, OfflineParams
from .pipeline import VideoScores, score_causal, score_offline
from .prompt import load_prompt, parse_answer, parse_answers, render_prompt
from .refine import (
    causal_smooth,
    causal_softmax_refine,
    gaussian_kernel,
    gaussian_smooth,
    position_weights,
    softmax_refine,
)
from .segments import expand_to_frames, sample_indices, segment_count, segment_means, segment_video
from .types import Segment, Verdict

__all__ = [
    "AnnotationError", "CausalParams", "CausalScorer", "CorevadError", "DataError", "FeatureError",
    "ModelError", "OfflineParams", "ResponseCountError", "ScoredSegment", "Segment", "Verdict",
    "VideoScores", "causal_smooth", "causal_softmax_refine", "clean_responses", "expand_to_frames",
    "gaussian_kernel", "gaussian_smooth", "load_prompt", "lrc_choice", "parse_answer", "parse_answers",
    "position_weights", "render_prompt", "sample_indices", "score_causal", "score_offline",
    "segment_count", "segment_means", "segment_video", "similarity", "softmax_refine",
]
__version__ = "0.1.0"
