"""The one loopback check, the one secrets reader and URL redaction (issue 8, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corevad_stream.config import ConfigError, config_from_dict
from corevad_stream.redact import redact
from corevad_stream.security import SecretError, is_loopback, read_secret


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_addresses_and_names(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["127.example.com", "127.0.0.1.evil.test", "0.0.0.0", "192.168.1.10", "::",
                                  "camera-host.invalid", "", "localhost.evil.test"])
def test_prefixes_unresolvable_names_and_wildcards_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_metrics_on_a_name_that_only_looks_like_loopback_needs_credentials() -> None:
    with pytest.raises(ConfigError, match="127.0.0.1.evil.test' is not loopback"):
        config_from_dict({"cameras": [{"name": "a", "url": "x.mp4"}], "metrics": {"host": "127.0.0.1.evil.test"}})


@pytest.mark.parametrize(("text", "secret"), [
    ("rtsp://admin:p@ss-secret@cam.lan/stream", "ss-secret"),
    ("rtsp://admin:pa/ss@10.0.0.5:554/h264", "pa/ss"),
    ("cannot open stream rtsp://u:hunter2@[fe80::1]:554/x (404)", "hunter2"),
    ("rtsp://cam.lan/live?user=admin&pw=hunter2", "hunter2"),
    ("http://cam.lan/snap.jpg?apikey=abc123&x=1", "abc123"),
    ("http://cam.lan/x?access_token=tok9&y=2", "tok9"),
    ("https://s3.example/v?X-Amz-Signature=deadbeef", "deadbeef"),
    ("rtsp://cam.lan/x;password=topsecret", "topsecret"),
    ("url='rtsp://admin:s3cr3t@cam/' in repr", "s3cr3t"),
])
def test_redaction_hides_every_credential_form(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and "***" in out, out


def test_redaction_keeps_host_path_and_harmless_query() -> None:
    assert redact("rtsp://admin:p@ss@cam.lan:554/live?channel=2") == "rtsp://***@cam.lan:554/live?channel=2"
    assert redact("rtsp://cam.lan/live?channel=2") == "rtsp://cam.lan/live?channel=2"


def test_secret_reader_file_env_and_errors_name_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "pw"
    f.write_text("  s3cret \n")
    assert read_secret(env=None, file=f, field="mqtt.password").get_secret_value() == "s3cret"  # type: ignore[union-attr]
    monkeypatch.setenv("COREVAD_TEST_PW", "fromenv")
    assert read_secret(env="COREVAD_TEST_PW", file=None, field="x").get_secret_value() == "fromenv"  # type: ignore[union-attr]
    assert read_secret(env=None, file=None, field="x") is None
    monkeypatch.delenv("COREVAD_TEST_PW")
    with pytest.raises(SecretError, match="mqtt.password_env: environment variable COREVAD_TEST_PW is not set"):
        read_secret(env="COREVAD_TEST_PW", file=None, field="mqtt.password")
    with pytest.raises(SecretError, match="metrics.password_file: .*missing does not exist"):
        read_secret(env=None, file=tmp_path / "missing", field="metrics.password")
    big = tmp_path / "big"
    with big.open("wb") as fh:  # sparse: 100 MB that must never be read whole
        fh.truncate(100_000_000)
    with pytest.raises(SecretError, match="100,000,000 bytes"):
        read_secret(env=None, file=big, field="metrics.password")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretError, match="is empty"):
        read_secret(env=None, file=tmp_path / "empty", field="metrics.password")
    with pytest.raises(SecretError, match="not a regular file"):
        read_secret(env=None, file=tmp_path, field="metrics.password")
