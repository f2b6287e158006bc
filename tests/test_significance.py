"""Tests of difffit_screen.significance: BH, the robust null, size correction, small libraries."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import optimize, stats

from difffit_screen.significance import (
    GUMBEL_MAD,
    GUMBEL_MEDIAN,
    MIN_CONFIDENT,
    MIN_INSIDE,
    MIN_LIBRARY,
    add_significance,
    adjust_bh,
    fit_central_normal,
    fit_null_model,
    gumbel_sf,
    p_floor,
    read_null_summary,
    size_windows,
)
from difffit_screen.tables import RANKING_SCHEMA, table_from_rows


def make_ranking(scores, n_residues=None, fit_ok=None, inside=None,
                 confident=None) -> pa.Table:
    """A RANKING_SCHEMA table with the given scores (and sizes / fit_ok), in the given order."""
    n = len(scores)
    rows = []
    for i in range(n):
        rows.append({
            "rank": i + 1, "candidate": f"c{i:04d}", "cluster_rank": 1, "hits": 1,
            "score": None if scores[i] is None else float(scores[i]),
            "fit_ok": True if fit_ok is None else bool(fit_ok[i]),
            "inside_fraction": 0.8 if inside is None else float(inside[i]),
            "n_residues": None if n_residues is None else int(n_residues[i]),
            "n_atoms": None if n_residues is None else int(n_residues[i]) * 8,
            "confident_fraction": None if confident is None else confident[i],
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


def test_pvalues_conservative_under_normal_null():
    rng = np.random.default_rng(4)
    y = rng.normal(0.2, 0.04, size=3000)
    model = fit_null_model(make_ranking(np.tanh(y), n_residues=rng.integers(60, 1000, 3000)))
    assert model.method == "size-windowed-gumbel"
    # conservative on a thin (Gaussian) tail, never liberal: the Gumbel tail with the same
    # median and MAD puts p < 0.05 at 2.3 sd (about 1 % of a normal sample)
    assert 0.005 < np.mean(model.pvalue < 0.05) < 0.03
    assert np.mean(model.pvalue < 0.01) < 0.005
    assert np.mean(model.qvalue < 0.05) < 0.002


def best_of_search_library(rng: np.random.Generator, n: int = 135) -> pa.Table:
    """A decoy-only library of best-of-search scores, as in a whole map: candidate i of r_i
    residues has correlation noise ``0.6 / sqrt(8 r_i)`` per pose and ``4000 / r_i + 20``
    independent poses (a small candidate finds the most distinct places to sit), and its score
    is the best of them; sizes log-uniform over 40-600 residues."""
    res = np.exp(rng.uniform(np.log(40), np.log(600), n)).astype(int)
    sd = 0.6 / np.sqrt(8 * res)
    best = [rng.normal(0.1, sd[i], 4000 // res[i] + 20).max() for i in range(n)]
    return make_ranking(np.tanh(best), res)


def test_best_of_search_decoys_give_no_discoveries():
    """The haemoglobin-domains failure: small fragments get the most distinct poses in a whole
    map, so the best of their search has a heavy upper tail; a Gaussian or t null called them
    discoveries (q 0.001-0.003). Under BH at 0.05 a decoy-only screen may give a discovery in at
    most 5 % of libraries (a Student-t tail: 19 % of these; the Gumbel: about 0.5 %)."""
    rng = np.random.default_rng(15)
    runs = [fit_null_model(best_of_search_library(rng)) for _ in range(100)]
    with_discovery = sum(bool((m.qvalue < 0.05).any()) for m in runs)
    assert with_discovery <= 5
    # the same null still finds a native 30 robust spreads above its window (fragments or
    # natives of the haemoglobin map sit at 4.6 and 50)
    table = best_of_search_library(np.random.default_rng(16))
    model = fit_null_model(table)
    y = model.location[0] + 30 * model.spread[0]
    scores = np.append(table.column("score").to_numpy(), np.tanh(y))
    sizes = np.append(table.column("n_residues").to_numpy(), table.column("n_residues")[0])
    hit = fit_null_model(make_ranking(scores, sizes))
    assert np.argmin(hit.qvalue) == len(scores) - 1 and hit.qvalue[-1] < 1e-3


def test_gumbel_tail_has_the_median_and_mad_it_is_given():
    g = stats.gumbel_r
    med = g.median()
    mad = optimize.brentq(lambda d: g.cdf(med + d) - g.cdf(med - d) - 0.5, 0.1, 2.0)
    assert GUMBEL_MEDIAN == pytest.approx(med) and GUMBEL_MAD == pytest.approx(mad)
    z = np.array([-2.0, 0.0, 1.0, 5.0, 30.0])
    beta = 1 / (1.4826 * mad)
    np.testing.assert_allclose(gumbel_sf(z), g.sf(z, loc=-med * beta, scale=beta), rtol=1e-4)
    assert gumbel_sf(np.array([0.0]))[0] == pytest.approx(0.5)
    assert gumbel_sf(np.array([40.0]))[0] > 0  # tiny tails keep their precision


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
    null = np.ones(n, bool)
    null[[big, small]] = False
    assert abs(stats.spearmanr(model.zscore[null], log_n[null]).statistic) < 0.15
    assert abs(stats.spearmanr(model.fisher_z[null], log_n[null]).statistic) > 0.8
    assert set(np.argsort(model.pvalue)[:2]) == {big, small}
    assert model.zscore[big] > 4.5 and model.zscore[small] > 4.5  # conservative at the ends


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
    assert model.size_variable is None
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
    assert out.schema.equals(RANKING_SCHEMA)
    summary = read_null_summary(out)  # the null travels with the table
    assert summary["method"] == "central-gumbel" and summary["n_null"] == 30
    assert "floored" in summary["description"]
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


# The best fits of a real screen: the DomainFit demo map (density2.mrc, threshold 0.886,
# resolution 4 Å) against its 3 AlphaFold domains and 31 tardigrade decoys (every 16th file of
# library_tardigrade_afdb, sorted), `difffit-screen fit` with default settings (seed 0, CPU).
DEMO_SCREEN = [  # (candidate, score, n_residues, n_atoms, fit_ok), best first
    ("I7M317_D1", 0.509684, 207, 1681, True),
    ("I7MLV6_D3", 0.501698, 206, 1678, True),
    ("A0A1D1VP89", 0.009933, 574, 4434, True),
    ("A0A1D1UXZ7", 0.009285, 682, 5405, True),
    ("A0A1D1VLH3", 0.002440, 416, 3168, True),
    ("A0A1D1VJB8", -0.000673, 463, 3584, True),
    ("A0A1D1VR71", -0.001221, 377, 2878, True),
    ("A0A1D1UVK9", -0.011798, 375, 2921, True),
    ("A0A1D1UR52", -0.035009, 348, 2717, True),
    ("A0A1D1UF24", -0.037475, 308, 2380, True),
    ("A0A1D1VG77", -0.044812, 314, 2426, True),
    ("A0A1D1UZP1", -0.061406, 260, 2028, True),
    ("A0A1D1VTF0", -0.062849, 326, 2555, True),
    ("A0A1D1W1B3", -0.078259, 679, 5191, True),
    ("A0A1D1VA91", -0.089298, 435, 3416, True),
    ("A0A1D1VZI1", -0.110915, 226, 1796, True),
    ("A0A1D1V8F2", -0.114679, 153, 1209, True),
    ("A0A1D1VX14", -0.119253, 181, 1456, True),
    ("A0A1D1VDX6", -0.124717, 110, 845, True),
    ("A0A1D1WA26", -0.126585, 200, 1571, True),
    ("A0A1D1UNA8", -0.147242, 189, 1493, True),
    ("A0A1D1UIK7", -0.157882, 221, 1709, True),
    ("A0A1D1V453", -0.162200, 137, 1063, True),
    ("A0A1D1VVG5", -0.162253, 483, 3744, True),
    ("A0A1D1W7Q4", -0.166495, 278, 2180, True),
    ("A0A1D1UU67", -0.190428, 171, 1318, True),
    ("A0A1D1V5G3", -0.204166, 208, 1592, True),
    ("A0A1D1W554", -0.236660, 247, 1854, True),
    ("A0A1D1W2Z4", -0.242427, 103, 805, True),
    ("A0A1D1VBQ7", -0.281586, 152, 1172, True),
    ("A0A0E4AW71", -0.315202, 187, 1338, True),
    ("A0A1D1ULI0", -0.184228, 975, 6675, False),
    ("A0A1D1V2J2", -0.300784, 594, 4416, False),
    ("I7LV70_D1", -0.327733, 392, 3426, False),
]


def test_demo_screen_paralogs_are_the_only_hits():
    rows = [{"rank": i + 1, "candidate": c, "cluster_rank": 1, "hits": 1, "score": s,
             "n_residues": nr, "n_atoms": na, "fit_ok": ok}
            for i, (c, s, nr, na, ok) in enumerate(DEMO_SCREEN)]
    out = add_significance(table_from_rows(rows, RANKING_SCHEMA))
    q = dict(zip(out.column("candidate").to_pylist(), out.column("qvalue").to_pylist(),
                 strict=True))
    assert {c for c, v in q.items() if v < 0.05} == {"I7MLV6_D3", "I7M317_D1"}
    # 9 robust spreads above the decoys: p about 2e-5 under the extreme-value tail, q < 1e-3
    assert max(q["I7MLV6_D3"], q["I7M317_D1"]) < 1e-3
    assert q["I7LV70_D1"] == 1.0  # no acceptable fit
    assert min(v for c, v in q.items() if c not in ("I7MLV6_D3", "I7M317_D1")) > 0.5


def test_large_mediocre_candidates_never_get_small_p():
    """The failure of a size line: a C4 tetramer map, 94 decoys of 60-500 residues whose scores
    fall with size, and six large decoys (663-846 residues) scoring below all of them. A line
    through the bulk, continued to 846 residues, predicts even lower scores and called the six
    significant (q down to 2e-15); the size windows compare them with the largest decoys."""
    rng = np.random.default_rng(11)
    sizes = np.concatenate([rng.integers(60, 500, 94), [663, 700, 731, 780, 812, 846]])
    y = 0.45 - 0.05 * np.log(sizes) + rng.normal(0, 0.025, sizes.size)
    y[94:] = np.arctanh([-0.34, -0.35, -0.36, -0.37, -0.38, -0.36]) + 0.5  # low, flat
    model = fit_null_model(make_ranking(np.tanh(y), sizes))
    assert model.qvalue.min() > 0.05
    assert np.all(model.pvalue[94:] > 0.01)
    # the same library with a true hit of 220 residues, 12 spreads above its size's decoys
    y_hit = np.append(y, 0.45 - 0.05 * np.log(220) + 12 * 0.025)
    hit = fit_null_model(make_ranking(np.tanh(y_hit), np.append(sizes, 220)))
    assert np.argmin(hit.pvalue) == 100 and hit.qvalue[100] < 0.01
    assert np.sort(hit.qvalue)[1] > 0.05


def test_smallest_and_largest_windows_stay_inside_the_library():
    log_size = np.log(np.array([50, 60, 70, 80, 90, 100, 110, 120, 130, 140], float))
    order, start = size_windows(log_size[::-1], np.ones(10, bool), 4)
    assert order.tolist() == list(range(9, -1, -1))  # members sorted by size
    assert start.tolist() == [6, 6, 5, 4, 3, 2, 1, 0, 0, 0]  # the largest two: the 4 largest
    unknown = np.append(log_size, np.nan)
    assert size_windows(unknown, np.isfinite(unknown), 4)[1][-1] == -1


def test_pvalues_are_floored_at_what_the_library_supports():
    rng = np.random.default_rng(12)
    scores = np.tanh(np.append(rng.normal(0.0, 0.05, 99), 0.95))  # a hit 19 spreads out
    model = fit_null_model(make_ranking(scores, rng.integers(60, 900, 100)))
    assert model.pvalue[-1] == p_floor(100) and p_floor(100) > 1e-8
    assert model.qvalue[-1] == pytest.approx(p_floor(100) * 100)
    assert p_floor(10_000) < p_floor(100) < p_floor(10)
    assert "floored" in model.describe()


def test_fits_largely_outside_the_contour_are_never_significant():
    rng = np.random.default_rng(13)
    scores = np.tanh(np.append(rng.normal(0.0, 0.05, 60), [0.9, 0.9]))
    inside = np.append(np.full(60, 0.8), [0.9, MIN_INSIDE - 0.05])
    model = fit_null_model(make_ranking(scores, rng.integers(60, 900, 62), inside=inside))
    assert model.qvalue[60] < 1e-3
    assert model.pvalue[61] == 1.0 and model.zscore[61] > 10


def test_mostly_disordered_predictions_are_never_significant():
    """A predicted model with most residues below pLDDT 50 (F-actin's LEA10 decoy, pLDDT 39)
    can score well by threading a noodle through density; it gets p = 1, an experimental
    structure (confident_fraction null) and a confident model do not."""
    rng = np.random.default_rng(14)
    scores = np.tanh(np.append(rng.normal(0.0, 0.05, 60), [0.9, 0.9, 0.9]))
    confident = [1.0] * 60 + [None, 0.95, MIN_CONFIDENT - 0.1]
    model = fit_null_model(make_ranking(scores, rng.integers(60, 900, 63), confident=confident))
    assert model.qvalue[60] < 1e-3 and model.qvalue[61] < 1e-3
    assert model.pvalue[62] == 1.0 and model.zscore[62] > 10
    assert "pLDDT" in model.describe()
