"""Structures, start placements, rotations, clustering and scores: real properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEVICES
from scipy.spatial.transform import Rotation

from difffit_screen.cluster import cluster_poses
from difffit_screen.errors import InputError
from difffit_screen.maps import prepare_map, read_map
from difffit_screen.optimise import rotvec_to_matrix
from difffit_screen.placements import sample_positions, sample_rotations
from difffit_screen.scores import FootprintCorrelation, score_atoms
from difffit_screen.structures import (
    apply_matrix,
    atomic_numbers,
    read_structure,
    select_atoms,
    simulate_atom_weights,
    write_structure,
)

DATA = Path(__file__).parent / "data"
DEMO = DATA / "demo_library"


def test_read_select_write_roundtrip(tmp_path):
    atoms = read_structure(DEMO / "I7MLV6_D3.pdb")
    assert len(atoms) == 1678 and atoms.name == "I7MLV6_D3"
    assert select_atoms(atoms, "ca").sum() == 206
    assert select_atoms(atoms, "backbone").sum() == 4 * 206
    m = np.hstack([Rotation.from_euler("zyx", [30, 20, 10], degrees=True).as_matrix(),
                   [[1.0], [2.0], [3.0]]])
    write_structure(atoms, tmp_path / "posed.cif", m)
    back = read_structure(tmp_path / "posed.cif")
    np.testing.assert_allclose(back.xyz, apply_matrix(atoms.xyz, m), atol=1e-3)
    assert list(back.atom_name[:4]) == list(atoms.atom_name[:4])


def test_waters_and_ions_never_in_backbone(tmp_path):
    pdb = tmp_path / "w.pdb"
    pdb.write_text(
        "ATOM      1  N   ALA A   1       0.000   0.000   0.000  1.00 50.00           N\n"
        "ATOM      2  CA  ALA A   1       1.400   0.000   0.000  1.00 50.00           C\n"
        "HETATM    3  O   HOH A 101       5.000   5.000   5.000  1.00 20.00           O\n"
        "HETATM    4 CA    CA A 102       6.000   6.000   6.000  1.00 20.00          CA\n"
        "END\n")
    default = read_structure(pdb)
    assert len(default) == 2  # water and ion dropped by default
    everything = read_structure(pdb, keep_waters=True, keep_ligands=True)
    assert len(everything) == 4
    assert select_atoms(everything, "backbone").sum() == 2
    assert select_atoms(everything, "ca").sum() == 1


@pytest.mark.parametrize("content,problem", [(b"", "empty"), (b"garbage\x00\x01" * 50, "")])
def test_bad_structures(tmp_path, content, problem):
    p = tmp_path / "bad.pdb"
    p.write_bytes(content)
    with pytest.raises(InputError, match=r"bad.pdb"):
        read_structure(p)


def test_structure_without_atoms(tmp_path):
    p = tmp_path / "waters.pdb"
    p.write_text("HETATM    1  O   HOH A 101       5.000   5.000   5.000  1.00 20.00           O\n")
    with pytest.raises(InputError, match=r"waters.pdb: no atoms"):
        read_structure(p)


def test_simulated_weights_match_the_gaussian_sum():
    atoms = read_structure(DEMO / "I7MLV6_D3.pdb")
    w = simulate_atom_weights(atoms.xyz, atoms.element, 4.0)
    assert w.max() == pytest.approx(1.0) and w.min() > 0
    # two atoms 1.5 Å apart and one isolated: W_i = sum_j Z_j exp(-d_ij^2 / 2 sigma^2) / max
    xyz = np.array([[0, 0, 0], [1.5, 0, 0], [50, 0, 0]], dtype=np.float32)
    w3 = simulate_atom_weights(xyz, np.array(["C", "O", "C"]), 4.0)
    sigma = 0.225 * 4.0
    g = np.exp(-(1.5**2) / (2 * sigma**2))
    expected = np.array([6 + 8 * g, 8 + 6 * g, 6.0])
    np.testing.assert_allclose(w3, expected / expected.max(), rtol=1e-5)
    np.testing.assert_array_equal(atomic_numbers(np.array(["C", "N", "O", "S"])), [6, 7, 8, 16])


def test_rotations_uniform_and_seeded():
    r = sample_rotations(4000, seed=3)
    np.testing.assert_allclose(np.einsum("kij,kil->kjl", r, r), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-9)
    assert np.allclose(np.linalg.det(r), 1.0)
    # uniform on SO(3): E[R] = 0 and the angle density is (1 - cos w)/pi
    assert np.abs(r.mean(0)).max() < 0.02
    angles = Rotation.from_matrix(r).magnitude()
    assert np.mean(angles) == pytest.approx(np.pi / 2 + 2 / np.pi, abs=0.03)
    np.testing.assert_array_equal(sample_rotations(50, 7), sample_rotations(50, 7))
    assert not np.allclose(sample_rotations(50, 7), sample_rotations(50, 8))


def test_positions_cover_the_footprint():
    m = read_map(DEMO / "density2.mrc")
    prep = prepare_map(m, threshold=0.886, resolution=4.0)
    pos = sample_positions(prep.mask, m.origin, m.voxel_size, 20, seed=0)
    idx = np.round((pos - m.origin) / m.voxel_size).astype(int)
    assert prep.mask[idx[:, 2], idx[:, 1], idx[:, 0]].mean() > 0.9  # jitter may step outside
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(20) * 1e9
    assert d.min() > 5.0  # farthest-point sampling: spread out, no two starts together
    np.testing.assert_array_equal(pos, sample_positions(prep.mask, m.origin, m.voxel_size, 20, 0))


@pytest.mark.parametrize("device", DEVICES)
def test_rotvec_matches_scipy(device):
    w = np.random.default_rng(0).normal(size=(50, 3))
    w[0] = 1e-9
    ours = rotvec_to_matrix(torch.as_tensor(w, device=device)).cpu().numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(w).as_matrix(), atol=1e-9)


def test_clustering_groups_within_tolerance_only():
    base = Rotation.from_euler("z", 0, degrees=True).as_matrix()
    rots = np.array([base,
                     Rotation.from_euler("z", 4, degrees=True).as_matrix(),   # joins 0
                     Rotation.from_euler("z", 10, degrees=True).as_matrix(),  # own cluster
                     base, base])
    cents = np.array([[0, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 2.9], [0, 0, 3.5]], float)
    score = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    labels, leaders = cluster_poses(rots, cents, score)
    assert list(leaders) == [0, 2, 4]
    assert list(labels) == [0, 0, 1, 0, 2]
    # order independence: permuting inputs permutes labels consistently
    perm = np.array([4, 2, 0, 3, 1])
    _, leaders_p = cluster_poses(rots[perm], cents[perm], score[perm])
    assert list(perm[leaders_p]) == [0, 2, 4]


def test_clustering_matches_a_brute_force_leader_clustering():
    """The compiled clustering equals leader clustering written out with scipy's rotation
    distances, on poses that form tight groups, loose chains and singletons (ties broken by
    index)."""
    rng = np.random.default_rng(5)
    centres = rng.uniform(-10, 10, (12, 3))
    base = Rotation.random(12, random_state=6)
    g = rng.integers(0, 12, 400)
    cents = centres[g] + rng.normal(0, 1.5, (400, 3))
    rots = (Rotation.from_rotvec(rng.normal(0, 0.06, (400, 3))) * base[g]).as_matrix()
    score = np.round(rng.normal(size=400), 1)  # many ties
    labels, leaders = cluster_poses(rots, cents, score)
    order = sorted(range(400), key=lambda i: (-score[i], i))
    ref = np.full(400, -1)
    ref_leaders = []
    for i in order:
        if ref[i] >= 0:
            continue
        ref[i] = len(ref_leaders)
        for j in order:
            if ref[j] < 0 and np.linalg.norm(cents[j] - cents[i]) <= 3.0:
                turn = Rotation.from_matrix(rots[j] @ rots[i].T).magnitude()
                if np.degrees(turn) < 6.0:
                    ref[j] = len(ref_leaders)
        ref_leaders.append(i)
    assert 12 < len(leaders) < 400
    np.testing.assert_array_equal(leaders, ref_leaders)
    np.testing.assert_array_equal(labels, ref)
    empty_labels, empty_leaders = cluster_poses(np.zeros((0, 3, 3)), np.zeros((0, 3)),
                                                np.zeros(0))
    assert empty_labels.size == 0 and empty_leaders.size == 0


def test_scores_prefer_the_reference_pose_and_penalise_misfits():
    m = read_map(DEMO / "density2.mrc")
    prep = prepare_map(m, threshold=0.886, resolution=4.0)
    atoms = read_structure(DEMO / "I7MLV6_D3.pdb")
    ref = np.loadtxt(DATA / "reference_poses" / "I7MLV6_D3_pose_DERIVED.transform.txt")
    good = apply_matrix(atoms.xyz, ref)
    shifted = good + np.array([6.0, 0, 0])
    w = simulate_atom_weights(atoms.xyz, atoms.element, 4.0)
    s_good, s_bad = score_atoms(prep, good, w), score_atoms(prep, shifted, w)
    assert s_good["mean_density"] > s_bad["mean_density"]
    assert s_good["inside_fraction"] > s_bad["inside_fraction"]
    assert 0 < s_good["correlation"] <= 1
    fc = FootprintCorrelation(prep)
    z = atomic_numbers(atoms.element)
    assert fc(good, z) > 0.4 > fc(shifted, z)
    # a candidate far from the map scores below zero: it explains nothing
    assert fc(good + 500.0, z) < 0


def test_per_map_setup_in_a_big_box_gives_what_the_map_as_given_gives():
    """The scoring, the start positions and the footprint's size read the footprint's
    bounding box only (a whole-complex box costs what its density costs): the demo map
    zero-padded by 60 voxels gives the same scores at a good and a misfit pose, the same
    start positions (the crop's corner restores the grid) and the same footprint radius."""
    from difffit_screen.fit import footprint_radius
    from difffit_screen.maps import DensityMap, footprint_bounds, index_box

    m = read_map(DEMO / "density2.mrc")
    extra = 60
    big = DensityMap(np.pad(m.data, extra), m.voxel_size, m.origin - extra * m.voxel_size)
    small_prep = prepare_map(m, threshold=0.886, resolution=4.0)
    big_prep = prepare_map(big, threshold=0.886, resolution=4.0)
    atoms = read_structure(DEMO / "I7MLV6_D3.pdb")
    ref = np.loadtxt(DATA / "reference_poses" / "I7MLV6_D3_pose_DERIVED.transform.txt")
    z = atomic_numbers(atoms.element)
    fc_small, fc_big = FootprintCorrelation(small_prep), FootprintCorrelation(big_prep)
    for shift in (0.0, 6.0, 40.0):  # fitted, off by 6 Å, half outside the density
        xyz = apply_matrix(atoms.xyz, ref) + np.array([shift, 0.0, 0.0])
        a, b = fc_small.score_fit(xyz, z), fc_big.score_fit(xyz, z)
        for key in ("footprint_cc", "local_cc"):
            assert b[key] == pytest.approx(a[key], abs=1e-6)
    assert fc_small.score_fit(apply_matrix(atoms.xyz, ref), z)["local_cc"] > 0.4
    lo, hi = footprint_bounds(big_prep.mask)
    assert np.all(lo > 50) and np.prod(hi - lo) < 0.05 * big_prep.mask.size
    whole = sample_positions(big_prep.mask, big.origin, big.voxel_size, 30, seed=3)
    crop = sample_positions(big_prep.mask[index_box(lo, hi)], big.origin, big.voxel_size, 30,
                            seed=3, corner=lo)
    np.testing.assert_array_equal(crop, whole)
    assert footprint_radius(big_prep) == pytest.approx(footprint_radius(small_prep), rel=1e-9)
    assert footprint_radius(small_prep) > 5.0


@pytest.mark.parametrize("resolution", [3.0, 10.0, 20.0])
def test_simulated_weights_close_to_the_exact_gaussian_sum(resolution):
    """Neighbour sums (high resolution) and the grid (low resolution) match brute force."""
    from scipy.spatial.distance import cdist

    atoms = read_structure(DEMO / "I7MLV6_D3.pdb")
    sigma = 0.225 * resolution
    z = atomic_numbers(atoms.element)
    exact = (z[None] * np.exp(-cdist(atoms.xyz, atoms.xyz) ** 2 / (2 * sigma**2))).sum(1)
    w = simulate_atom_weights(atoms.xyz, atoms.element, resolution)
    np.testing.assert_allclose(w, exact / exact.max(), atol=0.04)


@pytest.mark.parametrize("device", DEVICES)
def test_analytic_gradient_agrees_with_autograd(device):
    """Force and torque from the volume's gradient channels point where autograd's do."""
    from difffit_screen.optimise import VolumeSampler, _analytic_step, _autograd_step

    prep = prepare_map(read_map(DEMO / "density2.mrc"), threshold=0.886, resolution=4.0)
    sampler = VolumeSampler(prep.loss_volume, torch.device(device))
    gen = torch.Generator().manual_seed(0)
    k, n = 40, 300
    x = (torch.randn(k, n, 3, generator=gen) * 12).to(device)
    m = torch.full((k, n), 1.0 / n, device=device)
    rot = rotvec_to_matrix(torch.randn(k, 3, generator=gen)).to(device)
    centre = prep.raw.origin + prep.raw.shape_xyz * prep.raw.voxel_size / 2
    t = (torch.as_tensor(centre, dtype=torch.float32)
         + torch.randn(k, 3, generator=gen) * 5).to(device)
    la, fa, ta = _analytic_step(sampler, x, m)(rot, t)
    lb, fb, tb = _autograd_step(sampler, x, m)(rot, t)
    torch.testing.assert_close(la, lb)

    def cosine(a, b):
        return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))

    assert cosine(fa, fb).median() > 0.9 and cosine(ta, tb).median() > 0.8
    assert (cosine(fa, fb) > 0.5).float().mean() > 0.9


