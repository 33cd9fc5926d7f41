"""Training-time distortions of prepared digits: what real pens, papers, cameras and the preprocessing itself
vary by, applied to whole batches at once so augmentation costs a small part of a training step."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Each distortion below is applied to a random share of the batch, at a random strength, so the model
# still sees plenty of clean MNIST-like digits. Affine: rotations up to ~10 degrees, scale 0.9-1.1,
# shear 0.15 and shifts of 2 pixels (0.15 of the field in grid units) are how handwriting varies.
ANGLE, SCALE, SHEAR, SHIFT = 0.17, 0.1, 0.15, 0.15
# Elastic: smooth random warps (Simard et al. 2003) of up to about a pixel, on a 4x4 control grid.
ELASTIC_SHARE, ELASTIC_STRENGTH = 0.5, 0.08
# Stroke width: a ballpoint at photo resolution is thinner than MNIST's pens, a marker or a bold font thicker.
THICKEN_SHARE, THIN_SHARE = 0.25, 0.2
BLUR_SHARE = 0.2
# Ink that comes out grey from a photo (pencil, glare, a faded print) and sensor noise.
FADE_SHARE, NOISE_SHARE, NOISE_LEVEL = 0.25, 0.2, 0.08
# Gaps in the strokes (for the share of the batch a recipe asks): blobs of a few pixels cut where a smooth
# random field (10x10, enlarged) falls under up to this level.
GAP_CUT = 0.4


def augment(batch: torch.Tensor, generator: torch.Generator, gap_share: float = 0.0) -> torch.Tensor:
    """Random affine and elastic warps (one resampling), then gaps in the strokes of `gap_share` of the digits,
    stroke width, blur, greyer ink and noise, on a (N, 1, 28, 28) batch in 0..1; seeded by `generator`, so a
    resumed run sees the same distortions."""
    warped = _warp(batch, generator)
    if gap_share:
        warped = _with_gaps(warped, gap_share, generator)
    return _ink(warped, generator).clamp_(0, 1)


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, generator=generator).mul_(high - low).add_(low)


def _chosen(count: int, share: float, generator: torch.Generator) -> torch.Tensor:
    """A (count, 1, 1, 1) weight: a random strength in 0..1 for `share` of the batch, 0 for the rest."""
    strength = torch.rand(count, generator=generator)
    picked = torch.rand(count, generator=generator) < share
    return (strength * picked).view(count, 1, 1, 1)


def _affine_grid(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    count = batch.shape[0]
    angle, scale = _uniform(count, -ANGLE, ANGLE, generator), _uniform(count, 1 - SCALE, 1 + SCALE, generator)
    shear = _uniform(count, -SHEAR, SHEAR, generator)
    shift_x, shift_y = _uniform(count, -SHIFT, SHIFT, generator), _uniform(count, -SHIFT, SHIFT, generator)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    return F.affine_grid(theta.to(batch.device), list(batch.shape), align_corners=False)


def _warp(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Affine and elastic displacement combined into one sampling grid, so the digit is resampled once."""
    count, _, height, width = batch.shape
    grid = _affine_grid(batch, generator)
    control = torch.randn(count, 2, 4, 4, generator=generator) * ELASTIC_STRENGTH
    control *= (torch.rand(count, 1, 1, 1, generator=generator) < ELASTIC_SHARE)
    field = F.interpolate(control, size=(height, width), mode="bicubic", align_corners=False)
    grid = grid + field.permute(0, 2, 3, 1).to(batch.device)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _with_gaps(batch: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """The batch with blobs of ink cut away in `share` of its digits: what faint pencil, a skipping pen or uneven
    light leave of a stroke once the preprocessing thresholds the ink."""
    count = batch.shape[0]
    field = F.interpolate(torch.rand(count, 1, 10, 10, generator=generator), size=batch.shape[-2:], mode="bilinear")
    return batch * (field >= GAP_CUT * _chosen(count, share, generator)).to(batch.device)


def _ink(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Stroke width, blur, greyer ink and noise, each at its own random strength."""
    count = batch.shape[0]
    device = batch.device
    thicker = F.max_pool2d(batch, 3, stride=1, padding=1)
    thinner = -F.max_pool2d(-batch, 3, stride=1, padding=1)
    batch = batch + _chosen(count, THICKEN_SHARE, generator).to(device) * (thicker - batch)
    # At most half-way to the eroded digit: a full erosion wipes out MNIST's 2-pixel strokes.
    batch = batch + 0.5 * _chosen(count, THIN_SHARE, generator).to(device) * (thinner - batch)
    blurred = F.avg_pool2d(batch, 3, stride=1, padding=1, count_include_pad=False)
    batch = batch + _chosen(count, BLUR_SHARE, generator).to(device) * (blurred - batch)
    # Greyer strokes with the same darkest point (the preprocessing stretches each digit's peak to full
    # ink): a gamma of up to 3 turns MNIST's nearly solid strokes into the gradients of pencil or a photo.
    batch = batch.clamp(min=0) ** (1 + 2 * _chosen(count, FADE_SHARE, generator).to(device))
    # Noise only on and beside the strokes: the preprocessing leaves the paper around a digit exactly black.
    noise = torch.randn(batch.shape, generator=generator).to(device) * NOISE_LEVEL * (thicker > 0)
    return batch + _chosen(count, NOISE_SHARE, generator).to(device) * noise
