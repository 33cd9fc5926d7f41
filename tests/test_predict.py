"""Tests for digitlab.predict: a real trained model answering the example images, arrays and folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitlab.errors import UsageError
from digitlab.predict import Predictor, expand_paths, not_a_digit_reason, predict
from digitlab.vision import prepare_digit

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "seed"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.png"))


@pytest.fixture(scope="module")
def predictor(model_path) -> Predictor:
    return Predictor(model_path)


@pytest.fixture(scope="module")
def digits(mnist_test) -> np.ndarray:
    return mnist_test[0][:32]


def check_answer(answer: dict, path: Path) -> None:
    assert answer["path"] == str(path)
    assert answer["error"] is None
    assert isinstance(answer["digit"], int) and 0 <= answer["digit"] <= 9
    probabilities = answer["probabilities"]
    assert len(probabilities) == 10 and all(isinstance(p, float) for p in probabilities)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= answer["confidence"] <= 1.0
    assert answer["digit"] == int(np.argmax(probabilities))
    assert answer["confidence"] == max(probabilities)


# ---- files ----

def test_answers_the_ten_examples(predictor):
    assert len(EXAMPLE_FILES) == 10
    answers = predictor.predict_files(EXAMPLE_FILES)
    assert len(answers) == 10
    for answer, path in zip(answers, EXAMPLE_FILES):
        check_answer(answer, path)


def test_corrupt_file_gets_its_own_error_and_the_others_are_answered(tmp_path, predictor):
    broken = tmp_path / "broken.png"
    broken.write_bytes(EXAMPLE_FILES[0].read_bytes()[:100])
    paths = [EXAMPLE_FILES[0], broken, EXAMPLE_FILES[1], EXAMPLE_FILES[2]]
    answers = predictor.predict_files(paths)
    assert len(answers) == 4
    bad = answers[1]
    assert bad["path"] == str(broken) and bad["digit"] is None and bad["probabilities"] is None
    assert str(broken) in bad["error"]
    alone = predictor.predict_files([EXAMPLE_FILES[0], EXAMPLE_FILES[1], EXAMPLE_FILES[2]])
    for answer, expected, path in zip([answers[0], *answers[2:]], alone, [paths[0], *paths[2:]]):
        check_answer(answer, path)
        assert answer["digit"] == expected["digit"]
        assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)


def test_file_answers_match_array_answers(predictor):
    gray = np.asarray(Image.open(EXAMPLE_FILES[2]).convert("L"))
    from_file = predictor.predict_files([EXAMPLE_FILES[2]])[0]["probabilities"]
    np.testing.assert_allclose(predictor.predict_proba([gray])[0], from_file, atol=1e-6)


def test_predict_function_reads_folders(model_path):
    answers = predict([EXAMPLES], model_path)
    assert [answer["path"] for answer in answers] == [str(path) for path in EXAMPLE_FILES]


def test_predict_function_refuses_a_folder_without_images(tmp_path, model_path):
    (tmp_path / "readme.txt").write_text("no pictures here")
    with pytest.raises(UsageError, match="no image files"):
        predict([tmp_path], model_path)


# ---- arrays ----

def test_predict_proba_on_a_uint8_batch(predictor, digits, mnist_test):
    probabilities = predictor.predict_proba(digits)
    assert probabilities.shape == (32, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # Even a one-epoch model reads most real MNIST digits right.
    assert (predictor.predict(digits) == mnist_test[1][:32]).mean() > 0.6


def test_a_single_2d_image_is_a_batch_of_one(predictor, digits):
    np.testing.assert_array_equal(predictor.predict_proba(digits[0]), predictor.predict_proba(digits[:1]))


def test_differently_sized_images_in_a_list(predictor, digits):
    # Doubling each pixel and shrinking back with area resampling restores the digit exactly.
    doubled = np.kron(digits[1], np.ones((2, 2), dtype=np.uint8))
    wide = np.zeros((28, 60), dtype=np.uint8)
    wide[:, 16:44] = digits[2]
    probabilities = predictor.predict_proba([digits[1], doubled, wide])
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities[1], probabilities[0], atol=1e-6)


def test_float_images_in_0_to_1_match_uint8(predictor, digits):
    expected = predictor.predict_proba(digits)
    np.testing.assert_allclose(predictor.predict_proba(digits / 255.0), expected, atol=1e-6)
    np.testing.assert_allclose(predictor.predict_proba((digits / 255.0).astype(np.float32)), expected, atol=1e-6)


def test_dark_ink_on_paper_reads_like_mnist(predictor, digits):
    np.testing.assert_allclose(predictor.predict_proba(255 - digits), predictor.predict_proba(digits), atol=1e-6)


@pytest.mark.parametrize(
    "images",
    [[np.zeros((28, 28, 3), dtype=np.uint8)], np.zeros((2, 28, 28, 3), dtype=np.uint8)],
    ids=["list-of-rgb", "4d-batch"],
)
def test_colour_images_are_refused(predictor, images):
    with pytest.raises(UsageError, match="2-D"):
        predictor.predict_proba(images)


def test_a_single_rgb_array_is_refused(predictor):
    with pytest.raises(UsageError):
        predictor.predict_proba(np.zeros((28, 28, 3), dtype=np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_are_refused(predictor, digits, bad):
    image = digits[0] / 255.0
    image[3, 3] = bad
    with pytest.raises(UsageError, match="NaN or infinite"):
        predictor.predict_proba([image])


# ---- expand_paths ----

@pytest.fixture
def image_tree(tmp_path) -> Path:
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    shutil.copyfile(EXAMPLE_FILES[0], root / "a.png")
    shutil.copyfile(EXAMPLE_FILES[1], root / "sub" / "b.png")
    Image.open(EXAMPLE_FILES[2]).convert("L").save(root / "sub" / "deeper" / "c.JPG")
    shutil.copyfile(EXAMPLE_FILES[3], root / ".hidden.png")
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "labels.csv").write_text("a,1\n")
    return root


def test_expand_paths_recurses_into_folders_skipping_hidden_and_non_images(image_tree):
    found = expand_paths([image_tree])
    assert found == [image_tree / "a.png", image_tree / "sub" / "b.png", image_tree / "sub" / "deeper" / "c.JPG"]


def test_expand_paths_keeps_files_as_given(image_tree):
    notes, picture = image_tree / "notes.txt", image_tree / "a.png"
    assert expand_paths([notes, picture]) == [notes, picture]


def test_expand_paths_skips_hidden_folders(image_tree):
    litter = image_tree / ".ipynb_checkpoints"
    litter.mkdir()
    shutil.copyfile(EXAMPLE_FILES[0], litter / "a-checkpoint.png")
    assert litter / "a-checkpoint.png" not in expand_paths([image_tree])


def test_expand_paths_refuses_a_missing_path(image_tree):
    missing = image_tree / "nope.png"
    with pytest.raises(UsageError, match="nope.png"):
        expand_paths([image_tree, missing])


def test_answer_takes_bytes_arrays_and_paths_alike_and_isolates_bad_ones(predictor):
    from digitlab.decode import read_image

    path = EXAMPLES / "1.png"
    answers = predictor.answer([
        ("bytes", path.read_bytes()),
        ("array", read_image(path)),
        ("path", path),
        ("junk", b"not an image"),
        ("cube", np.zeros((3, 28, 28), dtype=np.uint8)),
    ])
    assert [a["path"] for a in answers] == ["bytes", "array", "path", "junk", "cube"]
    assert answers[0]["probabilities"] == answers[1]["probabilities"] == answers[2]["probabilities"]
    assert answers[3]["digit"] is None and "not an image" in answers[3]["error"]
    assert answers[4]["digit"] is None and "2-D" in answers[4]["error"]


def test_answer_can_show_the_digit_the_model_saw(predictor):
    from digitlab.vision import load_digit

    path = EXAMPLES / "3.png"
    (shown,) = predictor.answer([("3", path)], include_prepared=True)
    assert np.array_equal(np.array(shown["prepared"], dtype=np.uint8), load_digit(path))
    assert "prepared" not in predictor.answer([("3", path)])[0]


def test_onnxruntime_and_pytorch_backends_give_the_same_probabilities(model_path, mnist_test):
    onnx_backend, torch_backend = Predictor(model_path), Predictor(model_path, backend="torch")
    assert (onnx_backend.backend_, torch_backend.backend_) == ("onnxruntime", "torch")
    digits = mnist_test[0][:3000]  # more than one onnxruntime call
    np.testing.assert_allclose(onnx_backend.predict_proba_prepared(digits), torch_backend.predict_proba_prepared(digits), atol=1e-6)
    # A few digits go through the one-thread session, and read the same.
    np.testing.assert_allclose(onnx_backend.predict_proba_prepared(digits[:5]), torch_backend.predict_proba_prepared(digits[:5]), atol=1e-6)
    assert onnx_backend.predict_proba_prepared(digits[:0]).shape == (0, 10)
    with pytest.raises(UsageError, match="backend"):
        Predictor(model_path, backend="tensorrt")


def test_filled_shapes_are_not_digits_and_no_mnist_digit_is_too_solid(mnist_test):
    # A disc and an ellipse, under the 40% of the side that the background's window spans; then a disc, dark on
    # light, and an ellipse, light on dark, far wider than it, which the window would hollow into a ring (a 0).
    shapes = [
        ((40, 42, 80, 82), 235, 20), ((38, 46, 82, 76), 235, 20),
        ((15, 15, 105, 105), 235, 60), ((10, 25, 110, 95), 30, 220),
    ]
    for box, paper, ink in shapes:
        canvas = Image.new("L", (120, 120), paper)
        ImageDraw.Draw(canvas).ellipse(box, fill=ink)
        assert "solid" in not_a_digit_reason(prepare_digit(np.asarray(canvas)))
    reasons = {not_a_digit_reason(digit) for digit in mnist_test[0]}
    assert not any(reason and "solid" in reason for reason in reasons)
