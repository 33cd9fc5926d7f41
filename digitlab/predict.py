"""Read digits from images: a Predictor that prepares, classifies and answers in the shape every interface shares."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from .calibrate import ACCEPTED_DIGITS
from .decode import decode_for_analysis, read_for_analysis
from .errors import DigitlabError, ImageError, UsageError
from .model import Ensemble, batched_logits
from .modelfile import DigitModel, load_model
from .segment import DigitSegment, read_digits
from .vision import prepare_digit

IMAGE_SUFFIXES = frozenset(Image.registered_extensions())
# The faintest MNIST training digit holds about 20 pixels' worth of full ink; half that is no digit.
BLANK_INK = 10.0
# At most 40% of an MNIST digit's 28x28 field is strong ink (99.99th percentile 35%); more is a blob.
FILLED_SHARE = 0.45
# A pen stroke is narrow at MNIST's scale (the ink fitted to 20 pixels): no strong-ink pixel of the 10,000
# MNIST test digits, nor of the printed, handwriting, photographed and scanned benchmark digits, lies more
# than 6.1 pixels from the paper; the middle of a filled disc or square fitted the same way lies 9 to 10.
SOLID_RADIUS = 6.5
# Pixels within SOLID_RADIUS of one pixel (137): ink with fewer strong pixels cannot hold such a patch,
# which spares most digits the distance transform.
_OFFSETS = np.arange(-int(SOLID_RADIUS), int(SOLID_RADIUS) + 1) ** 2
SOLID_AREA = int((np.add.outer(_OFFSETS, _OFFSETS) <= SOLID_RADIUS**2).sum())
# In a number, one digit under the bar is still read when at least SURE_COMPANIONS others read at least SURE_CONFIDENCE
# and it reaches UNSURE_SHARE of the bar: a row of surely read digits says the image holds digits, and a smudged one
# among them is likelier a digit read unsurely than not a digit. Measured on the benchmark's numbers with the shipped
# model: 72.6% -> 74.2% read right, not-digits rejected unchanged (at a fifth of the bar, 0.2 point fewer); counting
# the sure companions rather than asking every other digit to be sure: 79.8% -> 80.0%, nothing lost. A 1 vouches
# for nothing: it is a bare stroke, which any long thin mark reads as (stripes, a trouser leg, a letter's stem), and
# textures and shapes read as a row of sure 1s beside one unsure digit.
SURE_COMPANIONS, SURE_CONFIDENCE, UNSURE_SHARE = 2, 0.9, 0.3
# A number is one row of digits: each shares at least ROW_SHARE of the shorter one's height with the next. A single
# digit broken into pieces one above the other (a 3's bowls apart, a 5's bar above its bowl) read as two digits.
ROW_SHARE = 0.3
# "auto": onnxruntime for build_model networks on the CPU when installed, else PyTorch.
BACKENDS = ("auto", "torch", "onnxruntime")
# Digits per onnxruntime call: large enough to amortise the call, small enough to stay in cache.
ONNX_BATCH = 2500
# Calls of up to this many digits (a request, a photo's digits) run on one thread: handing so little work
# to a second thread costs more than it saves, and far more when a neighbour holds the other core.
ONNX_SMALL = 64


class Predictor:
    """Load a model once and answer many images (sklearn-style `predict` / `predict_proba`)."""

    def __init__(
        self, model: DigitModel | str | os.PathLike | None = None, device: str = "cpu", backend: str = "auto"
    ) -> None:
        self.model_ = model if isinstance(model, DigitModel) else load_model(model)
        self.device_ = torch.device(device)
        self.network_ = self.model_.network.to(self.device_).eval()
        threads = torch.get_num_threads()  # follows the caller's (the service's) thread setting
        self.session_ = self._onnx_session(backend, threads)
        self.small_session_ = self._onnx_session(backend, 1) if self.session_ and threads > 1 else self.session_
        self.backend_ = "onnxruntime" if self.session_ else "torch"
        self.temperature_ = float(self.model_.calibration.get("temperature", 1.0))
        self.reject_threshold_ = float(self.model_.calibration.get("reject_threshold", 0.0))

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model_.class_names

    def predict_proba(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities (N, classes) for grayscale images of any size, prepared as the model was trained."""
        return self.predict_proba_prepared(self._prepare(images))

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """The most likely class index for each image."""
        return self.predict_proba(images).argmax(axis=1)

    def predict_files(self, paths: Iterable[str | os.PathLike]) -> list[dict]:
        """One answer per file; a file that cannot be read gets its own error and the others are still answered."""
        return self.answer([(str(path), Path(path)) for path in paths])

    def answer(
        self, images: Sequence[tuple[str, bytes | np.ndarray | Path]], include_prepared: bool = False
    ) -> list[dict]:
        """Answer named images given as encoded bytes, grayscale arrays or file paths, in the JSON shape that
        `digitlab predict --json` and the service share; a bad image gets its own error and the rest are answered.
        `include_prepared` adds the 28x28 digit the model saw (rows of 0..255), for people checking preprocessing."""
        answers: list[dict] = [{} for _ in images]
        readable, digits, pieces, box_scales = [], [], [], []
        for index, (name, source) in enumerate(images):
            try:
                gray, full_shape = self._read_gray(name, source)
                digit, found = read_digits(gray)
                digits.append(digit)
                pieces.append(found)
                readable.append(index)
                box_scales.append((gray.shape, full_shape))
            except (ImageError, UsageError) as error:
                answers[index] = {
                    "path": name, "digit": None, "confidence": None, "probabilities": None, "error": str(error)
                }
        if not digits:
            return answers
        # Whole images and every way of cutting their pieces of ink, in one model call. An image whose only
        # segment is its one piece whole, with no cut offered, is a single digit: nothing more to read.
        several = [found if sum(len(way) for piece in found for way in piece.ways) > 1 else [] for found in pieces]
        segments = [segment for found in several for piece in found for way in piece.ways for segment in way]
        probabilities = self.predict_proba_prepared(np.stack(digits + [segment.digit for segment in segments]))
        segment_probabilities = iter(probabilities[len(digits) :])
        for index, digit, digit_probabilities, found, box_scale in zip(
            readable, digits, probabilities, several, box_scales
        ):
            ways = [[[(segment, next(segment_probabilities)) for segment in way] for way in piece.ways] for piece in found]
            chosen = self._without_marks_off_the_row([_surest_way(piece_ways) for piece_ways in ways])
            read = [entry for way in chosen for entry in way]
            if len(read) == 1 and _sure_with_faint_strokes(read[0]):
                # One digit, read surely with faint strokes that the whole image's cut left out.
                digit, digit_probabilities = read[0][0].digit, read[0][1]
            answer = self._answer(images[index][0], digit_probabilities, digit)
            # Several digits only when they stand in a row and each of them reads more surely than the whole does as
            # one digit (a tilted 0 cut in two, or a 0 drawn as two arcs, reads surely whole and unsurely in pieces),
            # and no piece of ink was read as bars alone.
            as_number = (
                len(read) > 1
                and min(row.max() for _, row in read) > digit_probabilities.max()
                and not any(_cut_into_bars(way) for way in chosen)
                and _in_one_row([segment.box for segment, _ in read])
            )
            if as_number:
                answer.update(self._read_number(read, *box_scale))
            if include_prepared:
                answer["prepared"] = digit.tolist()
            answers[index] = answer
        return answers

    def _without_marks_off_the_row(
        self, chosen: list[list[tuple[DigitSegment, np.ndarray]]]
    ) -> list[list[tuple[DigitSegment, np.ndarray]]]:
        """The pieces' chosen ways of cutting, less the pieces that lie off the row of the surely read digits
        (sharing under ROW_SHARE of their height with it) and hold a segment that is no digit: glare across a board
        above a number, a smudge or a shadow's edge below it. The row is that of SURE_COMPANIONS or more digits, 1s
        aside (see `_vouched_for`), read at SURE_CONFIDENCE or more; without one, nothing is dropped. On the
        benchmark: one number more read (68490 under a board's glare), no other image read otherwise."""
        sure = [
            segment.box for way in chosen for segment, row in way
            if _sure_companion(row) and not_a_digit_reason(segment.digit) is None
        ]
        if len(sure) < SURE_COMPANIONS:
            return chosen
        top, bottom = min(box[1] for box in sure), max(box[3] for box in sure)

        def in_row(way: list[tuple[DigitSegment, np.ndarray]]) -> bool:
            way_top, way_bottom = min(segment.box[1] for segment, _ in way), max(segment.box[3] for segment, _ in way)
            return min(way_bottom, bottom) - max(way_top, top) >= ROW_SHARE * (way_bottom - way_top)

        return [
            way for way in chosen
            if in_row(way) or all(self.rejection(segment.digit, row) is None for segment, row in way)
        ]

    def _read_number(
        self, found: list[tuple[DigitSegment, np.ndarray]], shape: tuple[int, int], full_shape: tuple[int, int]
    ) -> dict:
        """The digits of a multi-digit image (each with its probabilities), with their boxes (found in an image of
        `shape`, given in the full image's pixels), and the number they spell (None if any of them is not a digit;
        one unsure digit among sure ones is read all the same, see SURE_COMPANIONS)."""
        reasons = [self.rejection(segment.digit, row) for segment, row in found]
        unsure = [index for index, reason in enumerate(reasons) if reason]
        if len(unsure) == 1 and self._vouched_for(found, unsure[0]):
            reasons[unsure[0]] = None
        read = []
        for (segment, row), reason in zip(found, reasons):
            best = int(row.argmax())
            read.append({
                "box": _in_full_size(segment.box, shape, full_shape),
                "digit": None if reason else best,
                "confidence": float(row[best]),
                "reason": reason,
            })
        readable = all(entry["digit"] is not None for entry in read)
        return {"digits": read, "number": "".join(str(entry["digit"]) for entry in read) if readable else None}

    def _vouched_for(self, found: list[tuple[DigitSegment, np.ndarray]], index: int) -> bool:
        """Whether the number's digit at `index`, under the bar, is read all the same: it passes the cheap checks
        and reaches UNSURE_SHARE of the bar, and enough of the others, 1s aside, read surely."""
        segment, row = found[index]
        companions = sum(_sure_companion(other) for position, (_, other) in enumerate(found) if position != index)
        # The cheap checks, already run once in `rejection`, last: most unsure digits fail on the numbers first.
        return (
            float(row.max()) >= UNSURE_SHARE * self.reject_threshold_
            and companions >= SURE_COMPANIONS
            and not_a_digit_reason(segment.digit) is None
        )

    @staticmethod
    def _read_gray(name: str, source: bytes | np.ndarray | Path) -> tuple[np.ndarray, tuple[int, int]]:
        """The image in grayscale, perhaps decoded smaller than it is (`decode.decode_for_analysis`), and its
        full (height, width)."""
        if isinstance(source, Path):
            return read_for_analysis(source)
        if isinstance(source, (bytes, bytearray, memoryview)):
            return decode_for_analysis(bytes(source), name)
        source = np.asarray(source)
        if source.ndim != 2:
            raise UsageError(f"{name}: expected a 2-D grayscale image, got an array of shape {source.shape}")
        return (source if source.dtype == np.uint8 else _to_uint8(source)), source.shape

    def predict_proba_prepared(self, digits: np.ndarray) -> np.ndarray:
        """Probabilities for digits already in MNIST form (N, 28, 28) uint8, such as MNIST itself or
        the output of `vision.prepare_digit`: no preprocessing, since preparing twice would shift them."""
        if self.session_ is None or not len(digits):  # PyTorch gives no digits a (0, classes) answer
            logits = batched_logits(self.network_, torch.from_numpy(digits), self.device_).numpy()
        else:
            session = self.small_session_ if len(digits) <= ONNX_SMALL else self.session_
            # The tutorial's /255 in numpy: for a few digits, torch's per-call cost exceeds the work.
            batches = (
                digits[start : start + ONNX_BATCH, np.newaxis].astype(np.float32) / np.float32(255)
                for start in range(0, len(digits), ONNX_BATCH)
            )
            logits = np.concatenate([session.run(None, {"digits": batch})[0] for batch in batches])
        return _softmax(logits / np.float32(self.temperature_))

    def _onnx_session(self, backend: str, threads: int):
        """onnxruntime for the CPU when it is installed (about 2x PyTorch's batch throughput for these small
        networks, and a tenth of its per-call overhead), else None: PyTorch answers, as it does for ensembles."""
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r}; choose {', '.join(BACKENDS)}")
        translatable = self.device_.type == "cpu" and isinstance(self.network_, torch.nn.Sequential)
        if backend == "torch" or (backend == "auto" and not translatable):
            return None
        try:
            import onnxruntime

            from .export import sequential_to_onnx
        except ImportError:
            if backend == "auto":
                return None
            raise UsageError("the onnxruntime backend needs the onnx extra: pip install 'digitlab[onnx]'") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        graph = sequential_to_onnx(self.network_).SerializeToString()
        return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def _prepare(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        if isinstance(images, np.ndarray) and images.ndim == 2:
            images = images[np.newaxis]
        if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[-1] in (3, 4):
            raise UsageError(
                f"an array of shape {images.shape} looks like one colour image; convert it to grayscale, "
                "or pass a list of 2-D images"
            )
        if len(images) == 0:
            return np.zeros((0, 28, 28), dtype=np.uint8)
        return np.stack(
            [prepare_digit(self._read_gray(f"image {index}", image)[0]) for index, image in enumerate(images)]
        )

    def _answer(self, path: str, probabilities: np.ndarray, digit: np.ndarray) -> dict:
        ranked = probabilities.argsort()[::-1]
        best, runner_up = int(ranked[0]), int(ranked[1])
        reason = self.rejection(digit, probabilities)
        return {
            "path": path,
            "digit": None if reason else best,
            "label": None if reason else self.class_names[best],
            "confidence": float(probabilities[best]),
            "reason": reason,
            "guess": best,
            "runner_up": runner_up,
            "runner_up_confidence": float(probabilities[runner_up]),
            "probabilities": probabilities.tolist(),
            "error": None,
        }

    def rejections(self, digits: np.ndarray, probabilities: np.ndarray) -> list[str | None]:
        """For prepared digits and their probabilities: None where the answer stands, else why it is not a digit."""
        return [self.rejection(digit, row) for digit, row in zip(digits, probabilities)]

    def rejection(self, digit: np.ndarray, probabilities: np.ndarray) -> str | None:
        """Cheap checks on the image first, then the calibrated confidence against the model's threshold."""
        reason = not_a_digit_reason(digit)
        confidence = float(probabilities.max())
        if reason or confidence >= self.reject_threshold_:
            return reason
        return (
            f"not a digit: the model's confidence {confidence:.0%} is below the {self.reject_threshold_:.0%} "
            + ("its members' bars average" if isinstance(self.network_, Ensemble)
               else f"that {ACCEPTED_DIGITS:.0%} of validation digits reach")
        )


def _in_full_size(box: tuple[int, int, int, int], shape: tuple[int, int], full_shape: tuple[int, int]) -> list[int]:
    """A box (x0, y0, x1, y1) found in an image of `shape`, in the pixels of the same image at `full_shape`."""
    if shape == full_shape:
        return list(box)
    (height, width), (full_height, full_width) = shape, full_shape
    x0, y0, x1, y1 = box
    return [
        x0 * full_width // width, y0 * full_height // height,
        min(full_width, math.ceil(x1 * full_width / width)), min(full_height, math.ceil(y1 * full_height / height)),
    ]


def _in_one_row(boxes: list[tuple[int, int, int, int]]) -> bool:
    """Whether each box (x0, y0, x1, y1), in reading order, shares ROW_SHARE of the shorter one's height with the
    next."""
    return all(
        min(one[3], two[3]) - max(one[1], two[1]) >= ROW_SHARE * min(one[3] - one[1], two[3] - two[1])
        for one, two in zip(boxes, boxes[1:])
    )


def _surest_way(ways: list[list[tuple[DigitSegment, np.ndarray]]]) -> list[tuple[DigitSegment, np.ndarray]]:
    """Of the ways of cutting a piece of ink (each digit with its probabilities), the likeliest to be read
    right: the product of its digits' calibrated confidences; the first, the piece's shape's own, unless
    another beats it. A "49" read whole as a 4 is beaten by a cut whose 4 and 9 both read surely; a 0 cut into
    two arcs reads less surely. Where two cuts both read surely, the product still weighs every digit (the
    least sure digit alone tied a "49" with a "47" whose 4 read a little less surely). The piece with its faint
    strokes, read surely, takes the first way's place: a 9's stem reads as surely a 1 as the whole 9 does a 9."""
    if any(_sure_with_faint_strokes(way[0]) for way in ways[1:]):
        ways = ways[1:]
    return max(ways, key=lambda way: float(np.prod([row.max() for _, row in way])))


def _sure_with_faint_strokes(read: tuple[DigitSegment, np.ndarray]) -> bool:
    """Whether a digit holds faint strokes grown back (`DigitSegment.faint`) and reads at SURE_CONFIDENCE or more: an
    unsure reading with them is as often a stroke of grain grown on. On the benchmark with the shipped model: numbers
    10 more read right (9s whose light loops were lost read as 1s), 1 fewer; hairline fonts 5 more, photos 1; at a bar
    of 0.7, 6 numbers fewer. Merely weighed against the first way by confidence, 61 rather than 74 of 90 numbers with
    a digit half drawn faintly read right (`bench/number_probes.py`); grown onto every way read as one digit (a
    touching pair read whole), 207 rather than 233 of 300 numbers with a touching pair."""
    segment, probabilities = read
    return segment.faint and float(probabilities.max()) >= SURE_CONFIDENCE


def _sure_companion(probabilities: np.ndarray) -> bool:
    """Whether a digit of a number reads surely enough (SURE_CONFIDENCE) to say the image holds digits: a 1 does not,
    being a bare stroke that any long thin mark reads as."""
    return float(probabilities.max()) >= SURE_CONFIDENCE and probabilities.argmax() != 1


def _cut_into_bars(way: list[tuple[DigitSegment, np.ndarray]]) -> bool:
    """Whether a way cuts one piece of ink into two or more digits that all read as 1s: straight strokes joined
    into one shape (a tick, a V, a U) read as a 1 on each side of any cut, while touching digits are seldom all 1s.
    On the benchmark: two ticks no longer read as "11", no number lost."""
    return len(way) > 1 and all(row.argmax() == 1 for _, row in way)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in numpy: for one image's ten logits, torch's per-call cost is most of the work."""
    exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def not_a_digit_reason(digit: np.ndarray) -> str | None:
    """Cheap checks on the prepared 28x28 (uint8) before trusting the model: nothing there, ink everywhere, or
    ink too solid to be strokes. Counted on the bytes themselves: strong ink is over half of 255."""
    if int(digit.sum(dtype=np.int64)) < BLANK_INK * 255:
        return "not a digit: the image is blank or nearly blank"
    strong = digit > 127
    strong_count = np.count_nonzero(strong)
    if strong_count > FILLED_SHARE * digit.size:
        return "not a digit: ink covers most of the image (a filled shape, a photograph or noise)"
    if strong_count >= SOLID_AREA and ndimage.distance_transform_edt(strong).max() > SOLID_RADIUS:
        return "not a digit: a solid patch of ink wider than any pen stroke (a filled shape or a blot)"
    return None


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Floats in 0..1 (as the tutorial feeds them) or any integer range, as 8-bit gray."""
    if not np.isfinite(image).all():
        raise UsageError("the image holds NaN or infinite values")
    if np.issubdtype(image.dtype, np.floating) and image.min() >= 0 and image.max() <= 1:
        return np.round(image * 255).astype(np.uint8)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, folders as the image files inside them (recursively, sorted); a missing path is an error."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(
                file for file in path.rglob("*")
                if file.is_file()
                and file.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in file.relative_to(path).parts)
            )
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return found


def predict(paths: Iterable[str | os.PathLike], model: DigitModel | str | os.PathLike | None = None) -> list[dict]:
    """Answer image files and folders with a model file (the shipped default when none is given)."""
    files = expand_paths(paths)
    if not files:
        raise UsageError("no image files found in the given paths")
    return Predictor(model).predict_files(files)


__all__ = ["Predictor", "predict", "expand_paths", "DigitlabError"]
