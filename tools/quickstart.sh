#!/usr/bin/env bash
# The main job on a fresh machine: install everything, then run the monitor on corevad_stream/data/demo.yaml
# (a generated sample clip looped as a camera, the embedded MQTT broker on 127.0.0.1:1883).
# Extra arguments go to `corevad-stream run`, e.g. --tiny-model where no model weights can be downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/corevad-stream run -c corevad_stream/data/demo.yaml "$@"
