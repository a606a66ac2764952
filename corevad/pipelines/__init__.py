"""The paper's offline pipeline as library functions: extract CLIP features, generate VLM answers, LRC.

All three are resumable: finished work is kept in the output and skipped on the next run, every file is
written atomically (corevad.files), and a video that fails is reported and skipped while the others go on.
They report progress to a PipelineProgress (the `corevad` command line draws it with rich; a library
caller may pass none) and return a RunReport; none of them prints.
"""

from __future__ import annotations

from .extract import extract_features
from .generate import generate_responses
from .jobs import VideoJob, list_jobs
from .lrc import lrc_responses
from .report import NoProgress, PipelineProgress, RunReport

__all__ = [
    "NoProgress",
    "PipelineProgress",
    "RunReport",
    "VideoJob",
    "extract_features",
    "generate_responses",
    "list_jobs",
    "lrc_responses",
]
