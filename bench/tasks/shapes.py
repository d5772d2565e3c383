"""Shapes: 10 classes of simple shapes rendered at random positions, scales, rotations and strokes.

The benchmark's third image data set, generated so that nothing is downloaded; in the spirit of
MNIST-1D (Greydanus 2020: a small procedural data set on which models of different kinds clearly
differ) and of dSprites (Matthey et al. 2017: shapes at random positions, scales and rotations).

The classes (:data:`CLASSES`), in a shape's own frame (y pointing down, unit = its scale): 0 a
filled square, 1 a filled disk, 2 a filled triangle pointing up, 3 a plus, 4 a ring, 5 a
horizontal bar, 6 a vertical bar, 7 a diagonal line rising to the right, 8 an L, 9 an X; classes 3
to 9 are strokes. Each image draws, uniformly: a scale (half-size) of 0.22 to 0.34 x ``size``
pixels (:data:`SCALE`), a rotation of at most :data:`MAX_ROTATION` degrees either way (so that the
bars, the diagonal, the plus and the X stay apart), a stroke width of 0.10 to 0.16 x ``size``
pixels (:data:`STROKE`), a sub-pixel centre that keeps the shape inside the image, a background
grey level of 0 to 0.5 and a contrast of 0.5 to 1 above it. The shape is drawn anti-aliased from
its signed distance ``d`` in pixels (coverage ``clip(0.5 - d, 0, 1)``), Gaussian pixel noise of
standard deviation ``noise`` (default 0.25) is added, and the image is clipped to [0, 1] and
quantised to 8-bit grey levels, as a camera would: so a last-bit difference in another machine's
sines and cosines cannot change a pixel, and a data set is the same on every machine. The noise
sets the ceiling (the fainter shapes under it are ambiguous); the shapes' sizes are such that the
benchmark's small 2-D CNN reaches that ceiling within about 1,000 steps (docs/tasks.md).

Each split draws from its own generators, seeded by (``data_seed``, split) and one per kind of draw
(labels, shape parameters, noise), so validation and test do not change with ``n_train``, and the
first k examples of a split are the same for every split size of at least k. Labels are balanced:
each block of 10 consecutive examples holds every class once, in a random order. Pixels are
standardised with the mean and (unbiased) standard deviation of the training split's grey levels,
computed exactly in integers. Fed as 1 x size x size images (2-D CNN), vectors (MLP), rows as
signals (1-D CNN) or as a sequence (RNN); chance accuracy 0.1, chance loss ln 10.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from bench.tasks import Task, register

CLASSES = ("square", "disk", "triangle", "plus", "ring", "horizontal bar", "vertical bar", "diagonal", "L", "X")
"""The class names, by label."""
MIN_SIZE = 12
"""The smallest image side: there the smallest shape is 2.6 pixels in half-size and the thinnest stroke 1.2 pixels."""
MAX_ROTATION = 15.0
"""Largest rotation, in degrees either way."""
SCALE = (0.22, 0.34)
"""Range of a shape's scale (half-size), as a share of the image side."""
STROKE = (0.1, 0.16)
"""Range of the stroke width, as a share of the image side."""
BACKGROUND = (0.0, 0.5)
"""Range of the background grey level (0 black, 1 white)."""
CONTRAST = (0.5, 1.0)
"""Range of the shape's grey level above the background."""
EXTENT = 1.15
"""Largest distance of a shape's outline from its centre, in units of its scale."""
LEVELS = 255
"""Grey levels above black of the quantised images (8 bits)."""
SPLITS = ("train", "val", "test")


