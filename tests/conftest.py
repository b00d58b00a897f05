import copy
import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REAL = ("report-6.8.0.json", "report-8.7.0.json")
PER_VERSION = tuple(f"rc-{major}.x.json" for major in range(9))


def load(name: str) -> dict:
    with open(FIXTURES / name, encoding="utf-8") as fh:
        return json.load(fh)


_CACHE: dict[str, dict] = {}


@pytest.fixture
def fixture_doc():
    """Return a fresh deep copy of a fixture record by file name."""
    def get(name: str) -> dict:
        if name not in _CACHE:
            _CACHE[name] = load(name)
        return copy.deepcopy(_CACHE[name])
    return get
