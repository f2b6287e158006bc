"""Compositing's acceptance rules, one by one: the standing of a round's clusters
(:func:`score_round`) and the reason :func:`decide` gives (the first rule that fails)."""

from __future__ import annotations

import numpy as np
import pytest

from difffit_screen.composite import (
    Cluster,
    CompositeParams,
    Placement,
    decide,
    decision_row,
    score_round,
)


def fits_row(candidate: str, score: float, inside: float = 0.9, fit_ok: bool = True,
             rank: int = 1) -> dict:
    return {"candidate": candidate, "score": score, "inside_fraction": inside,
            "fit_ok": fit_ok, "cluster_rank": rank, "hits": 5,
            "matrix": np.hstack([np.eye(3), np.zeros((3, 1))]).ravel()}


def cluster(**kw) -> Cluster:
    """An acceptable cluster of subunit ``a``, with ``kw`` changed."""
    base = {"z": 10.0, "top_group": True, "rel": 1.0, "best": 0.5, "max_inside": 0.9}
    row = fits_row("a", kw.pop("score", 0.5), kw.pop("inside", 0.9), kw.pop("fit_ok", True))
    return Cluster(row, **{**base, **kw})


def test_score_round_splits_each_subunit_at_its_gap_and_keeps_the_row_order():
    rows = [fits_row("a", s, rank=i + 1) for i, s in enumerate([0.60, 0.58, 0.20, 0.21, 0.19])]
    rows.insert(2, fits_row("b", 0.4, inside=0.5))
    placed = Placement("A", "a", "", np.zeros(12), 1, cluster(inside=0.97), np.zeros((1, 3)))
    out = score_round(rows, [placed], min_spread=0.005)
    assert [c.row for c in out] == rows  # same rows, same order, unchanged
    a = [c for c in out if c.subunit == "a"]
    assert [c.top_group for c in a] == [True, True, False, False, False]
    assert a[0].z > 3 and abs(a[3].z) < 3 and a[0].best == 0.60
    assert a[0].rel == pytest.approx(1.0) and a[1].rel == pytest.approx(0.38 / 0.40)
    assert all(c.max_inside == 0.97 for c in a)  # the copy placed before counts
    (b,) = [c for c in out if c.subunit == "b"]  # one cluster: no null, always "top"
    assert np.isinf(b.z) and b.top_group and b.rel == 1.0 and b.max_inside == 0.5


@pytest.mark.parametrize("change,n_placed,clash,reason", [
    ({"fit_ok": False, "inside": 0.05, "score": -1.0}, 0, 0.0, "no fit: inside_fraction 0.05"),
    ({"inside": 0.6, "score": -1.0}, 0, 0.0, "inside_fraction 0.60 < 0.8 x subunit best 0.90"),
    ({"score": -0.5, "top_group": False}, 0, 0.0, "score -0.500 < floor -0.2"),
    ({"top_group": False, "z": 0.0}, 0, 0.0, "below the largest score gap"),
    ({"z": 2.0, "rel": 0.0}, 0, 0.0, "z 2.00 < 3.0 (gap not significant)"),
    ({"rel": 0.3}, 5, 0.5, "rel 0.30 < 0.5 (closer to the bulk than to the subunit best 0.500)"),
    ({}, 2, 0.5, "2 copies of a already placed"),
    ({}, 1, 0.5, "clash: 50% of CA within 3 Å of chain B"),
    ({}, 1, 0.1, ""),
])
def test_decide_gives_the_first_rule_that_fails(change, n_placed, clash, reason):
    params = CompositeParams(copies={"a": 2}, min_score=-0.2)
    c = cluster(**change)
    got = decide(c, params, n_placed, clash, "B")
    assert got.startswith(reason) and (reason or not got)
    row = decision_row(2, c, clash, "B", got, None if got else "C")
    assert row["decision"] == ("rejected" if reason else "accepted")
    assert row["reason"] == (got or "ok") and row["round"] == 2 and row["subunit"] == "a"


def test_without_a_requested_count_copies_are_placed_while_acceptable():
    assert decide(cluster(), CompositeParams(), 50, 0.0, None) == ""
