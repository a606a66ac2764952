"""One PNG per video: the score curve over the ground-truth anomalous spans."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .benchmarks import VideoGT


def plot_video(video: VideoGT, curves: dict[str, np.ndarray], out_dir: str | Path) -> Path:
    """Draw each named per-frame curve over the video's GT spans; returns the PNG path."""
    from .optional import require

    matplotlib = require("matplotlib", what="--plots")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
    for s, e in video.spans:
        ax.axvspan(s, min(e, video.frames), color="tab:red", alpha=0.2, lw=0)
    for name, y in curves.items():
        ax.plot(np.arange(len(y)), y, lw=1.2, label=name)
    ax.set_xlim(0, video.frames)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("frame")
    ax.set_ylabel("score")
    ax.set_title(f"{video.name} ({video.cls}); shaded: ground-truth anomaly")
    if len(curves) > 1:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = out / f"{video.name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path
