"""Shared fixtures: where the real model files live (assembled by `make test`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EVALDATA = REPO.parent / "shared" / "evaldata"

# Tests run offline, like the product.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("SCARF_NO_ANALYTICS", "true")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    path = Path(os.environ.get("ZHIKU_MODELS_DIR", REPO / "data" / "models"))
    if not path.exists():
        pytest.fail(f"model files missing at {path}: run `make test` (it assembles them)")
    return path


@pytest.fixture(scope="session")
def evaldata() -> Path:
    if not EVALDATA.exists():
        pytest.fail(f"evaluation data missing at {EVALDATA}")
    return EVALDATA
