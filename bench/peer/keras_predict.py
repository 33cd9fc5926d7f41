"""The peer for inference speed: the tutorial's network in Keras, answering with `model.predict` as the tutorial does.

Weights are Keras' fresh initialisation: speed does not depend on them. Prints one JSON line.
Usage: python keras_predict.py PNG_FILE REPEATS
"""

import io
import json
import statistics
import sys
import time

import numpy as np
import tensorflow as tf
from PIL import Image


def main() -> None:
    png, repeats = open(sys.argv[1], "rb").read(), int(sys.argv[2])
    model = tf.keras.models.Sequential(
        [
            tf.keras.Input(shape=(28, 28, 1)),
            tf.keras.layers.Conv2D(16, 5, padding="same", activation="relu"),
            tf.keras.layers.MaxPool2D((2, 2), (2, 2), padding="same"),
            tf.keras.layers.Conv2D(32, 5, padding="same", activation="relu"),
            tf.keras.layers.MaxPool2D((2, 2), (2, 2), padding="same"),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(128, activation="relu"),
            tf.keras.layers.Dropout(0.4),
            tf.keras.layers.Dense(10, activation="softmax"),
        ]
    )

    def answer_one() -> int:
        # As the tutorial reads its examples: decode, scale to 0..1, add batch and channel axes.
        image = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32) / 255.0
        return int(model.predict(image[np.newaxis, :, :, np.newaxis], verbose=0).argmax())

    for _ in range(5):
        answer_one()
    single = []
    for _ in range(repeats):
        started = time.perf_counter()
        answer_one()
        single.append(time.perf_counter() - started)
    batch = np.random.default_rng(0).random((10_000, 28, 28, 1), dtype=np.float32)
    model.predict(batch, batch_size=1000, verbose=0)
    started = time.perf_counter()
    model.predict(batch, batch_size=1000, verbose=0)
    batch_seconds = time.perf_counter() - started
    print(json.dumps({"single_p50_ms": statistics.median(single) * 1000, "batch_images_per_s": 10_000 / batch_seconds}))


if __name__ == "__main__":
    main()
