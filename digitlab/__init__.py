"""digitlab: train, test and serve convolutional networks that read handwritten digits."""

__version__ = "0.1.0"

# Imported here, after the submodules of the same names, so `digitlab.train(...)` is the function.
from .evaluate import evaluate  # noqa: E402
from .model import ModelSpec  # noqa: E402
from .modelfile import DigitModel, load_model, save_model  # noqa: E402
from .predict import Predictor, predict  # noqa: E402
from .train import Recipe, train  # noqa: E402

__all__ = ["DigitModel", "ModelSpec", "Predictor", "Recipe", "evaluate", "load_model", "predict", "save_model", "train"]
