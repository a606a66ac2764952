#!/usr/bin/env bash
# The main job on a fresh machine: install everything, then watch cameras.
#   no arguments, no GPU: `corevad-stream demo` (recorded InternVL2-8B answers of UCF-Crime videos replayed as
#                         live cameras: real alerts and explanations; needs the public answers file, found in
#                         ../shared/data when present)
#   otherwise:            `corevad-stream run -c configs/demo.yaml "$@"` (a generated sample clip
#                         looped as a camera, the embedded MQTT broker); add --tiny-model where no model
#                         weights can be downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
if [ "$#" -eq 0 ] && ! .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
    2>/dev/null; then
  echo "no GPU here: running the demo (recorded model answers as live cameras; Ctrl-C to stop)"
  exec .venv/bin/corevad-stream demo
fi
exec .venv/bin/corevad-stream run -c configs/demo.yaml "$@"
