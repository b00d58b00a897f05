"""The fast path (collector.gate.fastpath) accepts exactly what the pydantic model accepts.

check_report trusts the fast path for accepted records and asks pydantic only
for the violations of refused ones, so the two must agree on every record:
fixtures, every catalogue value replaced by values of every JSON type and of
the edges of the rules, unknown keys anywhere. In drop mode (the default) the
model sees the record without its unknown keys (``model.prune``), in refuse
mode the record itself.
"""

import copy
import math

import pytest
from catalogue_helpers import (
    PER_VERSION,
    REAL,
    _tokens,
    catalogue_walk,
    load,
    maximal_record,
    set_path,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from collector.gate import fastpath
from collector.gate import rules as privacy
from collector.gate.catalogue import FIELDS
from collector.gate.model import ReportModel, check_report, prune

_DOCS = {name: load(name) for name in REAL + PER_VERSION}
_DOCS["maximal"] = maximal_record()
_SPOTS = {name: [real for _c, real, _v in list(catalogue_walk(doc))[1:]] for name, doc in _DOCS.items()}
_VOCABULARY = sorted({v for f in FIELDS if f.values for v in f.values}, key=repr)

EDGES = [
    None, True, False, 0, 1, -1, 2**53 - 1, 2**53, -(2**53 - 1), -(2**53), 10**30, 1.5, -0.0, 1e300,
    math.nan, math.inf, "", "x", "6.8.0", "v22.1.0", "10.1.2.3", "other", "Chrome", "en", "pt-BR",
    "jane@acme.example", "https://x.example/y", "Jane Doe", "a" * 64, "a" * 65, "x" * 5000,
    "2024-07-02T11:12:00.221Z", "Sat Jun 29 2024 12:57:57 GMT+0000 (Coordinated Universal Time)",
    "1999-12-31T23:59:59Z", [], [1], [0.5, 2], ["x"], [None], [{}], {}, {"en": 1}, {"x": 1}, {"zz": None},
]


def _fast_accepts(doc, unknown: str = "drop") -> bool:
    try:
        unknown_fields = fastpath.flatten(doc)[4]
    except (fastpath.Refused, privacy.RuleViolation):
        return False
    return unknown == "drop" or not unknown_fields


def _model_accepts(doc) -> bool:
    try:
        ReportModel.model_validate(doc)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(_DOCS))
def test_fixtures_take_the_fast_path(name):
    assert _fast_accepts(_DOCS[name])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(_DOCS)), pick=st.integers(min_value=0, max_value=10**6),
       value=st.one_of(st.sampled_from(EDGES), st.sampled_from(_VOCABULARY), st.integers(), st.floats(),
                       st.text(max_size=80)),
       extra=st.one_of(st.none(), st.sampled_from(["notInCatalogue", "version", "en", "Jane Doe"])))
def test_fast_path_and_model_agree(name, pick, value, extra):
    doc = copy.deepcopy(_DOCS[name])
    spots = _SPOTS[name]
    spot = spots[pick % len(spots)]
    if extra is None:
        set_path(doc, spot, value)
    else:  # an extra key in the object holding the value
        container = doc
        for token in _tokens(spot)[:-1]:
            container = container[token]
        if not isinstance(container, dict):
            return
        container[extra] = value
    assert _fast_accepts(doc, "refuse") == _model_accepts(doc), spot
    assert _fast_accepts(doc, "drop") == _model_accepts(prune(doc)), spot
    for mode in ("drop", "refuse"):
        if not _fast_accepts(doc, mode):
            with pytest.raises(Exception) as info:
                check_report(doc, unknown=mode)
            assert info.type.__name__ == "SchemaViolation"


def test_generated_source_is_readable():
    text = fastpath.source("os")
    assert text.startswith("def walk(") and "'os.totalmem'" in text