def test_fused_kernel_matches_the_torch_step():
    """The compiled CPU kernel gives the torch step's loss, force and torque (to float32
    rounding) for placements of several candidates of different sizes (zero-padded), inside
    the map and partly beyond its border; the same numbers on any number of threads."""
    from difffit_screen.kernels import rigid_body_gradients
    from difffit_screen.optimise import VolumeSampler, _analytic_step, _fused_step

    prep = prepare_map(read_map(DEMO / "density2.mrc"), threshold=0.886, resolution=4.0)
    sampler = VolumeSampler(prep.loss_volume, "cpu")
    gen = torch.Generator().manual_seed(1)
    sizes = [300, 120, 57]
    coords = torch.zeros(3, 300, 3)
    weights = torch.zeros(3, 300)
    for b, n in enumerate(sizes):
        coords[b, :n] = torch.randn(n, 3, generator=gen) * 10
        weights[b, :n] = 1.0
    m = weights / weights.sum(-1, keepdim=True)
    k = 90
    owner = torch.arange(k) % 3
    rot = rotvec_to_matrix(torch.randn(k, 3, generator=gen))
    centre = prep.raw.origin + prep.raw.shape_xyz * prep.raw.voxel_size / 2
    t = torch.as_tensor(centre, dtype=torch.float32) + torch.randn(k, 3, generator=gen) * 25
    fused = _fused_step(sampler, coords.numpy(), m.numpy(), owner.numpy())(rot.numpy(),
                                                                          t.numpy())
    for threads in (1, 2, 7):
        again = rigid_body_gradients(sampler.array, coords.numpy(), owner.numpy(), m.numpy(),
                                     rot.numpy(), t.numpy(), sampler.origin_xyz,
                                     sampler.voxel_size, threads=threads)
        for a, b in zip(fused, again, strict=True):
            np.testing.assert_array_equal(a, b)
    la, fa, ta = _analytic_step(sampler, coords[owner], m[owner])(rot, t)
    assert (la > 0).any()  # some placements reach the negative outside (border) values
    lf, ff, tf = (torch.from_numpy(a) for a in fused)
    torch.testing.assert_close(lf, la, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ff, fa, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(tf, ta, rtol=1e-4, atol=1e-5)


def test_compiled_search_follows_the_step_by_step_adam_loop():
    """The whole-search kernel (every Adam iteration in compiled code) reaches the poses of
    the Python Adam loop around the single-step kernel (float32 state there, float64 in the
    kernel), for several zero-padded candidates; its numbers do not depend on the threads."""
    import math

    from difffit_screen.kernels import optimise_rigid_bodies
    from difffit_screen.optimise import VolumeSampler, _fused_step

    prep = prepare_map(read_map(DEMO / "density2.mrc"), threshold=0.886, resolution=4.0)
    sampler = VolumeSampler(prep.loss_volume, "cpu")
    rng = np.random.default_rng(4)
    atoms = read_structure(DEMO / "I7M317_D1.pdb")
    xyz = atoms.xyz[::8] - atoms.xyz[::8].mean(0)
    coords = np.zeros((2, len(xyz), 3), np.float32)
    m = np.zeros((2, len(xyz)), np.float32)
    coords[0], m[0] = xyz, 1.0 / len(xyz)
    coords[1, :50], m[1, :50] = xyz[:50], 1.0 / 50
    k, iters = 24, 40
    owner = np.arange(k) % 2
    rot0 = Rotation.random(k, random_state=rng).as_matrix().astype(np.float32)
    centre = prep.raw.origin + prep.raw.shape_xyz * prep.raw.voxel_size / 2
    trans0 = (centre + rng.normal(0, 4, (k, 3))).astype(np.float32)
    lr_rot = np.full(k, 0.05, np.float32)
    fracs = np.array([0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / (iters - 1)))
                      for i in range(iters)])
    step = _fused_step(sampler, coords, m, owner)
    rot, t = rot0.copy(), trans0.copy()
    mt, vt, mw, vw = (np.zeros((k, 3), np.float32) for _ in range(4))
    for i, frac in enumerate(fracs):
        _, gt, gw = step(rot, t)
        mt, vt = 0.9 * mt + 0.1 * gt, 0.999 * vt + 0.001 * gt * gt
        mw, vw = 0.9 * mw + 0.1 * gw, 0.999 * vw + 0.001 * gw * gw
        c1, c2 = 1 - 0.9 ** (i + 1), 1 - 0.999 ** (i + 1)
        t = t - (frac / c1) * mt / (np.sqrt(vt / c2) + 1e-8)
        w = -(frac / c1) * lr_rot[:, None] * mw / (np.sqrt(vw / c2) + 1e-8)
        rot = (rotvec_to_matrix(w) @ rot).astype(np.float32)
    runs = [optimise_rigid_bodies(sampler.array, coords, owner, m, rot0, trans0,
                                  sampler.origin_xyz, sampler.voxel_size, 1.0, lr_rot, fracs,
                                  threads=n) for n in (1, 3)]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
    r_k, t_k, loss_k = runs[0]
    assert np.abs(t_k - trans0).max() > 1.0  # the placements moved
    posed = [np.einsum("kij,nj->kni", r, xyz) + tt[:, None] for r, tt in ((r_k, t_k), (rot, t))]
    rmsd = np.sqrt(((posed[0] - posed[1]) ** 2).sum(-1).mean(-1))
    assert np.median(rmsd) < 1e-3 and rmsd.max() < 2e-2
    np.testing.assert_allclose(loss_k, step(rot, t)[0], atol=5e-4)


