#!/usr/bin/env bash
# The project's test command (run by `make test` and by CI). Each step names what failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
V=.venv/bin
t0=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - t0 ))s)"; }

step "1/5 notebooks and library in sync (nbdev_clean + nbdev_export leave git clean)"
if git rev-parse --git-dir >/dev/null 2>&1; then
  state() { git status --porcelain -- nbs hindsight_ref README.md docs; git diff -- nbs hindsight_ref README.md docs | sha1sum; }
  before=$(state)
  $V/nbdev_clean >/dev/null && $V/nbdev_export && $V/python tools/readme.py
  after=$(state)
  if [ "$before" != "$after" ]; then
    echo "FAIL: notebooks and library (or README) are out of sync. Edit the notebooks, then run"
    echo "      nbdev_clean && nbdev_export && python tools/readme.py, and commit the result. Changed:"
    git status --porcelain -- nbs hindsight_ref README.md docs
    exit 1
  fi
  echo "in sync"
else
  echo "not a git checkout: sync check skipped"
fi

step "2/5 lint: ruff check --select F (unused imports and names, undefined names) over hindsight_ref/ tests/ tools/"
$V/ruff check --select F --output-format concise hindsight_ref tests tools || {
  echo "FAIL: lint. Fix each finding above in the notebook its module comes from (hindsight_ref/ is generated from nbs/),"
  echo "      or in the test or tool file; then run nbdev_export. \`ruff check --select F --fix\` removes unused imports."; exit 1; }

step "3/5 nbdev_test over all notebooks (cells flagged slow or cuda are skipped)"
$V/nbdev_test --n_workers 2 --timing || { echo "FAIL: nbdev_test (the failing notebook and cell are printed above)"; exit 1; }

step "4/5 docs build without Quarto (tools/build_docs.py)"
export DOCS_SITE=$(mktemp -d)  # the browser test in step 5 (tests/test_docs.py, when Chromium is there) opens this build
$V/python tools/build_docs.py --out "$DOCS_SITE" --check || { echo "FAIL: docs build (problems listed above)"; exit 1; }

step "5/5 pytest tests/"
$V/python -m pytest tests -q -p no:cacheprovider
rc=$?
echo "total $(( $(date +%s) - t0 ))s"
exit $rc
