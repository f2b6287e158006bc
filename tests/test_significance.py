"""Tests of difffit_screen.significance: BH, the robust null, size correction, small libraries."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from difffit_screen.significance import (
    MIN_LIBRARY,
    add_significance,
    adjust_bh,
    fit_central_normal,
    fit_null_model,
)
from difffit_screen.tables import RANKING_SCHEMA, table_from_rows


def make_ranking(scores, n_residues=None, fit_ok=None) -> pa.Table:
    """A RANKING_SCHEMA table with the given scores (and sizes / fit_ok), in the given order."""
    n = len(scores)
    rows = []
    for i in range(n):
        rows.append({
            "rank": i + 1, "candidate": f"c{i:04d}", "cluster_rank": 1, "hits": 1,
            "score": None if scores[i] is None else float(scores[i]),
            "fit_ok": True if fit_ok is None else bool(fit_ok[i]),
            "n_residues": None if n_residues is None else int(n_residues[i]),
            "n_atoms": None if n_residues is None else int(n_residues[i]) * 8,
        })
    return table_from_rows(rows, RANKING_SCHEMA)


def test_bh_matches_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    # sorted: 0.005, 0.01, 0.03, 0.04, 0.5 -> m p / i: 0.025, 0.025, 0.05, 0.05, 0.5
    expected = np.array([0.025, 0.05, 0.05, 0.025, 0.5])
    np.testing.assert_allclose(adjust_bh(p), expected)


def test_bh_monotone_with_step_down_minimum_and_clip():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(size=200), [1e-6, 1e-5, 0.99, 1.0]])
    q = adjust_bh(p)
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) >= -1e-15)
    assert np.all(q >= p) and np.all(q <= 1.0)
    # the hand formula with the running minimum from the top
    m = p.size
    ps = p[order]
    hand = np.array([min(1.0, min(m * ps[j] / (j + 1) for j in range(i, m))) for i in range(m)])
    np.testing.assert_allclose(q[order], hand)


def test_bh_agrees_with_scipy():
    rng = np.random.default_rng(2)
    p = rng.uniform(size=50) ** 3
    np.testing.assert_allclose(adjust_bh(p), stats.false_discovery_control(p, method="bh"))


def test_central_normal_recovers_scale_despite_tail_hits():
    rng = np.random.default_rng(3)
    null = rng.normal(0.3, 0.05, size=400)
    hits = np.full(20, 0.9)  # 5 % far in the upper tail
    loc, scale = fit_central_normal(np.concatenate([null, hits]))
    assert abs(loc - 0.3) < 0.01
    assert abs(scale - 0.05) < 0.008
    # the plain SD is inflated by the hits, the central fit is not
    assert np.std(np.concatenate([null, hits])) > 2.5 * scale


def test_pvalues_calibrated_under_normal_null():
    rng = np.random.default_rng(4)
    y = rng.normal(0.2, 0.04, size=3000)
    model = fit_null_model(make_ranking(np.tanh(y), n_residues=rng.integers(60, 1000, 3000)))
    assert model.method == "central-normal"
    assert stats.kstest(model.pvalue, "uniform").pvalue > 1e-3
    assert abs(np.mean(model.pvalue < 0.05) - 0.05) < 0.015
    assert np.mean(model.qvalue < 0.05) < 0.01


def test_planted_outliers_found_with_heavy_tailed_null():
    rng = np.random.default_rng(5)
    y_null = 0.25 + 0.03 * rng.standard_t(df=4, size=120)
    y_hits = np.array([0.25 + 0.03 * 12, 0.25 + 0.03 * 10])
    scores = np.tanh(np.concatenate([y_hits, y_null]))
    sizes = rng.integers(80, 900, size=scores.size)
    model = fit_null_model(make_ranking(scores, sizes))
    assert np.all(model.pvalue[:2] < 1e-6)
    assert np.all(model.qvalue[:2] < 0.05)
    # the hits are the two most significant candidates
    assert set(np.argsort(model.pvalue)[:2]) == {0, 1}
    # q is monotone in p
    order = np.argsort(model.pvalue)
    assert np.all(np.diff(model.qvalue[order]) >= -1e-15)


def test_size_correction_removes_planted_size_trend():
    rng = np.random.default_rng(6)
    n = 300
    log_n = rng.uniform(np.log(60), np.log(1000), size=n)
    y = 0.9 - 0.12 * log_n + rng.normal(0, 0.02, size=n)
    # plant two hits: a large protein and a small domain, both 8 sd above the trend line
    big, small = int(np.argmax(log_n)), int(np.argmin(log_n))
    y[[big, small]] += 8 * 0.02
    sizes = np.round(np.exp(log_n)).astype(int)
    model = fit_null_model(make_ranking(np.tanh(y), sizes))
    assert model.size_variable == "n_residues"
    assert model.slope == pytest.approx(-0.12, abs=0.01)
    null = np.ones(n, bool)
    null[[big, small]] = False
    assert abs(stats.spearmanr(model.zscore[null], log_n[null]).statistic) < 0.15
    assert abs(stats.spearmanr(model.fisher_z[null], log_n[null]).statistic) > 0.8
    assert set(np.argsort(model.pvalue)[:2]) == {big, small}
    assert model.zscore[big] > 6 and model.zscore[small] > 6


def test_fit_not_ok_counts_in_null_but_gets_p_one():
    rng = np.random.default_rng(7)
    scores = np.tanh(rng.normal(0.2, 0.05, size=40))
    scores[0] = np.tanh(0.9)
    fit_ok = np.ones(40, bool)
    fit_ok[0] = False
    model = fit_null_model(make_ranking(scores, rng.integers(60, 900, 40), fit_ok))
    assert model.in_null[0]
    assert model.zscore[0] > 5
    assert model.pvalue[0] == 1.0 and model.qvalue[0] == 1.0


def test_missing_scores_get_p_one_and_null_z():
    rng = np.random.default_rng(8)
    scores = list(np.tanh(rng.normal(0.2, 0.05, size=20)))
    scores[3] = None
    scores[5] = float("nan")
    out = add_significance(make_ranking(scores, rng.integers(60, 900, 20)))
    z = out.column("zscore").to_pylist()
    p = out.column("pvalue").to_pylist()
    assert z[3] is None and z[5] is None
    assert p[3] == 1.0 and p[5] == 1.0


def test_small_library_is_conservative_without_size_correction():
    scores = np.tanh([0.9, 0.3, 0.28, 0.25, 0.31])
    model = fit_null_model(make_ranking(scores, [100, 200, 300, 400, 500]))
    assert model.method == "small-library-t"
    assert model.size_variable is None and model.slope == 0.0
    upper = model.zscore > 0  # heavier upper tail than the normal: larger p above the median
    assert np.all(model.pvalue[upper] > stats.norm.sf(model.zscore[upper]))
    # the hit's own score widens the null: it is not called significant from 5 candidates
    assert model.qvalue[0] > 0.05
    assert len(scores) < MIN_LIBRARY


def test_tiny_library_has_no_null():
    out = add_significance(make_ranking([0.5, 0.1]))
    assert out.column("zscore").to_pylist() == [None, None]
    assert out.column("pvalue").to_pylist() == [1.0, 1.0]
    assert out.column("qvalue").to_pylist() == [1.0, 1.0]


def test_add_significance_keeps_schema_and_order():
    rng = np.random.default_rng(9)
    ranking = make_ranking(np.tanh(rng.normal(0.2, 0.05, size=30)), rng.integers(60, 900, 30))
    out = add_significance(ranking)
    assert out.schema.equals(RANKING_SCHEMA, check_metadata=True)
    assert out.column("candidate").to_pylist() == ranking.column("candidate").to_pylist()
    assert out.column("score").to_pylist() == ranking.column("score").to_pylist()
    assert out.column("pvalue").null_count == 0
    # the columns are added when a table lacks them
    bare = ranking.select(["candidate", "score", "fit_ok", "n_residues"])
    added = add_significance(bare)
    assert added.column("qvalue").to_pylist() == out.column("qvalue").to_pylist()


def test_empty_ranking():
    out = add_significance(RANKING_SCHEMA.empty_table())
    assert out.num_rows == 0 and out.schema.equals(RANKING_SCHEMA)
