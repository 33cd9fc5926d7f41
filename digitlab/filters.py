"""Image filters and robust statistics on float arrays, written for the sizes preprocessing meets: each a
fraction of the general scipy call's cost, with the same answer."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image
from scipy import ndimage

def square_opening(mask: np.ndarray, size: int) -> np.ndarray:
    """`ndimage.binary_opening` by a size x size square, exactly, as two separable filters: several times faster."""
    shrunk = ndimage.minimum_filter(mask, size=size, mode="constant")
    return ndimage.maximum_filter(shrunk, size=size, mode="constant", origin=0 if size % 2 else -1)


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    """Area (box) resampling: every source pixel counts, so thin strokes fade instead of vanishing."""
    height, width = image.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image, mode="F").resize(size, Image.Resampling.BOX))


@functools.lru_cache(maxsize=256)  # at most 256 x 20 x 512 floats: 10 MB
def resampling_weights(source: int, target: int, method: Image.Resampling) -> np.ndarray:
    """The (target, source) matrix of Pillow's resampling along one axis, read off by resizing an identity:
    a product with it costs a fifth of a Pillow call on a digit-sized image, and agrees to float rounding."""
    spikes = Image.fromarray(np.eye(source, dtype=np.float32), mode="F")
    return np.asarray(spikes.resize((target, source), method)).T.copy()


def sparse_median_filter(image: np.ndarray, size: int) -> np.ndarray:
    """The median of each `size` x `size` window (edges repeated), taken only every third of a window apart:
    the paper's level changes slowly, so a coarse grid of medians, enlarged, stands for the full filter at a
    small fraction of its cost."""
    step = max(1, size // 3)
    padded = _pad_edges(image, size // 2)
    # The windows as a strided view (sliding_window_view's own checks cost as much as the view).
    rows, columns = (length - size + 1 for length in padded.shape)
    row_stride, column_stride = padded.strides
    windows = np.lib.stride_tricks.as_strided(
        padded,
        ((rows - 1) // step + 1, (columns - 1) // step + 1, size, size),
        (row_stride * step, column_stride * step, row_stride, column_stride),
        writeable=False,
    )
    return median(windows.reshape(*windows.shape[:2], -1)).astype(np.float32)


def _pad_edges(image: np.ndarray, width: int) -> np.ndarray:
    """np.pad(image, width, mode="edge") by indexing, at a fifth of np.pad's cost on a digit-sized image."""
    height, breadth = image.shape
    rows = np.minimum(np.maximum(np.arange(-width, height + width), 0), height - 1)  # np.clip costs 3x more
    columns = np.minimum(np.maximum(np.arange(-width, breadth + width), 0), breadth - 1)
    return image.take(rows, axis=0).take(columns, axis=1)


def median(values: np.ndarray) -> np.ndarray:
    """np.median along the last axis, by the same partition but without its generic checks, which cost more
    than the work on a digit-sized image (preprocessing takes half a dozen medians per image)."""
    count = values.shape[-1]
    middle = count // 2
    if count % 2:
        return np.partition(values, middle, axis=-1)[..., middle]
    halves = np.partition(values, (middle - 1, middle), axis=-1)
    return (halves[..., middle - 1] + halves[..., middle]) / 2


def opening(image: np.ndarray, size: int) -> np.ndarray:
    """ndimage.grey_opening(image, size=(size, size), mode="nearest") as its four 1-D passes, without the
    general call's overhead (a third of its cost on a digit-sized image). Dilation shifts even windows."""
    shift = -1 if size % 2 == 0 else 0
    eroded = ndimage.minimum_filter1d(ndimage.minimum_filter1d(image, size, 0, mode="nearest"), size, 1, mode="nearest")
    opened = ndimage.maximum_filter1d(eroded, size, 0, mode="nearest", origin=shift)
    return ndimage.maximum_filter1d(opened, size, 1, mode="nearest", origin=shift)


def median_3x3(image: np.ndarray) -> np.ndarray:
    """ndimage.median_filter(image, size=3) (edges mirrored), at half its cost: each column of three is
    sorted once, and a window's median is the median of its columns' largest low, middle median and
    smallest high."""
    padded = _pad_edges(image, 1)  # scipy mirrors the edge, which at one pixel repeats it
    above, middle, below = padded[:-2], padded[1:-1], padded[2:]
    low = np.minimum(np.minimum(above, below), middle)
    high = np.maximum(np.maximum(above, below), middle)
    mid = _median_of_three(above, middle, below)
    lows = np.maximum(np.maximum(low[:, :-2], low[:, 1:-1]), low[:, 2:])
    highs = np.minimum(np.minimum(high[:, :-2], high[:, 1:-1]), high[:, 2:])
    return _median_of_three(lows, _median_of_three(mid[:, :-2], mid[:, 1:-1], mid[:, 2:]), highs)


def quantile(values: np.ndarray, share: float) -> float:
    """The value `share` of the way up the sorted values (np.quantile's lower value, by a partition)."""
    flat = values.ravel()
    index = min(len(flat) - 1, int(share * (len(flat) - 1)))
    return float(np.partition(flat, index)[index])


def _median_of_three(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def otsu_cut(values: np.ndarray) -> float:
    """Otsu's threshold: the cut between two classes of values that maximises their between-class variance."""
    counts, edges = _histogram(values, 64)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = counts.cumsum()
    mass = (counts * centres).cumsum()
    below, above = weight[:-1], weight[-1] - weight[:-1]
    valid = (below > 0) & (above > 0)
    if not valid.any():
        return float(edges[-1])
    mean_below = mass[:-1] / np.maximum(below, 1)
    mean_above = (mass[-1] - mass[:-1]) / np.maximum(above, 1)
    spread = np.where(valid, below * above * (mean_below - mean_above) ** 2, -1)
    return float(edges[1 + spread.argmax()])


def _histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """np.histogram's counts and edges for `bins` equal bins over the values' range, by one bincount: its
    general checks cost more than the counting on a digit-sized image."""
    low, high = float(values.min()), float(values.max())
    if high == low:
        low, high = low - 0.5, high + 0.5
    edges = np.arange(bins + 1) * ((high - low) / bins) + low  # np.linspace's own arithmetic, without its checks
    edges[-1] = high
    index = ((values.ravel() - low) * (bins / (high - low))).astype(np.intp)
    return np.bincount(np.minimum(index, bins - 1), minlength=bins), edges
