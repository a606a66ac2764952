"""Config schema: defaults, errors naming the field, per-camera overrides, exposure rules, redaction."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from corevad_stream.config import OverloadPolicy, config_from_dict, load_config
from corevad_stream.errors import ConfigError
from corevad_stream.redact import RedactingFilter, redact

REPO = Path(__file__).resolve().parents[2]


def test_shipped_configs_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COREVAD_MQTT_PASSWORD", "x")
    demo = load_config(REPO / "corevad_stream" / "data" / "demo.yaml")
    assert demo.cameras[0].url == "sample://demo" and demo.mqtt.embedded_broker.enabled
    example = load_config(REPO / "corevad_stream" / "data" / "cameras.example.yaml")
    assert example.camera_section(example.cameras[1], "alerts").cooldown_s == 300
    assert example.camera_section(example.cameras[0], "alerts").cooldown_s == demo.alerts.cooldown_s
    assert example.runtime.overload_policy is OverloadPolicy.DROP_OLDEST


def test_runtime_defaults_are_the_tuning_protocols_choice() -> None:
    """The schema's scoring and alert defaults are tools/tune_causal.py's output (data/replay_ucf.yaml)."""
    import yaml

    tuned = yaml.safe_load((REPO / "corevad_stream" / "data" / "replay_ucf.yaml").read_text())
    cfg = config_from_dict({"cameras": [{"name": "a", "url": "x.mp4"}]})
    assert cfg.refinement.use_features == "auto"  # tuned text-only; CLIP only where a GPU runs it (see below)
    for key, value in tuned["refinement"].items():
        assert getattr(cfg.refinement, key) == value, key
    for key, value in tuned["alerts"].items():
        assert getattr(cfg.alerts, key) == value, key
    assert cfg.model.vlm.max_new_tokens == 48 and cfg.runtime.max_batch == 8


@pytest.mark.parametrize(("data", "field"), [
    ({"cameras": [{"name": "a", "url": "x", "colour": "red"}]}, "cameras.0.colour"),
    ({"cameras": [{"name": "a b", "url": "x"}]}, "cameras.0.name"),
    ({"cameras": [{"name": "a", "url": "x"}], "alerts": {"open_threshold": 0.3, "close_threshold": 0.5}},
     "close_threshold"),
    ({"cameras": [{"name": "a", "url": "x", "refinement": {"lrc_lookahead": 3}}]}, "cameras.0.refinement"),
    ({"cameras": [{"name": "a", "url": "x"}], "runtime": {"overload_policy": "yolo"}}, "runtime.overload_policy"),
    ({"cameras": [{"name": "a", "url": "x"}, {"name": "a", "url": "y"}]}, "used twice"),
    ({"cameras": []}, "cameras"),
    ({"cameras": [{"name": "a", "url": "rtsp://h/s", "overload_policy": "block"}]}, "'block' is lossless replay"),
    ({"cameras": [{"name": "a", "url": "x"}], "mqtt": {"hots": "x"}}, "mqtt.hots"),
])
def test_errors_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError, match="invalid config") as err:
        config_from_dict(data, source="cams.yaml")
    assert field in str(err.value) and "cams.yaml" in str(err.value)


def test_metrics_off_loopback_need_credentials() -> None:
    cams = [{"name": "a", "url": "x"}]
    with pytest.raises(ConfigError, match="metrics.host '0.0.0.0' is not loopback"):
        config_from_dict({"cameras": cams, "metrics": {"host": "0.0.0.0"}})
    ok = config_from_dict({"cameras": cams, "metrics": {"host": "0.0.0.0", "username": "u",
                                                        "password_env": "M_PW"}})
    assert ok.metrics.host == "0.0.0.0"


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="missing.yaml does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_credentials_never_show_in_repr_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    url = "rtsp://admin:hunter2@10.0.0.5:554/live?token=abc123"
    cfg = config_from_dict({"cameras": [{"name": "a", "url": url}]})
    assert cfg.cameras[0].url == url  # the real URL is still used to connect
    for text in (repr(cfg), str(cfg), repr(cfg.cameras[0]), cfg.cameras[0].safe_url):
        assert "hunter2" not in text and "abc123" not in text
    assert redact(f"failed {url} twice") == "failed rtsp://***@10.0.0.5:554/live?token=*** twice"
    logger = logging.getLogger("test.redact")
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    caplog.handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("opening %s", url)
        try:
            raise OSError(f"cannot connect to {url}")
        except OSError:
            logger.exception("camera failed")
    finally:
        logger.removeHandler(handler)
    text = caplog.text
    assert "rtsp://***@10.0.0.5" in text and "hunter2" not in text and "abc123" not in text


def test_clip_features_default_to_auto_on_where_a_gpu_is(monkeypatch: pytest.MonkeyPatch) -> None:
    import corevad.models._device as device

    cams = [{"name": "a", "url": "x.mp4"}, {"name": "b", "url": "frameless://30"}]
    cfg = config_from_dict({"cameras": cams})
    assert cfg.refinement.use_features == "auto"
    monkeypatch.setattr(device, "gpu_available", lambda: False)
    assert not cfg.uses_features()  # a CPU machine: no CLIP, labels (or the text context)
    monkeypatch.setattr(device, "gpu_available", lambda: True)
    assert cfg.uses_features()  # a GPU deployment: the paper's CLIP LRC + refinement
    assert not config_from_dict({"cameras": cams, "model": {"clip": None}}).uses_features()
    assert not config_from_dict({"cameras": cams[1:]}).uses_features()  # frame-less cameras have no images
    assert config_from_dict({"cameras": cams, "refinement": {"text_context": True}}).uses_features()
    with pytest.raises(ConfigError, match="exclusive"):
        config_from_dict({"cameras": cams, "refinement": {"use_features": True, "text_context": True}})
