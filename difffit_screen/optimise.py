"""Batched rigid-body optimisation of many placements at once with Adam (torch).

A placement ``k`` moves the centred coordinates ``x`` (``(N, 3)``, Å, centred on the candidate's
fitted-atom centroid) to ``R_k @ x + t_k`` in the map frame, with ``R_k = exp([w_k]) @ R0_k``.
Adam optimises the rotation vector ``w_k`` (radians, about the candidate's centroid) and the
translation ``t_k`` (Å) of every placement at once: the loss is the sum over placements of
minus the mean density sampled at the placement's atoms, so placements are independent and the
sum only batches the work. Step sizes are in Å (translation) and in Å of atom motion at the
radius of gyration (rotation), so they do not grow with the box.

Sampling uses ``torch.nn.functional.grid_sample`` with ``align_corners=True`` and the correct
normalisation ``2 * (x - origin) / ((n - 1) * voxel) - 1`` (voxel centres at ±1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .maps import DensityMap


def resolve_device(device: str = "auto") -> torch.device:
    """Return the torch device for ``"auto"`` (CUDA if present, else CPU), ``"cpu"``, ``"cuda"``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(device)


class VolumeSampler:
    """Trilinear sampling of one map volume at world coordinates.

    Parameters
    ----------
    volume : DensityMap
        Values ``(nz, ny, nx)``; ``origin``/``voxel_size`` ``[x, y, z]`` in Å.
    device : torch.device
        Where the volume lives.

    Notes
    -----
    Points outside the grid take the value of the nearest border voxel (``padding_mode="border"``);
    prepared volumes carry a padded margin of the negative value, so outside is penalised.
    """

    def __init__(self, volume: DensityMap, device: torch.device, padding: str = "border"):
        self.device = device
        self.padding = padding
        self.volume = torch.as_tensor(np.ascontiguousarray(volume.data), dtype=torch.float32,
                                      device=device)[None, None]
        dims_xyz = torch.tensor(volume.data.shape[::-1], dtype=torch.float32, device=device)
        self.origin = torch.as_tensor(volume.origin, dtype=torch.float32, device=device)
        self.scale = 2.0 / ((dims_xyz - 1.0) * torch.as_tensor(volume.voxel_size,
                                                               dtype=torch.float32,
                                                               device=device))

    def __call__(self, xyz: torch.Tensor) -> torch.Tensor:
        """Sample at ``(K, N, 3)`` world coordinates; returns ``(K, N)`` values."""
        return self._sample((xyz - self.origin) * self.scale - 1.0)

    def sample_posed(self, x: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        """Sample at ``rot @ x + trans`` for ``(K, N, 3)`` x, ``(K, 3, 3)`` rot, ``(K, 3)`` trans.

        The grid normalisation is folded into the rigid transform, so the only work on the
        ``(K, N, 3)`` coordinates is one batched matrix product (and its backward).
        """
        a = rot.transpose(1, 2) * self.scale  # scales the output (x, y, z) columns
        b = ((trans - self.origin) * self.scale - 1.0)[:, None, :]
        return self._sample(torch.baddbmm(b, x, a))

    def _sample(self, grid: torch.Tensor) -> torch.Tensor:
        out = F.grid_sample(self.volume, grid[None, :, :, None, :], mode="bilinear",
                            padding_mode=self.padding, align_corners=True)
        return out[0, 0, :, :, 0]


def rotvec_to_matrix(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: ``(..., 3)`` rotation vectors (radians) to ``(..., 3, 3)`` matrices."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = theta2 < 1e-8
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / (theta * theta))
    zero = torch.zeros_like(w[..., 0])
    k = torch.stack([zero, -w[..., 2], w[..., 1],
                     w[..., 2], zero, -w[..., 0],
                     -w[..., 1], w[..., 0], zero], dim=-1).reshape(*w.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
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
    coords: torch.Tensor,
    atom_weights: torch.Tensor,
    owner: torch.Tensor,
    rot0: torch.Tensor,
    trans0: torch.Tensor,
    iterations: int,
    lr_trans: float,
    lr_rot: torch.Tensor,
    final_lr_fraction: float = 0.05,
) -> PoseBatch:
    """Optimise ``K`` placements of ``B`` candidates together with Adam.

    Parameters
    ----------
    sampler : VolumeSampler
        The loss volume.
    coords : torch.Tensor
        ``(B, N, 3)`` centred coordinates of each candidate, zero-padded to ``N`` atoms.
    atom_weights : torch.Tensor
        ``(B, N)`` weights (1 for real atoms, 0 for padding).
    owner : torch.Tensor
        ``(K,)`` long, the candidate of each placement.
    rot0 : torch.Tensor
        ``(K, 3, 3)`` start rotations.
    trans0 : torch.Tensor
        ``(K, 3)`` start centroid positions, Å.
    iterations : int
        Adam steps.
    lr_trans : float
        Translation step in Å.
    lr_rot : torch.Tensor
        ``(K,)`` rotation step in radians (per placement: ``lr_trans / radius of gyration``).
    final_lr_fraction : float
        The step sizes decay (cosine) to this fraction of their start value.

    Returns
    -------
    PoseBatch
        Final poses and losses (losses evaluated at the final poses).
    """
    dev = sampler.device
    x = coords.to(dev)[owner]  # (K, N, 3)
    m = atom_weights.to(dev)[owner]  # (K, N)
    m_sum = m.sum(-1).clamp_min(1e-6)
    uniform = bool((m == 1).all())  # no padding: a plain mean
    rot0 = rot0.to(dev).clone()
    t = trans0.to(dev).clone().requires_grad_(True)
    w = torch.zeros_like(t, requires_grad=True)
    lr_rot = lr_rot.to(dev)
    opt = torch.optim.Adam([{"params": [t], "lr": lr_trans},
                            {"params": [w], "lr": 1.0}])
    # The rotation step differs per placement: scale the gradient of w instead of the lr.
    rot_scale = lr_rot[:, None]

    def losses() -> torch.Tensor:
        rot = rotvec_to_matrix(w * rot_scale) @ rot0
        vals = sampler.sample_posed(x, rot, t)
        if uniform:
            return -vals.mean(-1)
        return -(vals * m).sum(-1) / m_sum

    for it in range(iterations):
        frac = final_lr_fraction + (1 - final_lr_fraction) * 0.5 * (
            1 + math.cos(math.pi * it / max(iterations - 1, 1)))
        opt.param_groups[0]["lr"] = lr_trans * frac
        opt.param_groups[1]["lr"] = frac
        opt.zero_grad(set_to_none=True)
        loss = losses()
        loss.sum().backward()
        opt.step()
        if (it + 1) % 25 == 0:  # fold the rotation into rot0 to keep w small
            with torch.no_grad():
                rot0 = rotvec_to_matrix(w * rot_scale) @ rot0
                w.zero_()
    with torch.no_grad():
        final = losses()
        rot = rotvec_to_matrix(w * rot_scale) @ rot0
    return PoseBatch(rot.cpu().numpy().astype(np.float64), t.detach().cpu().numpy().astype(
        np.float64), final.cpu().numpy())
