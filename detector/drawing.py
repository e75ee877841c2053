"""Pictures of detections a person can read: upscaled, one colour per class, captions inside the image, and
the ground truth beside the predictions when it is known.

Small images (the demo's are 112 px) are scaled up before drawing, so that boxes and captions are drawn at
screen resolution instead of being magnified into blurs by the viewer. Colours follow the class, not the
order in which classes appear in one picture, so ``circle`` has the same colour in every drawing and in
both panels.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from scaledet.labelspace.io.atomic import atomic_write
from scaledet.labelspace.prompts import normalize_name

from .data import read_image_array

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (0, 150, 150),
           (240, 50, 230), (128, 128, 0), (170, 110, 40), (0, 0, 128)]
#: Drawings are scaled up (by a whole factor) until their longer side reaches this many pixels.
MIN_DRAWING_SIDE = 480
CAPTION_SIZE = 15
TITLE_SIZE = 16


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


class ClassColours:
    """One colour per class name, the same in every drawing of a run: names the vocabulary lists get the
    palette in vocabulary order; any other name (a ground-truth class outside the vocabulary) a colour from
    its name's hash."""

    def __init__(self, names: list[str] = ()) -> None:
        self._index = {}
        for name in names:
            self._index.setdefault(normalize_name(name), len(self._index))

    def __call__(self, name: str) -> tuple[int, int, int]:
        key = normalize_name(name)
        index = self._index.get(key)
        if index is None:
            index = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")
        return PALETTE[index % len(PALETTE)]


def _scale_factor(width: int, height: int) -> int:
    return max(1, -(-MIN_DRAWING_SIDE // max(1, max(width, height))))


def _free_row(x: float, y: float, width: float, height: float, placed: list, top: float, bottom: float) -> float:
    """The nearest ``y`` at or below the wanted one (else above it) where a caption of this size covers no
    caption already drawn: two classes scored on one object (``circle 0.41``, ``square 0.26``) both stay
    legible."""
    def free(at: float) -> bool:
        return all(at + height <= t or at >= b or x + width <= l or x >= r for l, t, r, b in placed)

    for step in range(0, int(bottom - top), 2):
        for candidate in (y + step, y - step):
            if top <= candidate <= bottom - height and free(candidate):
                return candidate
    return y


def _panel(image: Image.Image, boxes: list[dict], colours: ClassColours, scale: int, title: str) -> Image.Image:
    """The image scaled by ``scale`` with ``boxes`` drawn, under a title strip."""
    width, height = image.width * scale, image.height * scale
    caption_font, title_font = _font(CAPTION_SIZE), _font(TITLE_SIZE)
    title_height = TITLE_SIZE + 10
    panel = Image.new("RGB", (width, height + title_height), (255, 255, 255))
    panel.paste(image.resize((width, height), Image.Resampling.BICUBIC), (0, title_height))
    draw = ImageDraw.Draw(panel)
    draw.text((6, 4), title, fill=(0, 0, 0), font=title_font)
    ordered = sorted(boxes, key=lambda b: -b.get("score", 1.0))
    corners = [[value * scale + (title_height if k % 2 else 0) for k, value in enumerate(b["box"])] for b in ordered]
    for box, (x1, y1, x2, y2) in reversed(list(zip(ordered, corners))):  # the most confident outline on top
        draw.rectangle([x1, y1, x2, y2], outline=colours(box["label"]), width=3)
    placed: list[tuple[float, float, float, float]] = []  # captions drawn so far, never covered by another
    for box, (x1, y1, _, _) in zip(ordered, corners):  # the most confident captioned first, where it wants
        caption = box["label"] if "score" not in box else f"{box['label']} {box['score']:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=caption_font)
        text_width, text_height = right - left + 6, bottom - top + 4
        # above the box where there is room, else just inside its top; never past the image's edges
        x = min(max(0.0, x1), max(0.0, width - text_width))
        y = y1 - text_height if y1 - text_height >= title_height else min(y1, title_height + height - text_height)
        y = _free_row(x, y, text_width, text_height, placed, title_height, title_height + height)
        placed.append((x, y, x + text_width, y + text_height))
        draw.rectangle([x, y, x + text_width, y + text_height], fill=colours(box["label"]))
        draw.text((x + 3 - left, y + 2 - top), caption, fill=(255, 255, 255), font=caption_font)
    return panel


def draw_detections(image_path: Path, detections: list[dict], out_path: Path, colours: ClassColours | None = None,
                    ground_truth: list[dict] | None = None, title: str = "predictions") -> None:
    """Draw ``detections`` ({label, score, box as x1 y1 x2 y2}) on the image; with ``ground_truth`` ({label,
    box}), a ground-truth panel goes on the left. Written atomically as PNG."""
    image = Image.fromarray(read_image_array(image_path))
    colours = colours or ClassColours(sorted({d["label"] for d in detections}))
    scale = _scale_factor(image.width, image.height)
    panels = [_panel(image, detections, colours, scale, title)]
    if ground_truth is not None:
        panels.insert(0, _panel(image, ground_truth, colours, scale, "ground truth"))
    gap = 8
    canvas = Image.new("RGB", (sum(p.width for p in panels) + gap * (len(panels) - 1), panels[0].height),
                       (255, 255, 255))
    for index, panel in enumerate(panels):
        canvas.paste(panel, (index * (panel.width + gap), 0))
    atomic_write(out_path, lambda tmp: canvas.save(tmp, format="PNG"))
