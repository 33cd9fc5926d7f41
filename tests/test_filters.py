"""Tests for digitlab.filters: each fast filter gives exactly what the general scipy or Pillow call gives."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from digitlab import filters
from digitlab.threshold import BACKGROUND_FRACTION


@pytest.mark.parametrize("shape", [(1, 1), (2, 9), (28, 28), (37, 64), (300, 512)])
def test_fast_filters_equal_scipys(shape):
    # Photo-like values (smooth light, strokes, grain, repeated levels): the 3x3 median, the background's
    # opening and the edge padding are exact rewrites, so preprocessing gives the very same digits.
    generator = np.random.default_rng(sum(shape))
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    image = 120 + 40 * np.sin(rows / 17) + 30 * np.cos(columns / 11) + generator.normal(0, 8, shape)
    image[generator.random(shape) < 0.1] = 250
    image = np.round(np.clip(image, 0, 255) / 3).astype(np.float32) * 3
    np.testing.assert_array_equal(filters.median_3x3(image), ndimage.median_filter(image, size=3))
    size = max(3, round(min(shape) * BACKGROUND_FRACTION))
    for window in {size, size + 1}:  # even windows shift the dilation
        np.testing.assert_array_equal(
            filters.opening(image, window), ndimage.grey_opening(image, size=(window, window), mode="nearest")
        )
    np.testing.assert_array_equal(filters._pad_edges(image, 5), np.pad(image, 5, mode="edge"))


@pytest.mark.parametrize(("source", "target"), [((37, 23), (20, 12)), ((9, 14), (13, 20)), ((10, 10), (28, 28)), ((20, 5), (20, 5))])
def test_resampling_by_weights_agrees_with_pillow(source, target):
    # The fit to 20 pixels and the polarity's background resample by matrices read off Pillow itself.
    image = np.random.default_rng(0).random(source).astype(np.float32) * 255
    method = Image.Resampling.BOX if target[0] < source[0] else Image.Resampling.BILINEAR
    pillow = np.asarray(Image.fromarray(image, mode="F").resize(target[::-1], method))
    rows, columns = (filters.resampling_weights(*sizes, method) for sizes in zip(source, target))
    np.testing.assert_allclose(rows @ image @ columns.T, pillow, atol=1e-3)
