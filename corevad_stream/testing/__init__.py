"""Helpers for corevad's tests and benchmarks (tests/ and tools/ import them from here), shipped but not
part of the monitor: nothing in the runtime imports this package.

- services: real outside programs on free loopback ports (Mosquitto, the GStreamer RTSP camera,
  `transformers serve`), a recording MQTT subscriber, free_port / port_open / wait_until;
- model_server: a scriptable OpenAI-compatible server (answers, 500s, 429s, hangs, garbage) over real HTTP;
- postgres: a real PostgreSQL server (run as the postgres user under root) with a `corevad` role;
- clips: generated test videos;
- doubles: small doubles of corevad's model protocols (a scripted VLM backend, a hash text/image encoder).
"""

from .clips import make_test_video, write_moving_square_video
from .doubles import ANOMALOUS, GARBLED, NORMAL, HashEncoder, ScriptedBackend
from .model_server import ScriptedModelServer
from .services import (
    LOOPBACK,
    Mosquitto,
    MqttCollector,
    Received,
    RtspServer,
    ServiceError,
    TransformersServe,
    free_port,
    make_test_ca,
    port_open,
    wait_until,
)

__all__ = [
    "ANOMALOUS",
    "GARBLED",
    "LOOPBACK",
    "NORMAL",
    "HashEncoder",
    "Mosquitto",
    "MqttCollector",
    "Received",
    "RtspServer",
    "ScriptedBackend",
    "ScriptedModelServer",
    "ServiceError",
    "TransformersServe",
    "free_port",
    "make_test_ca",
    "make_test_video",
    "port_open",
    "wait_until",
    "write_moving_square_video",
]
