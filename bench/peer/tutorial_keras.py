"""The tutorial's TensorFlow/Keras program as the tutorial writes it, the peer digitlab's speed is measured against.

Only the data source differs: the local MNIST IDX files instead of tensorflow-datasets, since the
benchmark machines have no network. Prints one JSON line: test accuracy and wall seconds of fit.
Usage: python tutorial_keras.py TRAIN_IMAGES TRAIN_LABELS TEST_IMAGES TEST_LABELS  (IDX files, gzip or not)
"""

import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf


def read_idx(path: Path) -> np.ndarray:
    """Minimal IDX reader (the peer must not import digitlab: it is timed as its own process)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dimensions = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def load_split(images_path: str, labels_path: str) -> tf.data.Dataset:
    images = read_idx(Path(images_path))[..., np.newaxis]
    labels = read_idx(Path(labels_path)).astype(np.int64)
    return tf.data.Dataset.from_tensor_slices((images, labels))


def normalize_img(image, label):
    return tf.cast(image, tf.float32) / 255.0, label


def main() -> None:
    ds_train, ds_test = load_split(*sys.argv[1:3]), load_split(*sys.argv[3:5])
    ds_train = ds_train.map(normalize_img, num_parallel_calls=tf.data.AUTOTUNE).cache()
    ds_train = ds_train.shuffle(1000).batch(128).prefetch(tf.data.AUTOTUNE)
    ds_test = ds_test.map(normalize_img, num_parallel_calls=tf.data.AUTOTUNE).batch(128).cache()
    ds_test = ds_test.prefetch(tf.data.AUTOTUNE)

    model = tf.keras.models.Sequential(
        [
            tf.keras.Input(shape=(28, 28, 1)),
            tf.keras.layers.Conv2D(filters=16, kernel_size=5, padding="same", activation=tf.nn.relu),
            tf.keras.layers.MaxPool2D((2, 2), (2, 2), padding="same"),
            tf.keras.layers.Conv2D(filters=32, kernel_size=5, padding="same", activation=tf.nn.relu),
            tf.keras.layers.MaxPool2D((2, 2), (2, 2), padding="same"),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(128, activation="relu"),
            tf.keras.layers.Dropout(0.4),
            tf.keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    history = model.fit(ds_train, validation_data=ds_test, epochs=2, verbose=0)
    fit_seconds = time.perf_counter() - started
    print(json.dumps({"test_accuracy": history.history["val_accuracy"][-1], "fit_seconds": fit_seconds}))


if __name__ == "__main__":
    main()
