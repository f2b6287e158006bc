"""Batched rigid-body optimisation of many placements at once with Adam (compiled CPU kernel or
torch).

A placement ``k`` moves the centred coordinates ``x`` (``(N, 3)``, Å, centred on the candidate's
fitted-atom centroid) to ``R_k @ x + t_k`` in the map frame. Adam optimises every placement's
translation ``t_k`` (Å) and a rotation increment ``w_k`` (radians, about the candidate's
centroid, applied on the left: ``R_k <- exp([w_k]) @ R_k``) at once: the loss is the sum over
placements of minus the mean density sampled at the placement's atoms, so placements are
independent and the sum only batches the work. Step sizes are in Å (translation) and in Å of
atom motion at the radius of gyration (rotation), so they do not grow with the box.

Three ways to get the gradient, with the same loss and the same Adam loop:

- ``"fused"`` (default on the CPU): the compiled kernels of :mod:`difffit_screen.kernels` read
  the gradient channels below and reduce them to force and torque in one pass, and run the
  whole Adam loop of each placement in compiled code; a CPU run never imports torch.
- ``"analytic"`` (default on CUDA): the volume carries its spatial gradient as three more channels
  (central differences at the grid points, trilinearly interpolated in between: what ChimeraX
  ``fitmap`` does), so one forward ``grid_sample`` gives every atom's value and gradient, and the
  rigid-body gradient is the mean force ``sum_i g_i / N`` and torque ``sum_i (R x_i) x g_i / N``
  (one ``3 x 3`` batched product). No autograd graph: about twice as fast on a CPU, and far less
  memory.
- ``"autograd"``: torch differentiates through ``grid_sample`` (the exact gradient of the
  trilinear interpolant, piecewise constant within a voxel).

Sampling uses ``torch.nn.functional.grid_sample`` with ``align_corners=True`` and the correct
normalisation ``2 * (x - origin) / ((n - 1) * voxel) - 1`` (voxel centres at ±1); the fused
kernel does the same trilinear interpolation with "border" padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from .devices import Device, as_device, cpu_threads
from .maps import DensityMap

if TYPE_CHECKING:
    import torch


class VolumeSampler:
    """Trilinear sampling of one map volume at world coordinates.

    Parameters
    ----------
    volume : DensityMap
        Values ``(nz, ny, nx)``; ``origin``/``voxel_size`` ``[x, y, z]`` in Å.
    device : Device or str or torch.device
        Where the volume lives.

    Attributes
    ----------
    array : np.ndarray
        ``(nz, ny, nx, C)`` float32, C-contiguous: the value and (``with_gradient``) its
        gradient ``[d/dx, d/dy, d/dz]`` per Å, a voxel's channels side by side (what the fused
        CPU kernel reads).
    volume : torch.Tensor
        ``(1, C, nz, ny, nx)`` for ``grid_sample``, made on first use (on the CPU a
        channels-last view of ``array``: one cache line per corner, 1.8-2.5x faster sampling).

    Notes
    -----
    Points outside the grid take the value of the nearest border voxel (``padding_mode="border"``);
    prepared volumes carry a padded margin of the negative value, so outside is penalised.
    """

    def __init__(self, volume: DensityMap, device: Device | str | Any = "cpu",
                 padding: str = "border", with_gradient: bool = True):
        self.device = as_device(device)
        self.padding = padding
        channels = [volume.data]
        if with_gradient:  # d/dx, d/dy, d/dz in value per Å (central differences)
            gz, gy, gx = np.gradient(volume.data.astype(np.float64), *volume.voxel_size[::-1])
            channels += [gx, gy, gz]
        self.array = np.ascontiguousarray(np.stack(channels, axis=-1).astype(np.float32))
        self.channels = len(channels)
        self.origin_xyz = np.asarray(volume.origin, dtype=np.float32)
        self.voxel_size = np.asarray(volume.voxel_size, dtype=np.float32)

    @cached_property
    def volume(self) -> torch.Tensor:
        import torch

        if self.device.type == "cpu":  # channels-last view, no copy
            return torch.from_numpy(self.array).permute(3, 0, 1, 2)[None]
        return torch.as_tensor(np.moveaxis(self.array, -1, 0)[None].copy(),
                               device=self.device.as_torch())

    @cached_property
    def value_volume(self) -> torch.Tensor:
        return self.volume[:, :1]

    @cached_property
    def origin(self) -> torch.Tensor:
        import torch

        return torch.as_tensor(self.origin_xyz, device=self.device.as_torch())

    @cached_property
    def scale(self) -> torch.Tensor:
        import torch

        dims_xyz = np.array(self.array.shape[:3][::-1], dtype=np.float32)
        scale = 2.0 / ((dims_xyz - 1.0) * self.voxel_size)
        return torch.as_tensor(scale.astype(np.float32), device=self.device.as_torch())

    def __call__(self, xyz: torch.Tensor) -> torch.Tensor:
        """Sample at ``(K, N, 3)`` world coordinates (any float dtype and device); returns
        ``(K, N)`` float32 values on the sampler's device."""
        import torch

        xyz = torch.as_tensor(xyz).to(self.device.as_torch(), torch.float32)
        return self._sample((xyz - self.origin) * self.scale - 1.0)

    def sample_posed(self, x: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        """Sample at ``rot @ x + trans`` for ``(K, N, 3)`` x, ``(K, 3, 3)`` rot, ``(K, 3)`` trans.

        The grid normalisation is folded into the rigid transform, so the only work on the
        ``(K, N, 3)`` coordinates is one batched matrix product (and its backward).
        """
        import torch

        a = rot.transpose(1, 2) * self.scale  # scales the output (x, y, z) columns
        b = ((trans - self.origin) * self.scale - 1.0)[:, None, :]
        return self._sample(torch.baddbmm(b, x, a))

    def sample_posed_with_gradient(self, x: torch.Tensor, rot: torch.Tensor,
                                   trans: torch.Tensor) -> torch.Tensor:
        """Values and world-frame gradients at ``rot @ x + trans``: ``(4, K, N)``.

        Channel 0 is the value, channels 1-3 its gradient ``[d/dx, d/dy, d/dz]`` per Å.
        """
        import torch
        import torch.nn.functional as F

        a = rot.transpose(1, 2) * self.scale
        b = ((trans - self.origin) * self.scale - 1.0)[:, None, :]
        grid = torch.baddbmm(b, x, a)
        out = F.grid_sample(self.volume, grid[None, :, :, None, :], mode="bilinear",
                            padding_mode=self.padding, align_corners=True)
        return out[0, :, :, :, 0]

    def _sample(self, grid: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        out = F.grid_sample(self.value_volume, grid[None, :, :, None, :], mode="bilinear",
                            padding_mode=self.padding, align_corners=True)
        return out[0, 0, :, :, 0]


def rotvec_to_matrix(w):
    """Rodrigues' formula: ``(..., 3)`` rotation vectors (radians) to ``(..., 3, 3)`` matrices;
    ``w`` a numpy array or a torch tensor (the result is of the same kind, dtype and device)."""
    if isinstance(w, np.ndarray):
        xp, eye = np, np.eye(3, dtype=w.dtype)
    else:
        import torch

        xp, eye = torch, torch.eye(3, dtype=w.dtype, device=w.device)
    theta2 = (w * w).sum(-1)[..., None, None]  # (..., 1, 1)
    small = theta2 < 1e-8
    theta = xp.sqrt(xp.where(small, xp.ones_like(theta2), theta2))
    a = xp.where(small, 1.0 - theta2 / 6.0, xp.sin(theta) / theta)
    b = xp.where(small, 0.5 - theta2 / 24.0, (1.0 - xp.cos(theta)) / (theta * theta))
    zero = xp.zeros_like(w[..., 0])
    k = xp.stack([zero, -w[..., 2], w[..., 1],
                  w[..., 2], zero, -w[..., 0],
                  -w[..., 1], w[..., 0], zero], -1).reshape(*w.shape[:-1], 3, 3)
    return eye + a * k + b * (k @ k)


@dataclass
class PoseBatch:
    """Poses of ``K`` placements.

    Attributes
    ----------
    rot : np.ndarray
        ``(K, 3, 3)`` rotations (about the candidate centroid).
    trans : np.ndarray
        ``(K, 3)`` centroid positions in the map frame, Å.
    loss : np.ndarray
        ``(K,)`` final loss (minus mean sampled value) of each placement.
    """

    rot: np.ndarray
    trans: np.ndarray
    loss: np.ndarray


def optimise_placements(
    sampler: VolumeSampler,
    coords,
    atom_weights,
    owner,
    rot0,
    trans0,
    iterations: int,
    lr_trans: float,
    lr_rot,
    final_lr_fraction: float = 0.05,
    gradient: str = "auto",
    threads: int | None = None,
) -> PoseBatch:
    """Optimise ``K`` placements of ``B`` candidates together with Adam.

    Array arguments are numpy arrays or torch tensors of any float dtype, rounded to float32
    first (so float64 inputs give the poses of their float32 copies). On the CPU every
    iteration runs in the fused kernel (:func:`difffit_screen.kernels.optimise_rigid_bodies`:
    float32 samples, float64 sums and Adam state); elsewhere the same Adam loop runs in torch
    float32 on the sampler's device.

    Parameters
    ----------
    sampler : VolumeSampler
        The loss volume.
    coords : array
        ``(B, N, 3)`` centred coordinates of each candidate, zero-padded to ``N`` atoms.
    atom_weights : array
        ``(B, N)`` weights (1 for real atoms, 0 for padding).
    owner : array
        ``(K,)`` integer, the candidate of each placement.
    rot0 : array
        ``(K, 3, 3)`` start rotations.
    trans0 : array
        ``(K, 3)`` start centroid positions, Å.
    iterations : int
        Adam steps.
    lr_trans : float
        Translation step in Å.
    lr_rot : array
        ``(K,)`` rotation step in radians (per placement: ``lr_trans / radius of gyration``).
    final_lr_fraction : float
        The step sizes decay (cosine) to this fraction of their start value.
    gradient : str
        ``"auto"`` (``"fused"`` on the CPU, ``"analytic"`` elsewhere), ``"fused"`` (the
        compiled CPU kernel of :mod:`difffit_screen.kernels`), ``"analytic"`` (volume
        gradient channels, torch operations, no autograd) or ``"autograd"``.
    threads : int, optional
        CPU threads of the fused kernel (default :func:`~difffit_screen.devices.cpu_threads`;
        1 runs in the calling thread, beside a search that holds the kernel's thread pool).

    Returns
    -------
    PoseBatch
        Final poses and losses (losses evaluated at the final poses).
    """
    mode = choose_gradient(sampler, gradient)
    fracs = [final_lr_fraction + (1 - final_lr_fraction) * 0.5 * (
        1 + math.cos(math.pi * it / max(iterations - 1, 1))) for it in range(iterations)]
    if mode == "fused":  # every iteration in compiled code; placements index the candidates
        from .kernels import optimise_rigid_bodies

        m = _as_numpy32(atom_weights)
        m = m / np.maximum(m.sum(-1, keepdims=True), 1e-6)  # (B, N): mean over real atoms
        rot, t, final = optimise_rigid_bodies(
            _fused_volume(sampler), _as_numpy32(coords), np.ascontiguousarray(
                _as_numpy(owner), np.int64), m, _as_numpy32(rot0), _as_numpy32(trans0),
            sampler.origin_xyz, sampler.voxel_size, lr_trans,
            np.broadcast_to(_as_numpy32(lr_rot), (len(rot0),)),
            np.asarray(fracs), threads or cpu_threads())
        return PoseBatch(rot, t, final.astype(np.float32))
    import torch

    dev = sampler.device.as_torch()

    def arr(a):
        return torch.as_tensor(a).to(dev, torch.float32)

    own = torch.as_tensor(owner).to(dev, torch.long)
    m = arr(atom_weights)
    m = (m / m.sum(-1, keepdim=True).clamp_min(1e-6))[own]  # (K, N)
    x = arr(coords)[own]  # (K, N, 3)
    step = _step_function(sampler, x, m, mode)
    rot = arr(rot0) + 0  # float32 copies
    t = arr(trans0) + 0
    lr_rot = arr(lr_rot)[:, None]
    # Adam on (t, w) in the tangent space at the current pose (w is reset to 0 each step)
    b1, b2, eps = 0.9, 0.999, 1e-8
    m_t, v_t, m_w, v_w = (torch.zeros_like(t) for _ in range(4))
    for it, frac in enumerate(fracs):
        _, g_t, g_w = step(rot, t, with_loss=False)
        m_t = b1 * m_t + (1 - b1) * g_t
        v_t = b2 * v_t + (1 - b2) * (g_t * g_t)
        m_w = b1 * m_w + (1 - b1) * g_w
        v_w = b2 * v_w + (1 - b2) * (g_w * g_w)
        c1, c2 = 1 - b1 ** (it + 1), 1 - b2 ** (it + 1)
        t = t - (lr_trans * frac / c1) * m_t / (torch.sqrt(v_t / c2) + eps)
        w = -(frac / c1) * lr_rot * m_w / (torch.sqrt(v_w / c2) + eps)
        rot = rotvec_to_matrix(w) @ rot
    with torch.no_grad():
        final = -(sampler.sample_posed(x, rot, t) * m).sum(-1)
    return PoseBatch(_as_numpy(rot).astype(np.float64), _as_numpy(t).astype(np.float64),
                     _as_numpy(final))


def _as_numpy(a) -> np.ndarray:
    """A numpy array of ``a`` (a numpy array, a torch tensor on any device, or a sequence)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _as_numpy32(a) -> np.ndarray:
    return np.ascontiguousarray(_as_numpy(a), dtype=np.float32)


def choose_gradient(sampler: VolumeSampler, gradient: str = "auto") -> str:
    """The gradient mode ``"auto"`` stands for: ``"fused"`` for a CPU volume with gradient
    channels, ``"analytic"`` otherwise (CUDA runs the torch operations)."""
    if gradient != "auto":
        return gradient
    return "fused" if sampler.device.type == "cpu" and sampler.channels == 4 else "analytic"


def _fused_volume(sampler: VolumeSampler) -> np.ndarray:
    """The ``(nz, ny, nx, 4)`` array the fused kernels read (a CPU sampler with gradients)."""
    if sampler.device.type != "cpu" or sampler.channels != 4:
        raise ValueError("the fused kernel needs a CPU VolumeSampler(with_gradient=True)")
    return sampler.array


def _fused_step(sampler: VolumeSampler, x: np.ndarray, m: np.ndarray, owner: np.ndarray):
    """One step of :func:`_analytic_step` with the compiled kernel, in numpy: ``x``
    ``(B, N, 3)`` and ``m`` ``(B, N)`` float32 per candidate, ``owner`` ``(K,)`` int64;
    ``step(rot, t)`` takes ``(K, 3, 3)``/``(K, 3)`` float32 arrays and also returns the loss.
    (:func:`optimise_placements` runs all its iterations in the kernel instead.)"""
    from .kernels import rigid_body_gradients

    volume = _fused_volume(sampler)
    x, m = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(m, np.float32)
    owner = np.ascontiguousarray(owner, np.int64)
    threads = cpu_threads()

    def step(rot: np.ndarray, t: np.ndarray, with_loss: bool = True):
        return rigid_body_gradients(volume, x, owner, m, np.ascontiguousarray(rot, np.float32),
                                    np.ascontiguousarray(t, np.float32), sampler.origin_xyz,
                                    sampler.voxel_size, threads)

    return step


def _step_function(sampler: VolumeSampler, x: torch.Tensor, m: torch.Tensor, gradient: str):
    """The loss-and-gradient function of ``gradient`` mode (``"analytic"`` or ``"autograd"``):
    ``step(rot, t, with_loss=True) -> (loss (K,) or None, grad_t (K, 3), grad_w (K, 3))``; the
    analytic step skips the loss when ``with_loss`` is False (the Adam loop never reads it)."""
    if gradient == "autograd":
        return _autograd_step(sampler, x, m)
    if gradient == "analytic":
        if sampler.channels < 4:
            raise ValueError("analytic gradients need a VolumeSampler(with_gradient=True)")
        return _analytic_step(sampler, x, m)
    raise ValueError(f"unknown gradient mode {gradient!r}")


def _analytic_step(sampler: VolumeSampler, x: torch.Tensor, m: torch.Tensor):
    """Loss ``(K,)`` and its gradients w.r.t. translation and left rotation, ``(K, 3)`` each."""
    import torch

    def step(rot: torch.Tensor, t: torch.Tensor, with_loss: bool = True):
        out = sampler.sample_posed_with_gradient(x, rot, t)  # (4, K, N)
        loss = -(out[0] * m).sum(-1) if with_loss else None  # the optimiser needs no loss
        g = out[1:].permute(1, 0, 2) * m[:, None, :]  # (K, 3, N), weighted
        grad_t = -g.sum(-1)
        # torque sum_i (R x_i) x g_i from G = sum_i g_i (R x_i)^T = (g @ x) @ R^T
        gmat = torch.bmm(g, x) @ rot.transpose(1, 2)
        torque = torch.stack([gmat[:, 2, 1] - gmat[:, 1, 2], gmat[:, 0, 2] - gmat[:, 2, 0],
                              gmat[:, 1, 0] - gmat[:, 0, 1]], dim=-1)
        return loss, grad_t, -torque

    return step


def _autograd_step(sampler: VolumeSampler, x: torch.Tensor, m: torch.Tensor):
    """As :func:`_analytic_step`, differentiating through ``grid_sample`` with autograd."""
    import torch

    def step(rot: torch.Tensor, t: torch.Tensor, with_loss: bool = True):
        t = t.detach().requires_grad_(True)
        w = torch.zeros_like(t, requires_grad=True)
        loss = -(sampler.sample_posed(x, rotvec_to_matrix(w) @ rot, t) * m).sum(-1)
        g_t, g_w = torch.autograd.grad(loss.sum(), [t, w])
        return loss.detach(), g_t, g_w

    return step
