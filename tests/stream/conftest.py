"""Fixtures exposing real services to the stream tests: Mosquitto, a GStreamer RTSP camera, test videos.

    mosquitto                 a running anonymous broker (function scope): .host .port .url .stop() .kill()
                              .start() .restart() (same port); persistence on, so retained messages and
                              clean_session=False subscriptions survive stop()/restart()
    mosquitto_factory(...)    more brokers, e.g. mosquitto_factory(username="u", password="p")
    test_video                a 4 s 320x240 30 fps H.264 MP4 made once per session (read-only: share it)
    video_factory(name, ...)  make_test_video into this test's tmp dir (seconds=, size=, fps=, pattern=)
    rtsp_server               a live RTSP camera looping test_video (function scope): .url .stop() .kill()
                              .start() .restart() keep the URL
    rtsp_server_factory(...)  more cameras: rtsp_server_factory(file=path) / (testsrc=True, size=(640, 480))
    mqtt_collector(broker, topics=("#",), **kw)   async factory of running MqttCollector subscribers
                              (persistent sessions: they see everything published across a broker restart)
    browser                   headless chromium under Selenium (session scope; console log kept)
    artifacts_dir             folder for screenshots and other files a person may want to look at
    store_at                  an event-store location, parametrized: sqlite and a real PostgreSQL database
                              (stream_doubles.store_section(at) gives its config section)

Tests using any of these are marked `services` automatically. Every service is killed at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corevad_stream.testing import Mosquitto, MqttCollector, RtspServer, make_test_video

SERVICE_FIXTURES = {
    "mosquitto", "mosquitto_factory", "rtsp_server", "rtsp_server_factory", "test_video", "video_factory",
    "mqtt_collector", "browser",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    brokers: list[Mosquitto] = []

    def make(**kwargs: Any) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"mosquitto{len(brokers)}", **kwargs)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.kill()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return mosquitto_factory()


@pytest.fixture(scope="session")
def test_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_video(tmp_path_factory.mktemp("videos") / "testsrc2_320x240_30fps.mp4")


@pytest.fixture
def video_factory(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "clip.mp4", **kwargs: Any) -> Path:
        return make_test_video(tmp_path / "videos" / name, **kwargs)

    return make


@pytest.fixture
def rtsp_server_factory(tmp_path: Path) -> Iterator[Callable[..., RtspServer]]:
    servers: list[RtspServer] = []

    def make(**kwargs: Any) -> RtspServer:
        server = RtspServer(tmp_path / f"rtsp{len(servers)}", **kwargs)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.kill()


@pytest.fixture
def rtsp_server(rtsp_server_factory: Callable[..., RtspServer], test_video: Path) -> RtspServer:
    return rtsp_server_factory(file=test_video)


@pytest.fixture
async def mqtt_collector() -> AsyncIterator[Callable[..., Awaitable[MqttCollector]]]:
    collectors: list[MqttCollector] = []

    async def make(broker: Mosquitto, topics: tuple[str, ...] | list[str] = ("#",), **kwargs: Any) -> MqttCollector:
        collector = MqttCollector(broker.host, broker.port, topics, **kwargs)
        await collector.start()
        collectors.append(collector)
        return collector

    yield make
    for collector in collectors:
        await collector.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven by Selenium through chromedriver (apt: chromium chromium-driver; no
    browser downloads). Browser console messages are kept for `driver.get_log("browser")`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_bin = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    missing = [str(p) for p in (chromium, driver_bin) if not p.exists()]
    if missing:  # tools/setup.sh installs both; a missing browser is a set-up error, not a skip
        pytest.fail(f"browser tests need {', '.join(missing)}: run tools/setup.sh --dev")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(chromium)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(str(driver_bin)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave files for people to look at (screenshots): $COREVAD_TEST_ARTIFACTS or ./test-artifacts."""
    import os

    path = Path(os.environ.get("COREVAD_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh event-store location on each backend, for the tests that must hold on both: a sqlite file, or a
    new database on the session's real PostgreSQL server (StoreLocation; its password is given apart)."""
    import os

    from corevad_stream.store import StoreLocation

    if request.param == "sqlite":
        return StoreLocation(path=tmp_path / "e.sqlite3")
    url = request.getfixturevalue("postgres_url")
    return StoreLocation(url=url, password=os.environ["COREVAD_TEST_PG_PASSWORD"])

