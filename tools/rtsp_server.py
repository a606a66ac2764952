#!/usr/bin/python3
"""A live RTSP camera for tests and demos: GStreamer's RTSP server serving a looped file or a test pattern.

Run it with Debian's /usr/bin/python3 (python3-gi and GstRtspServer are not visible inside a venv):

    /usr/bin/python3 tools/rtsp_server.py --port 8554 --mount /cam --file clip.mp4
    /usr/bin/python3 tools/rtsp_server.py --port 8554 --mount /cam --testsrc --size 640x480 --fps 30

It prints `READY rtsp://HOST:PORT/MOUNT` on stdout once it listens, and exits cleanly on SIGTERM/SIGINT.
A file is decoded by a private pipeline and pushed into the served one at the file's frame rate (paced by
the wall clock, like a real camera), seeking back to the start at the end, so every client sees one live,
endlessly looping stream; x264enc tune=zerolatency with a keyframe every second lets a reader that joins
mid-stream start decoding within a second.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ENCODE = (
    "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate={kbps} "
    "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1"
)


class LoopedFile:
    """Decodes a video file to raw frames forever (seeking to 0 at the end); thread-safe pull()."""

    def __init__(self, path: str, fps: float | None) -> None:
        self.pipeline = Gst.parse_launch(
            f'filesrc location="{path}" ! decodebin ! videoconvert ! video/x-raw,format=I420 '
            "! appsink name=sink sync=false max-buffers=4 drop=false"
        )
        self.sink = self.pipeline.get_by_name("sink")
        self.lock = threading.Lock()
        if self.pipeline.set_state(Gst.State.PAUSED) == Gst.StateChangeReturn.FAILURE:
            raise SystemExit(f"rtsp_server: cannot open {path}")
        self.pipeline.set_state(Gst.State.PLAYING)
        first = self.sink.emit("try-pull-preroll", 10 * Gst.SECOND) or self.sink.emit(
            "try-pull-sample", 10 * Gst.SECOND
        )
        if first is None:
            raise SystemExit(f"rtsp_server: no decodable video frames in {path}")
        structure = first.get_caps().get_structure(0)
        self.width = structure.get_value("width")
        self.height = structure.get_value("height")
        ok, num, den = structure.get_fraction("framerate")
        self.fps = fps or (num / den if ok and num > 0 and den > 0 else 30.0)
        fps_num = round(self.fps * 1000)
        self.caps = Gst.Caps.from_string(
            f"video/x-raw,format=I420,width={self.width},height={self.height},framerate={fps_num}/1000"
        )

    def pull(self) -> Gst.Buffer:
        with self.lock:
            for _ in range(3):
                sample = self.sink.emit("try-pull-sample", 5 * Gst.SECOND)
                if sample is not None:
                    return sample.get_buffer()
                # End of file (or a stall): loop back to the first frame.
                self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
            raise RuntimeError("rtsp_server: the file stopped producing frames")


class FileFactory(GstRtspServer.RTSPMediaFactory):
    """Media factory whose appsrc is fed from one shared LoopedFile at its frame rate."""

    def __init__(self, source: LoopedFile, kbps: int) -> None:
        super().__init__()
        self.source = source
        gop = max(1, round(source.fps))
        self.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=true block=false "
            f"! videoconvert ! {ENCODE.format(gop=gop, kbps=kbps)} )"
        )
        self.set_shared(True)
        self.connect("media-configure", self._configure)

    def _configure(self, _factory: object, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_child_by_name("src")
        appsrc.set_property("caps", self.source.caps)
        period = 1.0 / self.source.fps
        state = {"next": time.monotonic()}

        def need_data(src: Gst.Element, _length: int) -> None:
            # Runs in appsrc's own streaming thread: sleeping here paces the stream like a camera.
            delay = state["next"] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            state["next"] = max(state["next"] + period, time.monotonic() - period)
            buf = self.source.pull().copy()
            buf.pts = Gst.CLOCK_TIME_NONE  # do-timestamp stamps it with the running time
            buf.dts = Gst.CLOCK_TIME_NONE
            buf.duration = int(period * Gst.SECOND)
            src.emit("push-buffer", buf)

        appsrc.connect("need-data", need_data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    parser.add_argument("--port", type=int, required=True, help="TCP port for RTSP")
    parser.add_argument("--mount", default="/cam", help="mount path, e.g. /cam")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="video file to serve, looped forever")
    src.add_argument("--testsrc", action="store_true", help="serve GStreamer's videotestsrc pattern")
    parser.add_argument("--size", default="640x480", help="WxH for --testsrc")
    parser.add_argument("--fps", type=float, default=None, help="frame rate (default: the file's, or 30)")
    parser.add_argument("--kbps", type=int, default=1500, help="H.264 bitrate in kbit/s")
    args = parser.parse_args(argv)
    mount = args.mount if args.mount.startswith("/") else "/" + args.mount

    Gst.init(None)
    if args.file:
        factory: GstRtspServer.RTSPMediaFactory = FileFactory(LoopedFile(args.file, args.fps), args.kbps)
    else:
        width, height = (int(v) for v in args.size.lower().split("x"))
        fps = round(args.fps or 30)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
            f"framerate={fps}/1 ! videoconvert ! {ENCODE.format(gop=fps, kbps=args.kbps)} )"
        )
        factory.set_shared(True)

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(mount, factory)
    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, loop.quit)
    print(f"READY rtsp://{args.host}:{args.port}{mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