def test_trilinear_splat_keeps_mass_and_centre():
    """Splatting conserves the total weight and each point's first moment (trilinear weights
    are the transpose of interpolation), and rejects points without 8 neighbours in the grid."""
    from difffit_screen.kernels import splat_trilinear

    rng = np.random.default_rng(2)
    shape = (7, 9, 11)
    idx = rng.uniform(0, np.array(shape) - 1.001, (500, 3))
    w = rng.uniform(0.5, 8, 500)
    grid = splat_trilinear(idx, w, shape)
    assert grid.sum() == pytest.approx(w.sum(), rel=1e-12)
    pts = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1)
    np.testing.assert_allclose((grid[..., None] * pts).sum((0, 1, 2)), w @ idx, rtol=1e-12)
    one = splat_trilinear(np.array([[2.25, 3.0, 4.5]]), np.array([2.0]), shape)
    assert one[2, 3, 4] == pytest.approx(0.75) and one[3, 3, 5] == pytest.approx(0.25)
    assert np.count_nonzero(one) == 4
    with pytest.raises(ValueError, match="outside"):
        splat_trilinear(np.array([[6.5, 1.0, 1.0]]), np.array([1.0]), shape)


@pytest.mark.parametrize("sigma", [(0.66, 0.66, 0.66), (1.2, 0.9, 0.5), (3.0, 0.0, 2.5)])
def test_gaussian_blur_equals_ndimage_and_keeps_its_input(sigma):
    """The scoring's compiled blur gives scipy's ``gaussian_filter`` (zero beyond the grid,
    the same taps) on boxes wider and narrower than the kernel, per-axis sigmas, a sigma of
    zero (that axis untouched), and leaves its input as it was."""
    from scipy import ndimage

    from difffit_screen.kernels import gaussian_blur

    rng = np.random.default_rng(4)
    for shape in ((21, 17, 13), (3, 4, 2)):
        a = rng.normal(size=shape)
        before = a.copy()
        ours = gaussian_blur(a, np.array(sigma))
        ref = ndimage.gaussian_filter(a, sigma, mode="constant", truncate=3.0)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(a, before)
        scratch = a.copy()  # used as a buffer: the same result
        np.testing.assert_array_equal(gaussian_blur(scratch, np.array(sigma),
                                                    overwrite_input=True), ours)
    # mass is kept away from the edges
    spike = np.zeros((25, 25, 25))
    spike[12, 12, 12] = 3.0
    assert gaussian_blur(spike, np.array(sigma)).sum() == pytest.approx(3.0, rel=1e-12)


