"""Drawings a person can read: scaled up, one colour per class, captions inside and never on each other."""
from __future__ import annotations

import numpy as np
from PIL import Image

from scaledet.detector.drawing import PALETTE, ClassColours, _free_row, draw_detections


def _image(path, width=100, height=60):
    Image.fromarray(np.full((height, width, 3), 90, dtype=np.uint8)).save(path)
    return path


def test_colours_follow_the_class_not_the_picture():
    colours = ClassColours(["circle", "square", "star"])
    assert colours("circle") == PALETTE[0] and colours("Star") == PALETTE[2]
    assert colours("jellyfish") == ClassColours(["circle"])("jellyfish")  # outside the vocabulary: by name


def test_captions_stay_inside_and_apart(tmp_path):
    image = _image(tmp_path / "x.png")
    detections = [{"label": "circle", "score": 0.9, "box": [80, 0, 100, 20]},  # top-right corner: no room above
                  {"label": "square", "score": 0.5, "box": [80, 0, 100, 20]}]  # the same object, a second class
    out = tmp_path / "x.detections.png"
    draw_detections(image, detections, out, ClassColours(["circle", "square"]))
    drawn = np.asarray(Image.open(out).convert("RGB"))
    assert drawn.shape[1] == 100 * 5  # scaled up to at least 480 px on the longer side
    circle, square = (np.all(drawn == np.array(PALETTE[i]), axis=-1) for i in (0, 1))
    # both captions are drawn (filled rectangles of their class colour) within the picture's right edge
    for mask in (circle, square):
        rows, cols = np.nonzero(mask)
        assert mask.sum() > 300 and cols.max() < drawn.shape[1]
    # and neither covers the other: each caption keeps rows of its own (a covered one would keep none)
    band_circle, band_square = circle[:, 420:440].sum(axis=1) > 10, square[:, 420:440].sum(axis=1) > 10
    assert (band_circle & ~band_square).sum() >= 10 and (band_square & ~band_circle).sum() >= 10


def test_free_row_moves_a_caption_off_one_already_drawn():
    placed = [(10.0, 30.0, 90.0, 48.0)]
    assert _free_row(20, 30, 50, 18, placed, top=0, bottom=200) == 48
    assert _free_row(200, 30, 50, 18, placed, top=0, bottom=200) == 30  # elsewhere: where it wanted
    assert _free_row(20, 182, 50, 18, [(10.0, 182.0, 90.0, 200.0)], top=0, bottom=200) == 164  # at the bottom: up


def test_ground_truth_panel_beside_the_predictions(tmp_path):
    image = _image(tmp_path / "x.png")
    out = tmp_path / "x.detections.png"
    draw_detections(image, [], out, ground_truth=[{"label": "circle", "box": [10, 10, 30, 30]}])
    drawn = Image.open(out)
    assert drawn.width == 2 * 500 + 8
    left, right = (np.asarray(drawn.convert("RGB"))[:, a:b] for a, b in ((0, 500), (508, 1008)))
    colour = np.array(ClassColours()("circle"))
    assert np.all(left == colour, axis=-1).sum() > 100 and np.all(right == colour, axis=-1).sum() == 0
