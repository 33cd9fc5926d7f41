"""PNG figures for run folders and evaluation reports (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_history(history: list[dict], path: Path) -> None:
    """Accuracy and loss per epoch, training against validation, like the tutorial's plot."""
    epochs = [record["epoch"] for record in history]
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key in ((accuracy_axis, "accuracy"), (loss_axis, "loss")):
        axis.plot(epochs, [record[key] for record in history], "o-", label="training")
        axis.plot(epochs, [record[f"val_{key}"] for record in history], "o-", label="validation")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(key)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion(matrix: np.ndarray, class_names: tuple[str, ...], path: Path) -> None:
    """Confusion matrix with counts in each cell; rows are the truth, columns the prediction."""
    figure, axis = plt.subplots(figsize=(7, 6))
    axis.imshow(np.log1p(matrix), cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        if count:
            axis.text(column, row, str(count), ha="center", va="center", fontsize=7)
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_gallery(images: np.ndarray, captions: list[str], path: Path, columns: int = 8) -> None:
    """A grid of 28x28 images with a caption under each (used for the most confident mistakes)."""
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.4, rows * 1.6))
    for axis in np.atleast_1d(axes).ravel():
        axis.axis("off")
    for axis, image, caption in zip(np.atleast_1d(axes).ravel(), images, captions):
        axis.imshow(image, cmap="gray", vmin=0, vmax=255)
        axis.set_title(caption, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_reliability(before: list[dict], after: list[dict], path: Path) -> None:
    """Reliability diagram: accuracy against confidence per bin, raw and temperature-scaled; a calibrated
    model's bars sit on the diagonal."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    for axis, table, title in ((axes[0], before, "raw softmax"), (axes[1], after, "temperature-scaled")):
        filled = [row for row in table if row["count"]]
        lows = [row["low"] for row in filled]
        width = filled[0]["high"] - filled[0]["low"] if filled else 0
        axis.bar(lows, [row["accuracy"] for row in filled], width=width, align="edge", edgecolor="black",
                 label="accuracy")
        axis.bar(lows, [row["confidence"] - row["accuracy"] for row in filled], bottom=[row["accuracy"] for row in filled],
                 width=width, align="edge", color="tab:red", alpha=0.4, label="gap to confidence")
        axis.plot([0, 1], [0, 1], "k--", linewidth=1)
        axis.set_title(title)
        axis.set_xlabel("confidence")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.legend(loc="upper left")
    axes[0].set_ylabel("accuracy")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
