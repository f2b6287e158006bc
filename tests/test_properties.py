"""Properties of the numerical core (in the style of naver/roma's tests), on every device.

- Equivariance: moving a candidate's input coordinates by a rigid motion ``M`` changes the
  fitted ``matrix`` by ``M^-1`` composed on the right, so the posed coordinates stay where they
  were; the optimiser is exactly equivariant (up to float32 rounding) when its start rotations
  are turned with the input.
- float32 / float64: the sampler, the scores and the optimiser give the same answer for either
  input precision (the optimisation runs in float32; the scores in float64).
- ``DEVICES`` (tests/conftest.py): CUDA too when present.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEVICES
from scipy.spatial.transform import Rotation

from difffit_screen.fit import FitParams, fit_candidates
from difffit_screen.maps import DensityMap, prepare_map, read_map
from difffit_screen.optimise import VolumeSampler, optimise_placements, rotvec_to_matrix
from difffit_screen.scores import FootprintCorrelation, sample_map, score_atoms
from difffit_screen.structures import (
    apply_matrix,
    atomic_numbers,
    read_structure,
    simulate_atom_weights,
)

DEMO = Path(__file__).parent / "data" / "demo_library"
SMALL_FIT = {"positions": 5, "rotations": 32, "iterations": 60, "refine_top": 2, "models": 0,
             "deepen_hits": 0, "seed": 3}


@pytest.fixture(scope="module")
def prep():
    return prepare_map(read_map(DEMO / "density2.mrc"), threshold=0.886, resolution=4.0)


@pytest.fixture(scope="module")
def atoms():
    return read_structure(DEMO / "I7MLV6_D3.pdb")


@pytest.fixture(scope="module")
def fitted(prep, atoms):
    """The best pose of ``atoms`` as given, per device (fitted once)."""
    cache: dict[str, np.ndarray] = {}

    def get(device: str) -> np.ndarray:
        if device not in cache:
            cache[device] = best_pose(prep, atoms, device)
        return cache[device]

    return get


def centre_of(prep) -> np.ndarray:
    return prep.raw.origin + prep.raw.shape_xyz * prep.raw.voxel_size / 2


def rigid_motion(rng: np.random.Generator, rotate: bool = True) -> np.ndarray:
    """A ``(3, 4)`` rigid motion ``[R | t]``: a random rotation (or none) and a shift."""
    r = Rotation.random(random_state=rng).as_matrix() if rotate else np.eye(3)
    return np.hstack([r, rng.uniform(-40, 40, size=(3, 1))])


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a ∘ b`` of two ``(3, 4)`` rigid motions (``b`` applied first)."""
    return np.hstack([a[:, :3] @ b[:, :3], (a[:, :3] @ b[:, 3] + a[:, 3])[:, None]])


def invert(m: np.ndarray) -> np.ndarray:
    return np.hstack([m[:, :3].T, (-m[:, :3].T @ m[:, 3])[:, None]])


def rmsd(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum(-1).mean()))


def best_pose(prep, atoms, device: str) -> np.ndarray:
    """The ``(3, 4)`` matrix of the best cluster of a small fit of ``atoms``."""
    p = FitParams(device=device, **SMALL_FIT)
    fits = fit_candidates(prep, [(atoms.name, atoms.name, atoms)], p, progress=False).fits
    return np.asarray(next(r for r in fits if r["cluster_rank"] == 1)["matrix"]).reshape(3, 4)


