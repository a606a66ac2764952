"""Which descriptions best support an alert: rank drivers by how much they read like an anomaly.

Why: an alert quotes the descriptions of the segments that drove it, but a VLM's "Anomalous" verdict can
come with a description that does not support it ("Two individuals are embracing each other in the
parking lot"). Each description gets a support in (0, 1): a logistic of how much closer it is, in the
sentence encoder's space, to short anomaly reference phrases than to normal ones. The alert tracker then
ranks descriptions by weight x support, so the first sentence of an alert is the one that explains it.
Pure: embeddings in, numbers out; the phrases are data.
"""

from __future__ import annotations

import numpy as np

ANOMALY_PHRASES: tuple[str, ...] = (
    "people are fighting", "a person is attacked and hit", "someone is shot with a gun", "an explosion",
    "a fire is burning", "a car crash on the road", "a person steals something", "a robbery with a weapon",
    "someone breaks into a building", "vandalism, property is damaged", "the police arrest a person",
    "a person is abused", "someone is shoplifting in a store", "a violent struggle", "a person falls down injured",
)
NORMAL_PHRASES: tuple[str, ...] = (
    "people walk calmly", "cars drive normally on the road", "a quiet empty street", "people talk to each other",
    "customers shop in a store", "people stand and wait", "nothing unusual happens", "a normal everyday scene",
    "a person sits at a desk", "people are embracing each other",
)


def support(desc_emb: np.ndarray, anomaly_emb: np.ndarray, normal_emb: np.ndarray, *,
            temperature: float = 0.05) -> np.ndarray:
    """(n, d) unit description embeddings -> (n,) support in (0, 1): logistic of (max similarity to an
    anomaly phrase - max similarity to a normal phrase) / temperature. 0.5 = undecided."""
    d = np.atleast_2d(np.asarray(desc_emb, dtype=np.float32))
    margin = (d @ np.asarray(anomaly_emb, np.float32).T).max(axis=1) - (d @ np.asarray(normal_emb, np.float32).T).max(
        axis=1)
    supported: np.ndarray = 1.0 / (1.0 + np.exp(-margin.astype(np.float64) / temperature))
    return supported


def classify(text_emb: np.ndarray, class_emb: np.ndarray) -> np.ndarray:
    """Zero-shot class of each text: the index of the most similar class embedding."""
    classes: np.ndarray = np.argmax(np.atleast_2d(text_emb) @ np.asarray(class_emb).T, axis=1)
    return classes
