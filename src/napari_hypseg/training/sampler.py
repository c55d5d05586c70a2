"""Lazy multi-scale triplet sampling straight from the volume tensor.

Each batch draws anchor boxes at random scales, a positive box nested inside
each anchor and a same-size negative box that does not overlap it, then reads
all ``3·B`` boxes resized to ``m³`` with a single trilinear ``grid_sample``
call on the (un-copied) volume. Nothing is pre-indexed, so a 1024×1024×500
tomogram costs the same per batch as a 50³ phantom.

On the CPU, PyTorch's 3D ``grid_sample`` kernel is slow: a batch of 32
triplets took 35–42 ms to sample through it and 10–14 ms by cropping each
box (a view, no copy) and resizing it with ``interpolate`` (2 cores, 50³ and
256³ volumes), so the CPU reads box by box.
Both paths sample the same points (voxel-centre convention); they differ
only for boxes smaller than ``m``, at the outermost half voxel, where the
crop clamps to the box and ``grid_sample`` reads the neighbouring voxel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import SamplerConfig


@dataclass
class TripletBatch:
    """Normalised patches ``(B, 1, m, m, m)`` and the boxes they were read from.

    Boxes are ``(B, 2, 3)`` tensors of (start, edge) in voxels along (z, y, x);
    ``volume`` is the index of the source volume of each triplet.
    """

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    anchor_box: torch.Tensor
    positive_box: torch.Tensor
    negative_box: torch.Tensor
    volume: torch.Tensor

    def all_patches(self) -> torch.Tensor:
        return torch.cat([self.anchor, self.positive, self.negative])


def _uniform(n: int, low: torch.Tensor | float, high: torch.Tensor | float, gen, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


class TripletSampler:
    """Draw batches of hierarchical triplets from one or more volumes.

    Parameters
    ----------
    volumes : list of (Z, Y, X) float tensors
        Raw intensities, already on the training device (never copied here).
    patch_size : int
        Edge ``m`` every box is resized to.
    normalize : callable
        Maps raw intensities to the model's normalised range.
    config : SamplerConfig
    generator : torch.Generator
        Seeded generator on the volumes' device (makes runs reproducible).
    """

    def __init__(self, volumes, patch_size: int, normalize, config: SamplerConfig, generator: torch.Generator):
        self.volumes = [v.reshape(1, 1, *v.shape) for v in volumes]
        self.m = int(patch_size)
        self.normalize = normalize
        self.config = config
        self.gen = generator
        self.device = self.volumes[0].device
        sizes = torch.tensor([float(v.numel()) for v in self.volumes])
        self._volume_weights = (sizes / sizes.sum()).to(self.device)
        if config.scale_sampling == "auto":
            self._log_scale = config.anchor_max > 4 * config.anchor_min
        else:
            self._log_scale = config.scale_sampling == "log"
        # sample offsets of an m³ grid inside a unit box, voxel-centre convention
        t = (torch.arange(self.m, device=self.device, dtype=torch.float32) + 0.5) / self.m
        self._unit = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), dim=-1)  # (m, m, m, 3) in z, y, x

    # -- boxes -----------------------------------------------------------------
    def _anchor_edges(self, n: int, shape: torch.Tensor) -> torch.Tensor:
        c = self.config
        lo, hi = float(c.anchor_min), float(c.anchor_max) + 1.0
        if self._log_scale:
            r = torch.exp(_uniform(n, math.log(lo), math.log(hi), self.gen, self.device)).floor()
        else:
            r = _uniform(n, lo, hi, self.gen, self.device).floor()
        r = r.clamp(max=c.anchor_max)
        return torch.minimum(r[:, None], shape[None, :])  # (n, 3): anisotropic volumes clip per axis

    def _boxes(self, n: int, shape: torch.Tensor):
        """Return (start, edge) of anchor, positive and negative boxes, each (n, 3) float."""
        c = self.config
        a_edge = self._anchor_edges(n, shape)
        a_start = (_uniform(n * 3, 0.0, 1.0, self.gen, self.device).reshape(n, 3) * (shape - a_edge + 1)).floor()

        r = a_edge.min(dim=1).values
        child_hi = torch.clamp(r - c.child_gap, min=c.child_min)
        child = _uniform(n, float(c.child_min), child_hi + 1.0, self.gen, self.device).floor()
        child = torch.minimum(child, child_hi)
        c_edge = torch.minimum(child[:, None], a_edge)
        p_start = (
            a_start + (_uniform(n * 3, 0.0, 1.0, self.gen, self.device).reshape(n, 3) * (a_edge - c_edge + 1)).floor()
        )

        n_start = self._negative_starts(a_start, a_edge, c_edge, shape)
        return (a_start, a_edge), (p_start, c_edge), (n_start, c_edge)

    def _negative_starts(self, a_start, a_edge, c_edge, shape) -> torch.Tensor:
        """Starts of boxes of edge ``c_edge`` that do not overlap the anchors.

        A box misses its anchor when it lies wholly before or after it along
        one axis. Each of the six (axis, side) slabs is chosen in proportion
        to the number of start positions it offers, then the start is uniform
        within it, so negatives are uniform over all admissible positions
        (up to slab overlaps). An anchor that leaves no room anywhere (it
        fills the volume) gets an unconstrained negative.
        """
        n = a_start.shape[0]
        rows = torch.arange(n, device=self.device)
        before = (a_start - c_edge + 1).clamp(min=0)  # starts in [0, a_start - c_edge]
        after = (shape - c_edge - (a_start + a_edge) + 1).clamp(min=0)  # starts in [a_end, shape - c_edge]
        room = torch.cat([before, after], dim=1)  # (n, 6): axis z,y,x before, then after
        anywhere = torch.ones_like(room)
        weights = torch.where(room.sum(1, keepdim=True) > 0, room, anywhere)
        choice = torch.multinomial(weights, 1, generator=self.gen).squeeze(1)
        axis, side_after = choice % 3, choice >= 3
        free = shape - c_edge + 1
        start = (torch.rand(n, 3, generator=self.gen, device=self.device) * free).floor()
        constrained = room.sum(1) > 0
        u = torch.rand(n, generator=self.gen, device=self.device)
        slab = room[rows, choice]
        offset = (u * slab).floor()
        a_end = (a_start + a_edge)[rows, axis]
        along = torch.where(side_after, a_end + offset, offset)
        start[rows, axis] = torch.where(constrained, along, start[rows, axis])
        return start

    # -- reading -----------------------------------------------------------------
    def _read(self, volume: torch.Tensor, start: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        """Resample boxes ``(n, 3)`` (start, edge) to ``(n, 1, m, m, m)``."""
        if volume.device.type == "cpu":
            return self._read_crops(volume, start, edge)
        return self._read_grid(volume, start, edge)

    def _read_crops(self, volume: torch.Tensor, start: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        """Crop each box (a view) and resize it with trilinear ``interpolate``.

        The volume may keep its file's integer type (a memory-mapped tomogram
        of 8 or 16 bits): only the crops are converted to float32.
        """
        size = (self.m,) * 3
        out = torch.empty((start.shape[0], 1, *size), dtype=torch.float32)
        for i, ((z, y, x), (ez, ey, ex)) in enumerate(zip(start.int().tolist(), edge.int().tolist())):
            crop = volume[:, :, z : z + ez, y : y + ey, x : x + ex].to(torch.float32)
            if crop.shape[2:] == size:
                out[i] = crop[0]
            else:
                out[i] = F.interpolate(crop, size=size, mode="trilinear", align_corners=False)[0]
        return out

    def _read_grid(self, volume: torch.Tensor, start: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        """Resample boxes with one grid_sample over the whole volume (no copy)."""
        shape = torch.tensor(volume.shape[2:], device=self.device, dtype=torch.float32)
        # voxel i covers [i - 0.5, i + 0.5]: an edge-m box lands exactly on voxel centres
        pts = (start - 0.5)[:, None, None, None, :] + self._unit[None] * edge[:, None, None, None, :]
        norm = 2.0 * pts / (shape - 1).clamp(min=1) - 1.0
        grid = norm.flip(-1).reshape(1, -1, self.m, self.m, 3)  # grid_sample wants (x, y, z)
        out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out.reshape(-1, 1, self.m, self.m, self.m)

    def sample(self, batch_size: int) -> TripletBatch:
        """Draw ``batch_size`` triplets (volumes chosen in proportion to their size)."""
        if len(self.volumes) == 1:
            counts = [batch_size]  # the common case needs no read-back from the device
        else:
            which = torch.multinomial(self._volume_weights, batch_size, replacement=True, generator=self.gen)
            counts = torch.bincount(which, minlength=len(self.volumes)).tolist()
        parts = []
        for index, (volume, n) in enumerate(zip(self.volumes, counts)):
            if n:
                parts.append((*self._sample_from(volume, n), torch.full((n,), index, device=self.device)))
        return TripletBatch(*(torch.cat(p) for p in zip(*parts)))

    def _sample_from(self, volume: torch.Tensor, n: int):
        shape = torch.tensor(volume.shape[2:], device=self.device, dtype=torch.float32)
        # oversample 4x so homogeneous anchors (up to ~3/4 of a mostly empty
        # volume) can be dropped without reading a count back from the device;
        # reading anchors is one grid_sample, cheap next to the network
        extra = 4 * n
        (a_s, a_e), (p_s, p_e), (n_s, n_e) = self._boxes(extra, shape)
        anchors = self.normalize(self._read(volume, a_s, a_e))
        informative = anchors.flatten(1).std(dim=1) >= self.config.min_std
        # stable order: informative anchors first, homogeneous ones only to fill up
        keep = torch.argsort((~informative).to(torch.int8), stable=True)[:n]
        a_s, a_e, p_s, p_e, n_e = a_s[keep], a_e[keep], p_s[keep], p_e[keep], n_e[keep]
        if self.config.negatives == "content":
            positives = self.normalize(self._read(volume, p_s, p_e))
            n_s, negatives = self._content_negatives(volume, shape, a_s, a_e, positives, n_e)
        else:
            n_s = n_s[keep]
            children = self.normalize(self._read(volume, torch.cat([p_s, n_s]), torch.cat([p_e, n_e])))
            positives, negatives = children[:n], children[n:]
        return (
            anchors[keep],
            positives,
            negatives,
            torch.stack([a_s, a_e], 1),
            torch.stack([p_s, p_e], 1),
            torch.stack([n_s, n_e], 1),
        )

    def _content_negatives(self, volume, shape, a_start, a_edge, positives, c_edge):
        """Of :attr:`SamplerConfig.negative_candidates` boxes missing each anchor, the one least like the positive.

        Content is the patch's mean and standard deviation of normalised
        intensity: a box of the same material elsewhere is not pushed away
        from the positive just for lying elsewhere.
        """
        n, c = a_start.shape[0], self.config.negative_candidates
        starts = torch.cat([self._negative_starts(a_start, a_edge, c_edge, shape) for _ in range(c)])
        patches = self.normalize(self._read(volume, starts, c_edge.repeat(c, 1)))
        content = _content(patches).reshape(c, n, -1)
        distance = (content - _content(positives)[None]).square().sum(-1)  # (c, n)
        best = distance.argmax(0) * n + torch.arange(n, device=self.device)
        return starts[best], patches[best]


def _content(patches: torch.Tensor) -> torch.Tensor:
    """(n, 2) mean and standard deviation of each patch."""
    flat = patches.flatten(1)
    return torch.stack([flat.mean(1), flat.std(1)], 1)
