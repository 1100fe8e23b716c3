# The README's two commands: `make run` (the product, embedded default) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
DEB_PACKAGES := libmagic1 chromium chromium-driver fonts-noto-cjk
TEST_MODELS := qwen2.5-coder-0.5b-instruct-q4_k_m.gguf qwen2.5-coder-1.5b-instruct-q4_k_m.gguf embeddinggemma-300m

export DO_NOT_TRACK := true
export SCARF_NO_ANALYTICS := true
export HF_HUB_OFFLINE := 1

.PHONY: run test install system-deps models bench

run: install
	$(BIN)/zhiku models
	$(BIN)/zhiku up

test: install system-deps
	$(BIN)/zhiku models $(TEST_MODELS)
	$(BIN)/python -m pytest

install: $(STAMP)

# constraints.txt holds torch on the CPU wheel; without it several extras pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
