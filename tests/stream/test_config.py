"""Config schema: defaults, errors naming the field, per-camera overrides, exposure rules, redaction; the one
strict base, secret reference and backoff shape; bad configs through `check` (exit 2, one line)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from corevad.schema import BackoffConfig, StrictModel
from corevad_stream.cli import main as cli_main
from corevad_stream.config import (
    EmbeddedBrokerConfig,
    MqttConfig,
    MqttReconnectConfig,
    OverloadPolicy,
    ReconnectConfig,
    StreamConfig,
    config_from_dict,
    load_config,
    shipped_config,
)
from corevad_stream.errors import ConfigError
from corevad_stream.redact import RedactingFilter, redact

REPO = Path(__file__).resolve().parents[2]
CAMS = [{"name": "a", "url": "x.mp4"}]


def test_shipped_configs_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COREVAD_MQTT_PASSWORD", "x")
    demo = load_config(shipped_config("demo.yaml"))
    assert demo.mqtt is not None
    assert demo.cameras[0].url == "sample://demo" and demo.mqtt.embedded_broker.enabled
    example = load_config(shipped_config("cameras.example.yaml"))
    assert example.camera_section(example.cameras[1], "alerts").cooldown_s == 300
    assert example.camera_section(example.cameras[0], "alerts").cooldown_s == demo.alerts.cooldown_s
    assert example.runtime.overload_policy is OverloadPolicy.DROP_OLDEST


def test_runtime_defaults_are_the_tuning_protocols_choice() -> None:
    """The schema's scoring and alert defaults are tools/tune_causal.py's output (configs/replay_ucf.yaml)."""
    import yaml

    tuned = yaml.safe_load(shipped_config("replay_ucf.yaml").read_text())
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


def test_shipped_configs_are_read_from_the_top_level_configs_folder() -> None:
    # From a checkout the files are configs/ itself (tests/test_wheel.py checks the installed wheel's copies).
    for name in ("cameras.example.yaml", "demo.yaml", "replay_ucf.yaml", "replay_ucf_text.yaml", "corevad.service"):
        path = shipped_config(name)
        assert path.is_file() and path.resolve() == (REPO / "configs" / name).resolve(), name
    assert not (REPO / "corevad_stream" / "data" / "demo.yaml").exists()  # moved, not copied


def _models(annotation: Any, seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    """Every pydantic model class a field annotation reaches (through Optional, list, dict, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation not in seen:
            seen.add(annotation)
            for field in annotation.model_fields.values():
                _models(field.annotation, seen)
        return seen
    for arg in typing.get_args(annotation):
        _models(arg, seen)
    return seen


def test_every_section_uses_the_one_strict_base() -> None:
    models = _models(StreamConfig, set())
    names = {m.__name__ for m in models}
    # The sections that had their own bases before: MQTT, the embedded broker, the model schema.
    assert {"MqttConfig", "MqttTlsConfig", "EmbeddedBrokerConfig", "VLMConfig", "OpenAIOptions", "ClipConfig",
            "MetricsConfig", "ReconnectConfig", "MqttReconnectConfig"} <= names
    assert [m.__name__ for m in models if not issubclass(m, StrictModel)] == []
    assert StreamConfig.model_fields["mqtt"].annotation == MqttConfig | None  # typed, not Any
    # the broker's base lacked allow_inf_nan=False; now inf is refused in every section
    for section, field in (("mqtt", "connect_timeout_s"), ("metrics", "port"), ("runtime", "max_wait_s")):
        with pytest.raises(ConfigError, match=f"{section}.{field}: Input should be a finite number"):
            config_from_dict({"cameras": CAMS, section: {field: float("inf")}})
    with pytest.raises(ConfigError, match="mqtt.embedded_broker.colour"):
        config_from_dict({"cameras": CAMS, "mqtt": {"embedded_broker": {"colour": 1}}})


def test_the_schema_imports_no_sink_and_no_stage() -> None:
    code = ("import sys, corevad_stream.config; print(sorted(m for m in sys.modules if m.startswith("
            "('corevad_stream.sinks', 'corevad_stream.broker', 'corevad_stream.app', 'corevad_stream.sources'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []


@pytest.mark.parametrize(("section", "field"), [("metrics", "metrics.password"), ("mqtt", "mqtt.password"),
                                                 ("embedded_broker", "embedded_broker.password")])
def test_one_secret_reference_with_the_same_checks_everywhere(section: str, field: str, tmp_path: Path) -> None:
    both = {"username": "u", "password_env": "PW", "password_file": str(tmp_path / "pw")}
    no_user = {"password_env": "PW"}
    wrap = (lambda d: {"mqtt": {"embedded_broker": d}}) if section == "embedded_broker" else (lambda d: {section: d})
    with pytest.raises(ConfigError, match=f"{field}: give {field}_env or {field}_file, not both"):
        config_from_dict({"cameras": CAMS, **wrap(both)})
    with pytest.raises(ConfigError, match=f"{field}_env/{field}_file need a username"):
        config_from_dict({"cameras": CAMS, **wrap(no_user)})
    ok = config_from_dict({"cameras": CAMS, **wrap({"username": "u", "password_env": "PW"})})
    assert ok.metrics is not None  # the same section with one source and a user is accepted
    with pytest.raises(ConfigError, match="tls.key_password: give tls.key_password_env or"):
        config_from_dict({"cameras": CAMS, "mqtt": {"tls": {"key_password_env": "K", "key_password_file": "k"}}})


def test_the_embedded_broker_still_needs_a_password_with_its_user() -> None:
    with pytest.raises(ValueError, match="go together"):
        EmbeddedBrokerConfig(username="u")


def test_one_backoff_shape_and_the_old_mqtt_spelling_still_works() -> None:
    assert issubclass(ReconnectConfig, BackoffConfig) and issubclass(MqttReconnectConfig, BackoffConfig)
    old = MqttReconnectConfig.model_validate({"min_delay_s": 0.2, "max_delay_s": 4, "factor": 3})
    new = MqttReconnectConfig.model_validate({"initial_s": 0.2, "max_s": 4, "factor": 3})
    assert old.policy() == new.policy() and old.policy().initial_s == 0.2 and old.policy().max_s == 4
    cams = config_from_dict({"cameras": CAMS, "runtime": {"reconnect": {"initial_s": 0.2, "max_s": 4,
                                                                           "factor": 3, "jitter": 0.3}}})
    assert cams.runtime.reconnect.policy() == new.policy()
    with pytest.raises(ConfigError, match="mqtt.reconnect.factor: Input should be greater than or equal to 1"):
        config_from_dict({"cameras": CAMS, "mqtt": {"reconnect": {"factor": 0.5}}})


def _check(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> tuple[int, str]:
    cfg = tmp_path / "cams.yaml"
    cfg.write_text(text)
    code = cli_main(["check", "-c", str(cfg)])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(("data", "message"), [
    ({"mqtt": {"home_assistant": {"discovery": True, "discovery_prefix": "ha/#"}}},
     "mqtt.home_assistant.discovery_prefix: discovery_prefix 'ha/#' must not hold the MQTT wildcard(s) '#'"),
    ({"mqtt": {"home_assistant": {"discovery_prefix": "ha/+/x"}}}, "must not hold the MQTT wildcard(s) '+'"),
    ({"mqtt": {"prefix": "$SYS/x"}}, "mqtt.prefix: prefix '$SYS/x' must not start with '$'"),
    ({"mqtt": {"prefix": "cams/#"}}, "mqtt.prefix: prefix 'cams/#' must not hold the MQTT wildcard(s) '#'"),
    ({"cameras": [{"name": "a", "url": "sample://../../x"}]},
     "cameras.0.url: sample://../../x: a sample is named with letters, digits, _ and - only"),
    ({"cameras": [{"name": "a", "url": "sample://a/b"}]}, "cameras.0.url: sample://a/b: a sample is named"),
    ({"cameras": [{"name": "a", "url": "frameless://30?fps=0"}]},
     "cameras.0.url: frameless:// ?fps=0 must be > 0"),
    ({"cameras": [{"name": "a", "url": "frameless://30?fps=nan"}]}, "cameras.0.url: frameless:// ?fps=nan"),
    ({"cameras": [{"name": "a", "url": "frameless://abc"}]},
     "cameras.0.url: frameless://<frames>: 'abc' is not a whole number of frames"),
])
def test_check_refuses_topics_samples_and_rates_that_break_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"cameras": [{"name": "a", "url": "frameless://30?fps=30"}], "metrics": {"enabled": False}}
    code, err = _check(tmp_path, capsys, json.dumps({**base, **data}))
    assert code == 2 and "\n" not in err, err
    assert err.startswith("config error:") and str(tmp_path / "cams.yaml") in err and message in err, err
    fixed = json.loads(json.dumps({**base, **data}).replace("ha/#", "ha").replace("ha/+/x", "ha/x")
                       .replace("$SYS/x", "sys/x").replace("cams/#", "cams").replace("../../x", "x")
                       .replace("a/b", "ab").replace("fps=0", "fps=1").replace("fps=nan", "fps=2")
                       .replace("//abc", "//12"))
    assert config_from_dict(fixed).cameras[0].name == "a"  # the same config, that one value fixed, is valid


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_check_refuses_yaml_nested_10000_deep_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], opening: str) -> None:
    closing = {"[": "]", "{a: ": "}"}[opening]
    code, err = _check(tmp_path, capsys, "cameras: " + opening * 10_000 + "1" + closing * 10_000 + "\n")
    assert code == 2 and "\n" not in err and "RecursionError" not in err, err
    assert "not valid YAML: line 1, column" in err and "nested deeper than 64 levels" in err, err


def test_yaml_errors_are_one_line_without_the_source_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _check(tmp_path, capsys, "cameras:\n  - name: a\n    url: rtsp://admin:hunter2@cam/\n\tbad: 1\n")
    assert code == 2 and "\n" not in err and "hunter2" not in err, err
    assert "cams.yaml: not valid YAML: line 4, column 1:" in err, err
    code, err = _check(tmp_path, capsys, "- a\n- b\n")
    assert code == 2 and "the top level must be a mapping, got list" in err, err