# --- equivariance --------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rotate", [False, True], ids=["translation", "rigid"])
def test_fit_is_equivariant_under_a_rigid_motion_of_the_input(prep, atoms, fitted, device,
                                                              rotate):
    """Fit a candidate, and the same candidate moved by ``M``: the fitted matrices differ by
    ``M^-1`` on the right and the posed coordinates coincide. A shift changes nothing but
    rounding; a rotation turns the start rotations with the input, so the search differs and
    only the converged pose is the same (well within the 3 Å / 6° of a correct fit)."""
    m = rigid_motion(np.random.default_rng(2), rotate)
    moved = dataclasses.replace(atoms, xyz=apply_matrix(atoms.xyz, m).astype(np.float32))
    pose, pose_moved = fitted(device), best_pose(prep, moved, device)
    expected = compose(pose, invert(m))
    posed, posed_moved = apply_matrix(atoms.xyz, pose), apply_matrix(moved.xyz, pose_moved)
    angle = np.degrees(Rotation.from_matrix(pose_moved[:, :3] @ expected[:, :3].T).magnitude())
    if rotate:
        assert rmsd(posed, posed_moved) < 0.5 and angle < 1.0
    else:
        assert rmsd(posed, posed_moved) < 1e-3
        np.testing.assert_allclose(pose_moved, expected, atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_optimiser_is_equivariant_when_the_starts_turn_with_the_input(prep, atoms, device):
    """Coordinates ``Q x`` started from rotations ``R0 Q^T`` follow the same trajectory as
    ``x`` from ``R0``: the final posed coordinates and losses agree to float32 rounding (as
    amplified by 40 Adam steps)."""
    rng = np.random.default_rng(5)
    sampler = VolumeSampler(prep.loss_volume, torch.device(device))
    c = atoms.xyz[::8].astype(np.float64)
    c -= c.mean(0)
    q = Rotation.random(random_state=rng).as_matrix()
    k = 30
    rot0 = Rotation.random(k, random_state=rng).as_matrix()
    trans0 = torch.as_tensor(centre_of(prep) + rng.normal(0, 4, (k, 3)), dtype=torch.float32)
    owner, weights = torch.zeros(k, dtype=torch.long), torch.ones(1, len(c))
    lr_rot = torch.full((k,), 0.05)
    out = optimise_placements(sampler, torch.as_tensor(c)[None], weights, owner,
                              torch.as_tensor(rot0), trans0, 40, 1.0, lr_rot)
    out_q = optimise_placements(sampler, torch.as_tensor(c @ q.T)[None], weights, owner,
                                torch.as_tensor(rot0 @ q.T), trans0, 40, 1.0, lr_rot)
    posed = np.einsum("kij,nj->kni", out.rot, c) + out.trans[:, None]
    posed_q = np.einsum("kij,nj->kni", out_q.rot, c @ q.T) + out_q.trans[:, None]
    rmsd_k = np.sqrt(((posed - posed_q) ** 2).sum(-1).mean(-1))
    # float32 rounding differs between the two frames; Adam's normalised steps amplify it where
    # a placement crosses a flat region (0.002-0.01 Å for the worst of 30 in float32 runs)
    assert np.median(rmsd_k) < 5e-4 and rmsd_k.max() < 2e-2
    np.testing.assert_allclose(out.loss, out_q.loss, atol=5e-4)
    # the poses moved: the property is not that of a standing start
    assert np.abs(out.trans - trans0.numpy()).max() > 0.5


@pytest.mark.parametrize("device", DEVICES)
def test_sampling_is_equivariant_under_a_shift_of_the_map(prep, device):
    """A map moved by ``d`` (its origin) samples at ``x + d`` what it sampled at ``x``."""
    rng = np.random.default_rng(0)
    d = np.array([12.5, -3.25, 7.0])
    vol = prep.loss_volume
    shifted = DensityMap(vol.data, vol.voxel_size, vol.origin + d)
    pts = centre_of(prep) + rng.normal(scale=10, size=(1, 400, 3))
    a = VolumeSampler(vol, torch.device(device))(torch.as_tensor(pts))
    b = VolumeSampler(shifted, torch.device(device))(torch.as_tensor(pts + d))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# --- float32 / float64 ---------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_torch_sampler_matches_float64_trilinear_interpolation(prep, device):
    """The float32 ``grid_sample`` sampler agrees with scipy's float64 trilinear interpolation
    (the scores' sampler) inside the grid, for float32 and float64 points alike."""
    rng = np.random.default_rng(1)
    vol = prep.loss_volume
    idx = rng.uniform(0, 1, size=(1000, 3)) * (vol.shape_xyz - 1)
    pts = vol.origin + idx * vol.voxel_size
    exact = sample_map(vol, pts)  # float64
    sampler = VolumeSampler(vol, torch.device(device))
    got32 = sampler(torch.as_tensor(pts[None], dtype=torch.float32))[0].cpu().numpy()
    got64 = sampler(torch.as_tensor(pts[None], dtype=torch.float64))[0].cpu().numpy()
    assert got32.dtype == got64.dtype == np.float32
    np.testing.assert_allclose(got32, exact, atol=2e-4 * np.abs(exact).max())
    np.testing.assert_array_equal(got32, got64)  # float64 points are sampled as float32


def test_scores_do_not_depend_on_the_coordinates_precision(prep, atoms):
    """Per-atom scores, simulated weights and both correlations from float32 and float64
    coordinates agree (the scores compute in float64)."""
    ref = np.loadtxt(DEMO.parent / "reference_poses" / "I7MLV6_D3_pose_DERIVED.transform.txt")
    xyz64 = apply_matrix(atoms.xyz.astype(np.float64), ref)
    xyz32 = xyz64.astype(np.float32)
    w64 = simulate_atom_weights(xyz64, atoms.element, 4.0)
    w32 = simulate_atom_weights(xyz32, atoms.element, 4.0)
    np.testing.assert_allclose(w32, w64, rtol=1e-5)
    s64, s32 = score_atoms(prep, xyz64, w64), score_atoms(prep, xyz32, w64)
    for key in s64:
        assert s32[key] == pytest.approx(s64[key], rel=1e-5, abs=1e-6), key
    fc, z = FootprintCorrelation(prep), atomic_numbers(atoms.element)
    c64, c32 = fc.score_fit(xyz64, z), fc.score_fit(xyz32, z)
    for key in c64:
        assert c32[key] == pytest.approx(c64[key], abs=1e-5), key
    assert c64["local_cc"] > 0.5  # the reference pose explains the density


@pytest.mark.parametrize("device", DEVICES)
def test_optimiser_takes_float64_inputs_and_runs_in_float32(prep, atoms, device):
    """float64 coordinates, weights and starts give exactly the poses of their float32 copies."""
    rng = np.random.default_rng(3)
    sampler = VolumeSampler(prep.loss_volume, torch.device(device))
    c = atoms.xyz[::10].astype(np.float64)
    c -= c.mean(0)
    k = 12
    rot0 = torch.as_tensor(Rotation.random(k, random_state=rng).as_matrix())
    trans0 = torch.as_tensor(centre_of(prep) + rng.normal(0, 4, (k, 3)))
    coords, weights = torch.as_tensor(c)[None], torch.ones(1, len(c), dtype=torch.float64)
    owner, lr_rot = torch.zeros(k, dtype=torch.long), torch.full((k,), 0.05)
    a = optimise_placements(sampler, coords, weights, owner, rot0, trans0, 20, 1.0, lr_rot)
    b = optimise_placements(sampler, coords.float(), weights.float(), owner, rot0.float(),
                            trans0.float(), 20, 1.0, lr_rot)
    for x, y in zip((a.rot, a.trans, a.loss), (b.rot, b.trans, b.loss), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotvec_to_matrix_is_a_rotation_in_either_precision(device, dtype):
    w = torch.as_tensor(np.random.default_rng(4).normal(size=(200, 3)) * 2, dtype=dtype,
                        device=device)
    w[0] = 1e-9  # the small-angle branch
    r = rotvec_to_matrix(w)
    assert r.dtype == dtype
    eye = torch.eye(3, dtype=dtype, device=device).expand_as(r)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(r @ r.transpose(1, 2), eye, atol=tol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(200, dtype=dtype, device=device),
                               atol=tol, rtol=0)
    r64 = rotvec_to_matrix(w.double())
    torch.testing.assert_close(r.double(), r64, atol=tol * 10, rtol=0)


@pytest.mark.parametrize("radius,voxel", [(3.0, (1.37, 1.37, 1.37)), (8.0, (2.1, 1.0, 1.6)),
                                          (0.5, (1.0, 1.0, 1.0)), (8.0, (0.6, 0.6, 0.6))])
def test_shell_dilation_equals_the_exact_distance_transform(radius, voxel):
    """``local_cc``'s shell: voxels within ``radius`` Å of the envelope, by FFT convolution with
    a ball, is exactly the set the Euclidean distance transform gives (anisotropic voxels,
    shells wider than the blob, blobs touching the box edge, an empty envelope, a ball of
    9,000 voxels whose counts float32 must still resolve)."""
    from scipy import ndimage

    from difffit_screen.scores import ball_offsets, dilate

    rng = np.random.default_rng(21)
    ball = ball_offsets(radius, np.array(voxel))
    for shape in [(30, 22, 41), (9, 40, 17)]:
        blob = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
        for mask in (blob > 0.08, blob > 0.2, np.zeros(shape, bool)):
            exact = ndimage.distance_transform_edt(~mask, sampling=voxel) <= radius
            if not mask.any():
                exact = np.zeros(shape, bool)
            np.testing.assert_array_equal(dilate(mask, ball), exact)


def test_the_numpy_and_torch_optimisers_follow_the_same_trajectories(prep, atoms):
    """The one Adam loop runs on numpy arrays around the fused kernel (the CPU) and on torch
    tensors around ``grid_sample`` (what CUDA runs, here on the CPU): the same final poses and
    losses to float32 rounding, from numpy or torch inputs alike."""
    rng = np.random.default_rng(8)
    sampler = VolumeSampler(prep.loss_volume, "cpu")
    c = (atoms.xyz[::6] - atoms.xyz[::6].mean(0)).astype(np.float32)
    k = 16
    rot0 = Rotation.random(k, random_state=rng).as_matrix().astype(np.float32)
    trans0 = (centre_of(prep) + rng.normal(0, 3, (k, 3))).astype(np.float32)
    args = (c[None], np.ones((1, len(c)), np.float32), np.zeros(k, np.int64), rot0, trans0,
            30, 1.0, np.full(k, 0.05, np.float32))
    fused = optimise_placements(sampler, *args, gradient="fused")
    torch_args = tuple(torch.as_tensor(a) if isinstance(a, np.ndarray) else a for a in args)
    analytic = optimise_placements(sampler, *torch_args, gradient="analytic")
    posed = [np.einsum("kij,nj->kni", o.rot, c) + o.trans[:, None] for o in (fused, analytic)]
    rmsd_k = np.sqrt(((posed[0] - posed[1]) ** 2).sum(-1).mean(-1))
    assert np.median(rmsd_k) < 1e-3 and rmsd_k.max() < 2e-2
    np.testing.assert_allclose(fused.loss, analytic.loss, atol=5e-4)
    assert np.abs(fused.trans - trans0).max() > 0.5  # they moved
    w = rng.normal(size=(50, 3)).astype(np.float32)
    np.testing.assert_allclose(rotvec_to_matrix(w), rotvec_to_matrix(torch.as_tensor(w)).numpy(),
                               atol=1e-6)
