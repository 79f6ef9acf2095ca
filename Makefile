# Two commands do everything on a fresh machine; both build .venv/ on first use and reuse it after.
#   make demo   the main job on the embedded default model (SmolLM2-135M-Instruct, offline)
#   make test   notebook/library sync check, nbdev_test over every notebook, pytest, docs build
# And for the documentation site (docs/README.md):
#   make docs        build the site into docs/_site/ (no Quarto needed); open docs/_site/index.html
#   make docs-check  install Chromium when missing (Debian: apt-get install chromium chromium-driver), build the
#                    site, open every page in headless Chromium (titles, console errors, images, math, links, the
#                    API's source links and parameter tables, the search box) and save a screenshot of the landing
#                    page; prints the pages (notebooks and one per module), images, links checked and the API entries
#                    without a full parameter table (a failure when there is one)
.PHONY: demo test env sync nbtest pytest docs docs-check browser slow clean-notebooks

VENV := .venv/bin
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export MPLBACKEND ?= Agg

env:
	@bash tools/env.sh

demo: env
	$(VENV)/hindsight-ref demo --out runs/demo

test: env
	@bash tools/test.sh

slow: env
	HINDSIGHT_REF_SLOW=1 $(VENV)/nbdev_test --flags slow --timing

docs: env
	$(VENV)/python tools/build_docs.py --out docs/_site

# Chromium and its driver from Debian; nothing to do when both are there. Root, or sudo, installs them.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "browser: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; fi

docs-check: env browser docs
	DOCS_SITE=docs/_site $(VENV)/python -m pytest tests/test_docs.py -q -s -p no:cacheprovider