def _segment(u: np.ndarray, v: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Distance of the points (u, v) from the segment a-b."""
    du, dv = b[0] - a[0], b[1] - a[1]
    t = np.clip(((u - a[0]) * du + (v - a[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    eu, ev = u - a[0] - t * du, v - a[1] - t * dv
    return np.sqrt(eu * eu + ev * ev)


def _strokes(*segments: tuple[tuple[float, float], tuple[float, float]]) -> Callable[..., np.ndarray]:
    """The signed distance of a union of segments drawn with half-width ``half``."""
    def distance(u: np.ndarray, v: np.ndarray, half: np.ndarray) -> np.ndarray:
        return np.minimum.reduce([_segment(u, v, a, b) for a, b in segments]) - half
    return distance


def _square(u: np.ndarray, v: np.ndarray, half: np.ndarray) -> np.ndarray:
    """A filled square of half-side 0.75 (the exact box distance)."""
    qu, qv = np.abs(u) - 0.75, np.abs(v) - 0.75
    outside = np.sqrt(np.maximum(qu, 0.0) ** 2 + np.maximum(qv, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qu, qv), 0.0)


def _disk(u: np.ndarray, v: np.ndarray, half: np.ndarray) -> np.ndarray:
    """A filled disk of radius 0.85."""
    return np.sqrt(u * u + v * v) - 0.85


def _triangle(u: np.ndarray, v: np.ndarray, half: np.ndarray) -> np.ndarray:
    """A filled equilateral triangle, apex up (y down), circumradius 1.1: the largest distance beyond its edges."""
    slope = math.sqrt(3) / 2
    return np.maximum(v, np.maximum(slope * u - 0.5 * v, -slope * u - 0.5 * v)) - 0.55


def _ring(u: np.ndarray, v: np.ndarray, half: np.ndarray) -> np.ndarray:
    """A circle of radius 0.8 drawn as a stroke."""
    return np.abs(np.sqrt(u * u + v * v) - 0.8) - half


DISTANCES: tuple[Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], ...] = (
    _square,
    _disk,
    _triangle,
    _strokes(((-1.0, 0.0), (1.0, 0.0)), ((0.0, -1.0), (0.0, 1.0))),
    _ring,
    _strokes(((-1.0, 0.0), (1.0, 0.0))),
    _strokes(((0.0, -1.0), (0.0, 1.0))),
    _strokes(((-0.75, 0.75), (0.75, -0.75))),
    _strokes(((-0.6, -0.9), (-0.6, 0.9)), ((-0.6, 0.9), (0.7, 0.9))),
    _strokes(((-0.75, -0.75), (0.75, 0.75)), ((-0.75, 0.75), (0.75, -0.75))),
)
"""Signed distance (negative inside) of each class's shape, by label, in its own frame:
``distance(u, v, half)`` at the points (u, v) for a stroke of half-width ``half``."""


def _generator(data_seed: int, split_index: int, stream: int) -> np.random.Generator:
    """The generator of one kind of draw (0 labels, 1 shape parameters, 2 noise) of one split."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(data_seed, spawn_key=(split_index, stream))))


def draw(n: int, *, size: int, noise: float, data_seed: int, split_index: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of split ``split_index`` (0 train, 1 validation, 2 test) as 8-bit grey levels, (n, size,
    size) uint8, and their labels, (n,) int64 (see the module docstring)."""
    blocks = -(-n // len(CLASSES))
    labels = _generator(data_seed, split_index, 0).random((blocks, len(CLASSES))).argsort(axis=1).ravel()[:n]
    unit = _generator(data_seed, split_index, 1).random((n, 7))
    scale = size * (SCALE[0] + (SCALE[1] - SCALE[0]) * unit[:, 0])
    stroke = size * (STROKE[0] + (STROKE[1] - STROKE[0]) * unit[:, 1])
    angle = np.deg2rad(MAX_ROTATION * (2 * unit[:, 2] - 1))
    margin = EXTENT * scale + stroke / 2
    centre_x, centre_y = (margin + (size - 2 * margin) * unit[:, i] for i in (3, 4))
    background = BACKGROUND[0] + (BACKGROUND[1] - BACKGROUND[0]) * unit[:, 5]
    contrast = CONTRAST[0] + (CONTRAST[1] - CONTRAST[0]) * unit[:, 6]

    pixel = np.arange(size) + 0.5  # pixel centres
    coverage = np.empty((n, size, size))
    for label, distance in enumerate(DISTANCES):
        rows = np.flatnonzero(labels == label)
        if not len(rows):
            continue
        # Each example's parameters over its pixels, (rows, 1, 1); its pixels in the shape's frame, (rows, H, W).
        s, cos, sin, half, cx, cy = (values[rows, None, None] for values in (
            scale, np.cos(angle), np.sin(angle), stroke / (2 * scale), centre_x, centre_y))
        dx, dy = pixel[None, None, :] - cx, pixel[None, :, None] - cy
        u, v = (cos * dx + sin * dy) / s, (cos * dy - sin * dx) / s
        coverage[rows] = np.clip(0.5 - s * distance(u, v, half), 0.0, 1.0)
    grey = background[:, None, None] + contrast[:, None, None] * coverage
    grey += noise * _generator(data_seed, split_index, 2).standard_normal((n, size, size))
    return np.rint(LEVELS * np.clip(grey, 0.0, 1.0)).astype(np.uint8), labels.astype(np.int64)


def check(*, size: int = 16, n_train: int = 5000, n_eval: int = 1000, noise: float = 0.25, data_seed: int = 0) -> None:
    """Raise ValueError on options that cannot make the data set: an image side too small for the shapes,
    a split without every class, a negative noise level."""
    for name, value, least in (("size", size, MIN_SIZE), ("n_train", n_train, len(CLASSES)),
                               ("n_eval", n_eval, len(CLASSES))):
        if value < least:
            raise ValueError(f"{name} = {value} is too small for the {len(CLASSES)} shapes; allowed: {name} at least "
                             f"{least}")
    if not noise >= 0:
        raise ValueError(f"noise = {noise} is not a standard deviation; allowed: noise at least 0")


@register("shapes", layout="image", objective="classification", check=check)
def shapes(kind: str, *, size: int = 16, n_train: int = 5000, n_eval: int = 1000, noise: float = 0.25,
           data_seed: int = 0) -> Task:
    """Shapes as 1 x size x size images standardised by the training split's grey levels; chance accuracy 0.1."""
    check(size=size, n_train=n_train, n_eval=n_eval, noise=noise)
    drawn = [draw(count, size=size, noise=noise, data_seed=data_seed, split_index=i)
             for i, count in enumerate((n_train, n_eval, n_eval))]
    train = drawn[0][0].astype(np.int64)
    count, total, squares = train.size, int(train.sum()), int((train * train).sum())
    mean = total / count
    std = math.sqrt((squares * count - total * total) / (count * (count - 1)))
    return Task(kind, "image", "classification", len(CLASSES), "accuracy", True, math.log(len(CLASSES)), 0.1, {
        name: (torch.from_numpy(((grey - mean) / std).astype(np.float32)[:, None]), torch.from_numpy(labels))
        for name, (grey, labels) in zip(SPLITS, drawn, strict=True)
    })
