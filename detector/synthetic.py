"""A procedural detection world: coloured shapes drawn with PIL, annotated in COCO format.

Used by the tests (small generated datasets on CPU) and by the multi-dataset benchmark, where several
"datasets" annotate the SAME world with DIFFERENT vocabularies: synonyms across datasets, coarser or
finer labels, objects a dataset ignores (partial annotation), and downstream datasets with unseen names
or a shifted domain (thermal-like or inverted colours).
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS = {"red": (215, 45, 45), "green": (40, 170, 70), "blue": (45, 85, 215), "yellow": (235, 205, 40)}
DOMAINS = ("natural", "thermal", "inverted")

#: (shape, colour) → label name, or None when the dataset does not annotate that object.
Labeler = Callable[[str, str], "str | None"]


@dataclass
class WorldObject:
    shape: str
    colour: str
    box: tuple[float, float, float, float]  # x, y, w, h


@dataclass
class SyntheticDatasetSpec:
    """One dataset of the world: which objects appear, how they are named, how images look."""

    name: str
    labeler: Labeler
    categories: list[str]
    shapes: tuple[str, ...] = SHAPES[:3]
    colours: tuple[str, ...] = tuple(COLOURS)
    domain: str = "natural"
    texture_probability: float = 0.3
    objects_per_image: tuple[int, int] = (1, 4)
    extra: dict = field(default_factory=dict)


def _polygon(shape: str, x: float, y: float, w: float, h: float) -> list[tuple[float, float]]:
    cx, cy = x + w / 2, y + h / 2
    if shape == "triangle":
        return [(cx, y), (x + w, y + h), (x, y + h)]
    if shape == "star":
        points = []
        for k in range(10):
            radius = 0.5 if k % 2 == 0 else 0.22
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * w * math.cos(angle), cy + radius * h * math.sin(angle)))
        return points
    if shape == "cross":
        t = 0.18
        return [(cx - t * w, y), (cx + t * w, y), (cx + t * w, cy - t * h), (x + w, cy - t * h), (x + w, cy + t * h),
                (cx + t * w, cy + t * h), (cx + t * w, y + h), (cx - t * w, y + h), (cx - t * w, cy + t * h),
                (x, cy + t * h), (x, cy - t * h), (cx - t * w, cy - t * h)]
    raise ValueError(shape)


def _background(rng: random.Random, size: int) -> Image.Image:
    """Low-contrast clutter: a colour gradient, noise and a few thin lines (never a shape)."""
    base = np.array([rng.randint(90, 170) for _ in range(3)], dtype=np.float32)
    ramp = np.linspace(-25, 25, size, dtype=np.float32)
    image = base[None, None, :] + ramp[:, None, None] * rng.choice([-1, 1])
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 10, (size, size, 3))
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(1, 4)):
        draw.line([(rng.uniform(0, size), rng.uniform(0, size)) for _ in range(2)],
                  fill=tuple(rng.randint(60, 200) for _ in range(3)), width=1)
    return canvas


def _apply_domain(canvas: Image.Image, domain: str) -> Image.Image:
    if domain == "natural":
        return canvas
    if domain == "inverted":
        return Image.fromarray(255 - np.asarray(canvas))
    # thermal-like: luminance through a black → red → yellow → white map, slightly blurred
    grey = np.asarray(canvas.convert("L"), dtype=np.float32) / 255.0
    r = np.clip(3 * grey, 0, 1)
    g = np.clip(3 * grey - 1, 0, 1)
    b = np.clip(3 * grey - 2, 0, 1)
    thermal = (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)
    return Image.fromarray(thermal).filter(ImageFilter.GaussianBlur(0.8))


def render_image(rng: random.Random, spec: SyntheticDatasetSpec, size: int) -> tuple[Image.Image, list[WorldObject]]:
    canvas = _background(rng, size)
    draw = ImageDraw.Draw(canvas)
    objects: list[WorldObject] = []
    for _ in range(rng.randint(*spec.objects_per_image)):
        for _attempt in range(20):
            side = rng.uniform(0.16, 0.42) * size
            w, h = side * rng.uniform(0.85, 1.15), side * rng.uniform(0.85, 1.15)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            # allow partial overlap (occlusion) but not near-duplicates
            if all(_iou((x, y, w, h), o.box) < 0.3 for o in objects):
                break
        shape, colour = rng.choice(spec.shapes), rng.choice(spec.colours)
        fill = tuple(int(np.clip(c + rng.randint(-20, 20), 0, 255)) for c in COLOURS[colour])
        if shape in ("circle", "square"):
            (draw.ellipse if shape == "circle" else draw.rectangle)([x, y, x + w, y + h], fill=fill)
        else:
            draw.polygon(_polygon(shape, x, y, w, h), fill=fill)
        if rng.random() < spec.texture_probability:  # stripes: a texture the classifier must see through
            stripe = tuple(max(0, c - 70) for c in fill)
            for sx in range(int(x), int(x + w), 6):
                draw.line([(sx, y + 0.3 * h), (sx, y + 0.7 * h)], fill=stripe, width=1)
        objects.append(WorldObject(shape, colour, (x, y, w, h)))
    return _apply_domain(canvas, spec.domain), objects


def _iou(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)


def write_coco_dataset(spec: SyntheticDatasetSpec, out_dir: Path, num_images: int, image_size: int = 128,
                       seed: int = 0, image_format: str = "png") -> Path:
    """Render ``num_images`` images and write ``out_dir/annotations.json`` + ``out_dir/images/`` (PNG, or
    ``image_format="jpg"`` for the loader benchmark, where JPEG decoding is what real datasets cost)."""
    rng = random.Random(f"{spec.name}-{seed}")
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    category_ids = {name: i + 1 for i, name in enumerate(spec.categories)}
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        canvas, objects = render_image(rng, spec, image_size)
        file_name = f"{spec.name}_{image_id:05d}.{image_format}"
        canvas.save(image_dir / file_name, **({"quality": 90} if image_format == "jpg" else {}))
        images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size})
        for obj in objects:
            label = spec.labeler(obj.shape, obj.colour)
            if label is None:
                continue  # partial annotation: this dataset does not name this object
            x, y, w, h = obj.box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_ids[label],
                                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                                "area": round(w * h, 2), "iscrowd": 0})
    path = out_dir / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": i, "name": n} for n, i in category_ids.items()]}))
    return path




# --------------------------------------------------------------------------- the benchmark world
def _named(mapping: dict[str, str]) -> Labeler:
    return lambda shape, colour: mapping.get(shape)


def upstream_datasets() -> list[SyntheticDatasetSpec]:
    """Four datasets annotating the same world of circles, squares, triangles and stars, each its own way.

    * ``geo``: circle / square / triangle; ignores stars (partial annotation).
    * ``things``: synonyms: round disk / box / star; ignores triangles.
    * ``paint``: finer: red circle / blue circle / red square / blue square; ignores everything else.
    * ``blobs``: coarser: every object is a "shape".
    """
    shapes = ("circle", "square", "triangle", "star")
    fine = {("circle", "red"): "red circle", ("circle", "blue"): "blue circle",
            ("square", "red"): "red square", ("square", "blue"): "blue square"}
    return [
        SyntheticDatasetSpec("geo", _named({"circle": "circle", "square": "square", "triangle": "triangle"}),
                             ["circle", "square", "triangle"], shapes=shapes),
        SyntheticDatasetSpec("things", _named({"circle": "round disk", "square": "box", "star": "star"}),
                             ["round disk", "box", "star"], shapes=shapes),
        SyntheticDatasetSpec("paint", lambda shape, colour: fine.get((shape, colour)),
                             ["red circle", "blue circle", "red square", "blue square"], shapes=shapes),
        SyntheticDatasetSpec("blobs", lambda shape, colour: "shape", ["shape"], shapes=shapes),
    ]


def downstream_datasets() -> list[SyntheticDatasetSpec]:
    """Datasets no upstream dataset names or looks like (the ODinW "thermal" / "aquarium" cases).

    * ``thermal``: seen shapes, seen names, a thermal-like colour map.
    * ``toys``: seen shapes under names no upstream dataset uses: ball / crate / pyramid.
    * ``negative``: inverted colours; star and an unseen shape, cross.
    """
    return [
        SyntheticDatasetSpec("thermal", _named({"circle": "circle", "square": "square", "triangle": "triangle"}),
                             ["circle", "square", "triangle"], shapes=("circle", "square", "triangle"), domain="thermal"),
        SyntheticDatasetSpec("toys", _named({"circle": "ball", "square": "crate", "triangle": "pyramid"}),
                             ["ball", "crate", "pyramid"], shapes=("circle", "square", "triangle")),
        SyntheticDatasetSpec("negative", _named({"star": "star", "cross": "cross"}), ["star", "cross"],
                             shapes=("star", "cross", "circle"), domain="inverted"),
    ]
