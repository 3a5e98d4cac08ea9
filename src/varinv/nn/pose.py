"""A per-fragment pose: a bounded similarity transform (rotation, scale, shift) applied to the decoder's output.

Image fragments of one content differ by where and how large and how tilted the glyph is drawn; a
codebook of K atoms then cuts that pose instead of the identity, because pose moves more pixels. With a
pose the encoder reads from each fragment and the decoder's rendering warped by it, an atom renders its
content in one canonical pose, and the atom that fits a fragment best is the one with the right content.
A similarity transform cannot turn one glyph into another, so the pose cannot carry the content itself
(unlike a free continuous code), and its bounds keep it a small correction.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

POSES = {"none": 0, "similarity": 4, "time": 1, "tempo": 2}  # name -> parameters per fragment
MAX_ROTATION = 0.5  # radians (about 29 degrees)
MAX_LOG_SCALE = 0.25  # scale within [0.78, 1.28]
MAX_SHIFT = 0.25  # of the half-side (4 px of a 32-px fragment)
# "time": a shift along the last axis only, which in a spectrogram is time, so the pose moves where a
# word or note starts and never its pitch or timbre. Up to half the fragment's length either way: an
# utterance cut out of a recording can sit anywhere in its window.
MAX_TIME_SHIFT = 1.0  # of the half-length
# "tempo": the time shift and a stretch along time (a word spoken faster or slower, a note held longer),
# still never a move along frequency.
MAX_LOG_STRETCH = 0.4  # stretch within [0.67, 1.49]


def pose_matrix(p: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) affine matrices (``F.affine_grid``'s output-to-input convention) from raw parameters
    p (N, 4): rotation, log-scale and two shifts; p (N, 1): a shift along the last axis; p (N, 2): that shift
    and a log-stretch along the last axis; each squashed by tanh into its bound. p = 0: identity."""
    t = torch.tanh(p.float())
    if t.shape[1] in (POSES["time"], POSES["tempo"]):
        one, zero = torch.ones_like(t[:, 0]), torch.zeros_like(t[:, 0])
        stretch = torch.exp(MAX_LOG_STRETCH * t[:, 1]) if t.shape[1] == POSES["tempo"] else one
        return torch.stack([torch.stack([stretch, zero, MAX_TIME_SHIFT * t[:, 0]], 1),
                            torch.stack([zero, one, zero], 1)], 1)
    angle, scale = MAX_ROTATION * t[:, 0], torch.exp(MAX_LOG_SCALE * t[:, 1])
    cos, sin = scale * torch.cos(angle), scale * torch.sin(angle)
    shift = MAX_SHIFT * t[:, 2:4]
    return torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)


@functools.lru_cache(maxsize=16)
def _pixel_centres(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(H·W, 3) homogeneous (x, y, 1) of the pixel centres in [-1, 1] (``align_corners=False``)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) * 2 + 1) / w - 1
    return torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w, device=device)], -1).view(-1, 3)


def warp(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Fragments x (N, C, H, W) resampled under the poses p (N, 4 or 1); outside the frame repeats the border
    (the background), so a warp never pastes in a frame of zeros. The sampling grid is ``F.affine_grid``'s, as
    one product with cached pixel centres: affine_grid rebuilds its base grid in every call and its backward,
    a tenth of a PhoneNums step."""
    return _resample(x, pose_matrix(p))


def unwarp(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`warp`: fragments x (N, C, H, W) brought back from the poses p to the canonical pose
    their atoms are rendered in (up to what the warp moved out of the frame)."""
    theta = pose_matrix(p)
    inv = torch.linalg.inv(theta[:, :, :2])
    return _resample(x, torch.cat([inv, -inv @ theta[:, :, 2:]], 2))


def _resample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    n, _, h, w = x.shape
    with torch.autocast(x.device.type, enabled=False):  # the grid in fp32, as affine_grid's under autocast
        grid = (_pixel_centres(h, w, x.device) @ theta.transpose(1, 2)).view(n, h, w, 2)  # pose_matrix is fp32
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False).to(x.dtype)
