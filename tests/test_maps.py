"""Map reading (axis order, origin/NSTART, voxels), bad maps, and map preparation."""

from __future__ import annotations

import gzip
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from difffit_screen.errors import InputError
from difffit_screen.maps import (
    DensityMap,
    load_prepared,
    prepare_map,
    read_map,
    save_prepared,
    write_map,
)
from difffit_screen.optimise import VolumeSampler

DEMO = Path(__file__).parent / "data" / "demo_library" / "density2.mrc"


def _write_raw(path, raw, axes=(1, 2, 3), voxel=(1.0, 1.0, 1.0), origin=(0, 0, 0),
               nstart=(0, 0, 0)):
    with mrcfile.new(str(path), overwrite=True) as m:
        m.set_data(raw.astype(np.float32))
        # cell lengths follow x, y, z: the sizes of the raw axes that hold x, y and z
        size_xyz = [raw.shape[2 - [axes[0], axes[1], axes[2]].index(a)] for a in (1, 2, 3)]
        m.header.cella = tuple(float(v * n) for v, n in zip(voxel, size_xyz, strict=True))
        m.header.mx, m.header.my, m.header.mz = size_xyz
        m.header.mapc, m.header.mapr, m.header.maps = axes
        m.header.nxstart, m.header.nystart, m.header.nzstart = nstart
        m.header.origin = origin


@pytest.mark.parametrize("axes", [(1, 2, 3), (3, 2, 1), (2, 3, 1), (1, 3, 2), (3, 1, 2),
                                  (2, 1, 3)])
def test_axis_order_is_honoured(tmp_path, axes):
    rng = np.random.default_rng(0)
    zyx = rng.normal(size=(5, 6, 7)).astype(np.float32)  # nz=5, ny=6, nx=7
    # raw axis 0 = sections (maps), 1 = rows (mapr), 2 = columns (mapc)
    letter = {1: 2, 2: 1, 3: 0}  # x, y, z -> axis in zyx
    raw = np.transpose(zyx, [letter[axes[2]], letter[axes[1]], letter[axes[0]]])
    _write_raw(tmp_path / "m.mrc", raw, axes=axes)
    m = read_map(tmp_path / "m.mrc")
    np.testing.assert_array_equal(m.data, zyx)


def test_origin_and_nstart_and_anisotropic_voxels(tmp_path):
    raw = np.zeros((4, 5, 6), np.float32)
    _write_raw(tmp_path / "n.mrc", raw, voxel=(1.5, 2.0, 2.5), nstart=(-3, 2, 10))
    m = read_map(tmp_path / "n.mrc")
    np.testing.assert_allclose(m.voxel_size, [1.5, 2.0, 2.5])
    np.testing.assert_allclose(m.origin, [-4.5, 4.0, 25.0])  # nstart * voxel, x y z
    _write_raw(tmp_path / "o.mrc", raw, voxel=(1.5, 2.0, 2.5), origin=(10, 20, 30),
               nstart=(-3, 2, 10))
    np.testing.assert_allclose(read_map(tmp_path / "o.mrc").origin, [10, 20, 30])


def test_demo_map_header():
    m = read_map(DEMO)
    assert m.data.shape == (47, 34, 40)
    np.testing.assert_allclose(m.origin, [342.524, 206.885, 350.745], atol=1e-3)
    np.testing.assert_allclose(m.voxel_size, 1.3701, atol=1e-4)