def test_correlation_sums_equal_the_masked_sums():
    """The scoring's one-pass sums over a simulated sub-box equal numpy's sums over the
    masked voxels (the map clipped, zero and outside the footprint beyond the map), for
    sub-boxes inside the map, across its edges and wholly outside it."""
    from difffit_screen.kernels import correlation_sums
    from difffit_screen.maps import clip_map

    rng = np.random.default_rng(5)
    data = rng.normal(size=(12, 10, 14)).astype(np.float32) * 3
    mask = data > 0.5
    level = 2.0
    shape = np.array([6, 7, 5])
    for corner in ([3, 2, 4], [-2, 6, -3], [9, -4, 11], [20, 0, 0]):
        corner = np.array(corner)
        sim = rng.uniform(0, 1, shape)
        env, local = sim > 0.7, sim > 0.4
        target, fp = np.zeros(shape), np.zeros(shape, bool)
        a = np.maximum(corner, 0)
        b = np.minimum(corner + shape, data.shape)
        if np.all(b > a):
            src = tuple(slice(a[i], b[i]) for i in range(3))
            dst = tuple(slice(a[i] - corner[i], b[i] - corner[i]) for i in range(3))
            target[dst] = clip_map(data[src], level)
            fp[dst] = mask[src]
        expect = []
        for sel, with_y in ((fp | env, True), (fp, False), (local, True)):
            x, y = target[sel], sim[sel] if with_y else np.zeros(sel.sum())
            expect.append([sel.sum(), x.sum(), (x * x).sum(), y.sum(), (y * y).sum(),
                           (x * y).sum()])
        got = correlation_sums(sim, env, local, data, mask, corner, level)
        np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-12)
    assert got[1, 0] == 0 and got[0, 0] == env.sum()  # the last box is outside the map
