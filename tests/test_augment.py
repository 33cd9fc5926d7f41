"""Training-time distortions: seeded, shape-keeping, and faithful to what real digits vary by."""

import pytest
import torch

from digitlab.augment import augment
from digitlab.data import load_dataset
from digitlab.model import to_model_input


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    images, _ = load_dataset("mnist", "test")
    return to_model_input(images[:256])


def test_augment_is_seeded_stays_in_range_and_changes_most_digits(digits):
    first = augment(digits, torch.Generator().manual_seed(3))
    again = augment(digits, torch.Generator().manual_seed(3))
    other = augment(digits, torch.Generator().manual_seed(4))
    assert first.shape == digits.shape and torch.equal(first, again) and not torch.equal(first, other)
    assert first.min().item() >= 0 and first.max().item() <= 1
    changed = (first - digits).abs().flatten(1).amax(1) > 0.05
    assert changed.float().mean().item() > 0.9


def test_augment_varies_stroke_width_but_keeps_the_paper_black(digits):
    out = augment(digits, torch.Generator().manual_seed(0))
    ink_ratio = out.flatten(1).sum(1) / digits.flatten(1).sum(1)
    # Some digits come out bolder, some thinner or fainter, none vanish or become blobs.
    assert ink_ratio.max().item() > 1.3 and ink_ratio.min().item() < 0.8
    assert ink_ratio.min().item() > 0.2 and ink_ratio.max().item() < 3.5
    # Far from every stroke (beyond the warps' reach of about 7 pixels), the field stays black: noise and
    # blur touch only the strokes and their edges.
    far = torch.nn.functional.max_pool2d(digits, 19, stride=1, padding=9) == 0
    assert out[far].abs().max().item() == 0


def test_gaps_cut_blobs_from_about_the_asked_share_of_the_digits_and_never_most_of_one(digits):
    from scipy import ndimage

    from digitlab.augment import _with_gaps

    solid = torch.ones(400, 1, 28, 28)
    cut = _with_gaps(solid, 0.25, torch.Generator().manual_seed(0))
    lost = 1 - cut.flatten(1).mean(1)
    assert 0.05 < (lost > 0).float().mean().item() < 0.35
    assert lost.max().item() < 0.5
    # Each gap is a blob of several pixels, not scattered single pixels as noise would be.
    holes = (cut[lost.argmax(), 0] == 0).numpy()
    labels, count = ndimage.label(holes)
    assert count >= 1 and holes.sum() / count >= 4
    # A recipe's share reaches the batch: the same seed gives another batch with gaps than without.
    with_gaps = augment(digits, torch.Generator().manual_seed(1), gap_share=0.25)
    assert not torch.equal(with_gaps, augment(digits, torch.Generator().manual_seed(1)))