def test_write_read_roundtrip_gz(tmp_path):
    m = read_map(DEMO)
    write_map(tmp_path / "copy.mrc.gz", m)
    back = read_map(tmp_path / "copy.mrc.gz")
    np.testing.assert_array_equal(back.data, m.data)
    np.testing.assert_allclose(back.origin, m.origin, atol=1e-3)
    np.testing.assert_allclose(back.voxel_size, m.voxel_size, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Data array contains NaN values")
def test_bad_maps_name_file_and_problem(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_map(tmp_path / "missing.mrc")
    (tmp_path / "empty.mrc").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.mrc: map file is empty"):
        read_map(tmp_path / "empty.mrc")
    (tmp_path / "junk.mrc").write_bytes(b"this is not a map" * 100)
    with pytest.raises(InputError, match=r"junk.mrc"):
        read_map(tmp_path / "junk.mrc")
    data = DEMO.read_bytes()
    (tmp_path / "cut.mrc").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut.mrc"):
        read_map(tmp_path / "cut.mrc")
    with gzip.open(tmp_path / "cutgz.mrc.gz", "wb") as fh:
        fh.write(data[:2000])
    with pytest.raises(InputError, match=r"cutgz.mrc.gz"):
        read_map(tmp_path / "cutgz.mrc.gz")
    nan = np.ones((4, 4, 4), np.float32)
    nan[1, 1, 1] = np.nan
    _write_raw(tmp_path / "nan.mrc", nan)
    with pytest.raises(InputError, match=r"nan.mrc: map has 1 NaN"):
        read_map(tmp_path / "nan.mrc")
    with mrcfile.new(str(tmp_path / "flat.mrc"), overwrite=True) as m:
        m.set_data(np.ones((8, 8), np.float32))
    with pytest.raises(InputError, match=r"flat.mrc: map is 2-D"):
        read_map(tmp_path / "flat.mrc")


def test_threshold_leaving_nothing_is_reported():
    m = read_map(DEMO)
    with pytest.raises(InputError, match="threshold 99 leaves no voxel"):
        prepare_map(m, threshold=99.0)


def test_prepare_map_footprint_islands_and_range():
    m = read_map(DEMO)
    noisy = DensityMap(m.data.copy(), m.voxel_size, m.origin, "noisy")
    noisy.data[0, 0, 0] = 3.0  # an isolated hot voxel: an island to drop
    prep = prepare_map(noisy, threshold=0.886, resolution=4.0)
    assert not prep.mask[0, 0, 0]
    assert prep.mask.sum() > 4000
    assert prep.normalised.min() == 0.0 and prep.normalised.max() == pytest.approx(1.0)
    assert np.all(prep.normalised[~prep.mask] == 0)
    # far outside the density the loss volume is the negative value times all levels
    assert prep.loss_volume.data[0, 0, 0] == pytest.approx(-0.5 * 4, abs=1e-3)


def test_combined_volume_equals_sum_of_levels():
    """Sampling the combined volume = summing the samples of every level (trilinear is linear)."""
    m = read_map(DEMO)
    kw = {"threshold": 0.886, "resolution": 4.0, "pad_a": 8.0}  # same grid for all
    prep = prepare_map(m, sigmas=(2.0, 4.0), **kw)
    parts = [prepare_map(m, sigmas=(s,), **kw).loss_volume for s in (2.0, 4.0)]
    level0 = prepare_map(m, sigmas=(), **kw).loss_volume
    rng = np.random.default_rng(1)
    centre = m.origin + m.shape_xyz * m.voxel_size / 2
    pts = torch.as_tensor(centre + rng.normal(scale=10, size=(1, 500, 3)), dtype=torch.float32)
    s_all = VolumeSampler(prep.loss_volume, torch.device("cpu"))(pts)
    s_parts = sum(VolumeSampler(p, torch.device("cpu"))(pts) for p in parts)
    s_0 = VolumeSampler(level0, torch.device("cpu"))(pts)
    torch.testing.assert_close(s_all, s_parts - s_0, atol=1e-5, rtol=1e-5)


def test_sampler_convention_on_a_ramp():
    """Voxel centres sit at origin + index * voxel: a ramp in x samples back x exactly."""
    nz, ny, nx = 5, 6, 9
    voxel = np.array([1.5, 2.0, 0.7])
    origin = np.array([-3.0, 4.0, 10.0])
    x_coord = origin[0] + np.arange(nx) * voxel[0]
    ramp = np.broadcast_to(x_coord, (nz, ny, nx)).astype(np.float32)
    sampler = VolumeSampler(DensityMap(ramp, voxel, origin), torch.device("cpu"))
    rng = np.random.default_rng(0)
    idx = rng.uniform(0, 1, size=(200, 3)) * (np.array([nx, ny, nz]) - 1)
    pts = origin + idx * voxel
    vals = sampler(torch.as_tensor(pts[None], dtype=torch.float32))[0].numpy()
    np.testing.assert_allclose(vals, pts[:, 0], atol=1e-4)


def test_prepared_map_roundtrip(tmp_path):
    prep = prepare_map(read_map(DEMO), threshold=0.886, resolution=4.0)
    save_prepared(prep, tmp_path / "p.npz")
    back = load_prepared(tmp_path / "p.npz")
    np.testing.assert_array_equal(back.loss_volume.data, prep.loss_volume.data)
    np.testing.assert_array_equal(back.mask, prep.mask)
    assert back.threshold == prep.threshold and back.resolution == 4.0


def test_empty_box_around_the_density_is_cropped_away():
    """The loss and refinement volumes follow the footprint, not the box: the demo map
    zero-padded by 30 or by 60 voxels on every side gives the same volumes on the same grid,
    far smaller than the padded box (issue "Performance": big boxes cost what their density
    costs)."""
    m = read_map(DEMO)
    preps = []
    for extra in (30, 60):
        data = np.pad(m.data, extra)
        origin = m.origin - extra * m.voxel_size
        preps.append(prepare_map(DensityMap(data, m.voxel_size, origin), threshold=0.886,
                                 resolution=4.0))
    a, b = preps
    assert a.loss_volume.data.shape == b.loss_volume.data.shape
    np.testing.assert_array_equal(a.loss_volume.data, b.loss_volume.data)
    np.testing.assert_array_equal(a.refine_volume.data, b.refine_volume.data)
    np.testing.assert_allclose(a.loss_volume.origin, b.loss_volume.origin, atol=1e-4)
    assert np.prod(b.loss_volume.data.shape) < 0.25 * b.raw.data.size
    # the density itself is all there: the footprint's voxels keep their loss values
    full = prepare_map(m, threshold=0.886, resolution=4.0)
    assert a.mask.sum() == full.mask.sum()
    assert a.loss_volume.data.max() == pytest.approx(full.loss_volume.data.max(), abs=1e-5)


def test_the_smaller_loss_box_samples_like_a_larger_one_everywhere():
    """The loss volume's box stops at the smoothing's reach of the footprint: sampled with
    border padding, it gives the values of the same volume computed on the (larger)
    refinement box, inside the density, at the box edges and far outside it."""
    from scipy import ndimage

    from difffit_screen.maps import combine_levels, take_box

    m = read_map(DEMO)
    extra = 60
    big = DensityMap(np.pad(m.data, extra), m.voxel_size, m.origin - extra * m.voxel_size)
    prep = prepare_map(big, threshold=0.886, resolution=4.0)
    loss, ref = prep.loss_volume, prep.refine_volume
    assert np.prod(loss.data.shape) < 0.6 * np.prod(ref.data.shape)
    lo = np.round((ref.origin - big.origin) / big.voxel_size).astype(int)[::-1]
    hi = lo + np.array(ref.data.shape)
    level0 = np.where(take_box(prep.mask, lo, hi, False),
                      take_box(prep.normalised, lo, hi, 0.0), prep.negative).astype(np.float32)
    wide = combine_levels(level0, prep.sigmas, prep.weights, big.voxel_size)
    rng = np.random.default_rng(0)
    lo_xyz = ref.origin - 30.0
    hi_xyz = ref.origin + np.array(ref.data.shape[::-1]) * ref.voxel_size + 30.0
    inside = np.argwhere(prep.mask)[:, ::-1] * big.voxel_size + big.origin
    xyz = np.vstack([rng.uniform(lo_xyz, hi_xyz, (4000, 3)),
                     inside[rng.choice(len(inside), 500)] + rng.normal(0, 1.0, (500, 3))])

    def sample(vol, dmap):
        idx = ((xyz - dmap.origin) / dmap.voxel_size)[:, ::-1].T
        return ndimage.map_coordinates(vol, idx, order=1, mode="nearest")

    np.testing.assert_allclose(sample(loss.data, loss), sample(wide, ref), atol=1e-6)
    assert (sample(loss.data, loss) > 0).sum() > 150  # the density's points are sampled too
