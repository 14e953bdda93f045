"""A procedural "shapes world": coloured circles, squares, triangles and stars on a plain
background, with every factor of every scene known, and English captions that state them.

It is the project's image data set with ground truth: a factor classifier reads the factors
back off any image (aigc_jax/metrics/factor_classifier.py), so a generator's samples can be
judged on what they show, and captions pair images with text for CLIP-style models and
captioners. Some (shape, colour) pairs are held out of the training split, so composition
("a green circle" when green and circles were only seen apart) can be tested.

Geometry. Coordinates are in pixels of the output image: x to the right, y downwards, the
image spans [0, S) x [0, S), pixel (row i, column j) covers [j, j+1) x [i, i+1). `radius` is
the circumradius (centre to farthest point): a circle's radius, a square's half-diagonal, a
triangle's or star's centre-to-tip distance. Every object lies wholly inside the image.
Size is by area, as the eye judges it: the size bins are ranges of the equal-area radius
sqrt(area / pi), so a "large" triangle covers as many pixels as a "large" circle (and reaches
further out), and within a scene the areas differ pairwise by a factor of at least
MIN_AREA_RATIO, so "the largest object" is plain to see.

A batch of scenes ("factors") is a dict of numpy arrays, N scenes, M = world.max_objects slots:
    background [N] int32   index into BACKGROUNDS
    count      [N] int32   number of objects, min_objects..max_objects
    shape      [N, M] int32   index into SHAPES (-1 in unused slots)
    colour     [N, M] int32   index into COLOURS (-1 in unused slots)
    size       [N, M] int32   index into SIZES (-1 in unused slots)
    radius     [N, M] float32 circumradius in pixels (0 in unused slots)
    area       [N, M] float32 area in pixels^2, AREA_FACTOR[shape] * radius^2 (0 in unused slots)
    x, y       [N, M] float32 centre in pixels (0 in unused slots)
    rotation   [N, M] float32 radians, counter-clockwise on screen, in [0, 2 pi / symmetry)
                              (0 for circles; symmetry 4 for squares, 3 triangles, 5 stars)
    mask       [N, M] bool    slot holds an object: mask[n, :count[n]] is True, the rest False
Objects are in sample order, which is also drawing order (later over earlier); the first two
are the pair a caption relates. The "main" object of a scene is its largest by area (main_object).

Scene n is a pure function of (seed, n, split): np.random.default_rng([seed, n, split code]),
so it renders to the same pixels whatever batch it is rendered in.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from dataclasses import dataclass, fields

import numpy as np

from aigc_jax.data.text import DataError

CACHE_VERSION = 2

SHAPES = ("circle", "square", "triangle", "star")
# Rotational symmetry of each shape (the order of its rotation group; a circle has any, drawn as 1).
SYMMETRY = {"circle": 1, "square": 4, "triangle": 3, "star": 5}
STAR_INNER_RATIO = 0.5  # a star's inner vertices at half its circumradius (fat points read better when small)

COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white")
COLOUR_RGB = {  # 8-bit sRGB values; pairwise at least 94 apart (Euclidean)
    "red": (230, 25, 25), "green": (25, 205, 40), "blue": (50, 90, 255), "yellow": (240, 230, 25),
    "magenta": (230, 40, 230), "cyan": (25, 230, 230), "orange": (255, 140, 0), "white": (255, 255, 255)}
BACKGROUNDS = ("black", "grey", "navy", "brown")
BACKGROUND_RGB = {  # 8-bit sRGB; each at least 140 from every object colour
    "black": (0, 0, 0), "grey": (115, 115, 115), "navy": (15, 15, 75), "brown": (90, 50, 20)}
# Area / circumradius^2 of each shape: pi; 2; 3 sqrt(3) / 4; a star is 2 n triangles of sides
# r and r_in with angle pi / n between them, n r r_in sin(pi / n).
AREA_FACTOR = {"circle": math.pi, "square": 2.0, "triangle": 3.0 * math.sqrt(3.0) / 4.0,
               "star": 5.0 * STAR_INNER_RATIO * math.sin(math.pi / 5.0)}
SIZES = ("small", "medium", "large")
# Equal-area radius sqrt(area / pi) as a fraction of the image size, uniform within the bin;
# gaps between bins keep the bins readable off the image.
SIZE_RANGES = {"small": (0.085, 0.105), "medium": (0.125, 0.15), "large": (0.17, 0.20)}
MIN_AREA_RATIO = 1.25  # between any two objects of a scene
RELATIONS = ("above", "below", "left of", "right of")
INVERSE_RELATION = {"above": "below", "below": "above", "left of": "right of", "right of": "left of"}

# One held-out (shape, colour) pair per shape, each colour used once: never in the "train" or
# "test" split, in every "heldout" scene.
DEFAULT_HELDOUT_PAIRS = (("circle", "green"), ("square", "orange"), ("triangle", "white"), ("star", "blue"))

SPLITS = {"train": 0, "test": 1, "heldout": 2, "all": 3}  # the split codes seeding each stream
NUM_TEMPLATES = 4
PLACEMENT_TRIES = 60  # radii, then positions, tried per size bin before another bin is tried
MAX_OBJECTS_LIMIT = 6


@dataclass(frozen=True)
class ShapesWorld:
    image_size: int = 32
    min_objects: int = 1
    max_objects: int = 3
    heldout_pairs: tuple = DEFAULT_HELDOUT_PAIRS
    supersample: int = 4  # anti-aliasing: render at image_size * supersample, box-average down

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "heldout_pairs" and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
                raise DataError(f"ShapesWorld.{f.name} must be an integer, got {value!r}")
        if self.image_size < 16:
            raise DataError(f"ShapesWorld.image_size must be at least 16 pixels, got {self.image_size}")
        if self.supersample < 1:
            raise DataError(f"ShapesWorld.supersample must be at least 1, got {self.supersample}")
        if not 1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS_LIMIT:
            raise DataError(f"ShapesWorld needs 1 <= min_objects <= max_objects <= {MAX_OBJECTS_LIMIT}, "
                            f"got min_objects={self.min_objects}, max_objects={self.max_objects}")
        pairs = tuple(tuple(pair) for pair in self.heldout_pairs)
        for pair in pairs:
            if len(pair) != 2 or pair[0] not in SHAPES or pair[1] not in COLOURS:
                raise DataError(f"ShapesWorld.heldout_pairs: {pair!r} is not a (shape, colour) pair; "
                                f"shapes {SHAPES}, colours {COLOURS}")
        if len(set(pairs)) != len(pairs):
            raise DataError(f"ShapesWorld.heldout_pairs has repeats: {pairs}")
        if len(pairs) >= len(SHAPES) * len(COLOURS):
            raise DataError("ShapesWorld.heldout_pairs holds out every (shape, colour) pair; none is left to train on")
        object.__setattr__(self, "heldout_pairs", pairs)

    @property
    def heldout_pair_indices(self) -> tuple:
        """The held-out pairs as pair indices, shape * len(COLOURS) + colour (pair_index)."""
        return tuple(pair_index(SHAPES.index(s), COLOURS.index(c)) for s, c in self.heldout_pairs)

    def radius_range(self, size: int) -> tuple:
        """(low, high) equal-area radius in pixels of size bin `size`."""
        low, high = SIZE_RANGES[SIZES[size]]
        return low * self.image_size, high * self.image_size

    @property
    def max_circumradius(self) -> float:
        """The largest circumradius any object can have (a large triangle's)."""
        return self.radius_range(len(SIZES) - 1)[1] * max(circumradius_per_area_radius(k) for k in range(len(SHAPES)))


def circumradius_per_area_radius(shape: int) -> float:
    """Circumradius of a shape whose area is that of a circle of radius 1: sqrt(pi / AREA_FACTOR)."""
    return math.sqrt(math.pi / AREA_FACTOR[SHAPES[shape]])


def pair_index(shape, colour):
    """(shape, colour) indices -> one index in [0, 32): shape * len(COLOURS) + colour."""
    return shape * len(COLOURS) + colour


# ----------------------------------------------------------------------------- factors


def _scene_pairs(world: ShapesWorld, rng: np.random.Generator, count: int, split: str) -> list:
    """(shape, colour) index pairs of one scene's objects, obeying the split's rule."""
    heldout = set(world.heldout_pair_indices)
    every = range(len(SHAPES) * len(COLOURS))
    if split in ("train", "test"):
        pool = [p for p in every if p not in heldout]
        chosen = [pool[i] for i in rng.integers(0, len(pool), size=count)]
    elif split == "all":
        chosen = list(rng.integers(0, len(every), size=count))
    else:  # heldout: one object (at a random slot) is a held-out pair, the rest anything
        held = sorted(heldout)
        chosen = list(rng.integers(0, len(every), size=count))
        chosen[int(rng.integers(0, count))] = held[int(rng.integers(0, len(held)))]
    return [divmod(int(p), len(COLOURS)) for p in chosen]


def _place(world: ShapesWorld, rng: np.random.Generator, size: int, shape: int, placed: list) -> tuple:
    """(size, circumradius, x, y) of a new object that overlaps none already placed (a list of
    (circumradius, x, y, area)) and whose area differs from each of theirs by MIN_AREA_RATIO.

    Rejection sampling: an equal-area radius from the size bin (redrawn up to PLACEMENT_TRIES
    times until its area is MIN_AREA_RATIO from every placed one), then PLACEMENT_TRIES uniform
    positions; if none keeps the circumcircles apart (centre distance >= r_a + r_b), the other
    bins are tried (smaller ones first, then larger). Should every bin fail, the candidate with
    the largest clearance is kept (a slight overlap). So crowded scenes hold fewer large objects
    than the uniform prior, and scenes have no two objects of nearly equal area."""
    size_s = world.image_size
    scale = circumradius_per_area_radius(shape)
    best, best_gap = None, -math.inf
    order = [size] + list(range(size - 1, -1, -1)) + list(range(size + 1, len(SIZES)))
    for bin_ in order:
        low, high = world.radius_range(bin_)
        for _ in range(PLACEMENT_TRIES):
            area_radius = float(rng.uniform(low, high))
            area = math.pi * area_radius ** 2
            if all(max(area, other) >= MIN_AREA_RATIO * min(area, other) for _, _, _, other in placed):
                break
        else:
            continue
        radius = area_radius * scale
        for _ in range(PLACEMENT_TRIES):
            x, y = rng.uniform(radius, size_s - radius, size=2)
            gap = min((math.hypot(x - px, y - py) - radius - pr for pr, px, py, _ in placed), default=math.inf)
            if gap >= 0.0:
                return bin_, radius, float(x), float(y)
            if gap > best_gap:
                best, best_gap = (bin_, radius, float(x), float(y)), gap
    if best is None:  # no bin had an area far enough from the others': the nearest is kept
        low, high = world.radius_range(size)
        radius = float(rng.uniform(low, high)) * scale
        x, y = rng.uniform(radius, size_s - radius, size=2)
        best = (size, radius, float(x), float(y))
    return best


def sample_factors(world: ShapesWorld, seed: int, indices, split: str = "train") -> dict:
    """Factors of scenes `indices` of the stream (seed, split): the dict described in the module
    docstring. Scene i draws from np.random.default_rng([seed, i, SPLITS[split]]) alone.

    Per scene: background, count and each object's size bin uniform; (shape, colour) uniform over
    the pairs the split allows ("train"/"test": not held out; "heldout": one object held out, the
    others any pair; "all": any pair); position by rejection sampling (_place); rotation uniform
    over the shape's symmetry period."""
    if split not in SPLITS:
        raise DataError(f"unknown shapes split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "heldout" and not world.heldout_pairs:
        raise DataError("the 'heldout' split needs ShapesWorld.heldout_pairs; this world holds none out")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(indices) and indices.min() < 0:
        raise DataError(f"scene indices must be non-negative, got {int(indices.min())}")
    n, m = len(indices), world.max_objects
    out = {"background": np.zeros(n, np.int32), "count": np.zeros(n, np.int32)}
    for key in ("shape", "colour", "size"):
        out[key] = np.full((n, m), -1, np.int32)
    for key in ("radius", "area", "x", "y", "rotation"):
        out[key] = np.zeros((n, m), np.float32)
    out["mask"] = np.zeros((n, m), bool)
    for row, index in enumerate(indices):
        rng = np.random.default_rng([int(seed), int(index), SPLITS[split]])
        out["background"][row] = rng.integers(0, len(BACKGROUNDS))
        count = int(rng.integers(world.min_objects, world.max_objects + 1))
        out["count"][row] = count
        placed = []
        for slot, (shape, colour) in enumerate(_scene_pairs(world, rng, count, split)):
            size, radius, x, y = _place(world, rng, int(rng.integers(0, len(SIZES))), shape, placed)
            area = AREA_FACTOR[SHAPES[shape]] * radius ** 2
            placed.append((radius, x, y, area))
            symmetry = SYMMETRY[SHAPES[shape]]
            rotation = 0.0 if symmetry == 1 else float(rng.uniform(0.0, 2.0 * math.pi / symmetry))
            for key, value in (("shape", shape), ("colour", colour), ("size", size), ("radius", radius), ("area", area),
                               ("x", x), ("y", y), ("rotation", rotation), ("mask", True)):
                out[key][row, slot] = value
    return out


def scene_of(factors: dict, n: int) -> dict:
    """Scene n of a batch of factors: the same keys, scalars and [M] arrays."""
    return {key: value[n] for key, value in factors.items()}


def main_object(factors: dict) -> np.ndarray:
    """[N] slot of each scene's largest object by area (the earliest on a tie)."""
    return np.argmax(np.where(factors["mask"], factors["area"], -1.0), axis=-1)


# ----------------------------------------------------------------------------- rendering


def _palette(names, table) -> np.ndarray:
    return np.asarray([table[name] for name in names], np.int64)


def inside_shape(dx: np.ndarray, dy: np.ndarray, radius, shape, rotation) -> np.ndarray:
    """Whether points at offset (dx, dy) from a centre (y down) are inside the shape: bool, the
    broadcast shape of the arguments (shape: SHAPES indices).

    A circle is d <= r. A regular n-gon and a 5-pointed star are one case: star-shaped about the
    centre, with tips at radius r every 2 pi / n and, halfway between, inner vertices at radius
    r_in (an n-gon's edge midpoints, r_in = r cos(pi/n); a star's, r_in = STAR_INNER_RATIO r).
    The angle is folded into [0, pi/n] (the shape's mirror symmetry), where the boundary is the
    segment from the tip A = (r, 0) to the inner vertex B = r_in (cos pi/n, sin pi/n); a point P
    is inside iff it is on the centre's side of line AB: cross(B - A, P - A) >= 0."""
    shape = np.asarray(shape)
    points = np.choose(shape, [1, 4, 3, 5]).astype(np.float32)  # circle's value unused
    inner = np.choose(shape, [1.0, math.cos(math.pi / 4), math.cos(math.pi / 3), STAR_INNER_RATIO]).astype(np.float32)
    distance = np.sqrt(dx * dx + dy * dy)
    # On screen y points down, so counter-clockwise on screen is atan2(-dy, dx).
    sector = np.float32(2.0 * math.pi) / points
    angle = np.mod(np.arctan2(-dy, dx) - rotation, sector)
    angle = np.minimum(angle, sector - angle)
    px, py = distance * np.cos(angle), distance * np.sin(angle)
    half = sector / 2
    bx, by = radius * inner * np.cos(half), radius * inner * np.sin(half)
    polygon = (bx - radius) * py - by * (px - radius) >= 0.0
    return np.where(shape == 0, distance <= radius, polygon)


def render(world: ShapesWorld, factors: dict, chunk: int = 256) -> np.ndarray:
    """float32 [N, S, S, 3] in [0, 1]: each scene drawn at S * supersample pixels per side
    (sample points at sub-pixel centres), objects in slot order (later over earlier), then each
    supersample x supersample block averaged (a box filter): edge pixels take intermediate values
    in proportion to the fraction of the pixel covered.

    Vectorised over scenes: each object slot is tested only inside a fixed window around its
    centre (the largest object's extent), and the sub-pixels inside are set in the canvas."""
    n = len(factors["count"])
    s = world.image_size
    out = np.empty((n, s, s, 3), np.float32)
    for start in range(0, n, chunk):
        part = {key: value[start:start + chunk] for key, value in factors.items()}
        out[start:start + chunk] = _render_chunk(world, part)
    return out


def _render_chunk(world: ShapesWorld, factors: dict) -> np.ndarray:
    """The canvas holds palette codes (uint8: colours 0..7, then backgrounds 8..11) at sub-pixel
    resolution; the box filter is a histogram of codes per output pixel (np.bincount) times the
    palette, which equals averaging the sub-pixels' RGB values. In integers until the last
    division, so a scene's pixels are bit-identical whatever batch it is rendered in."""
    s, ss = world.image_size, world.supersample
    hi = s * ss
    n = len(factors["count"])
    palette = np.concatenate([_palette(COLOURS, COLOUR_RGB), _palette(BACKGROUNDS, BACKGROUND_RGB)])
    codes = len(palette)
    canvas = np.repeat((len(COLOURS) + factors["background"]).astype(np.uint8), hi * hi)  # flat [n * hi * hi]
    max_radius = world.max_circumradius
    window = min(hi, int(math.ceil(2 * max_radius * ss)) + 2)
    offsets = np.arange(window)
    scene_base = (np.arange(n, dtype=np.int64) * hi * hi)[:, None, None]
    for slot in range(factors["mask"].shape[1]):
        mask = factors["mask"][:, slot]
        if not mask.any():
            continue
        cx, cy = factors["x"][:, slot], factors["y"][:, slot]
        radius = factors["radius"][:, slot][:, None, None]
        left = np.clip(np.floor((cx - max_radius) * ss).astype(np.int64), 0, hi - window)
        top = np.clip(np.floor((cy - max_radius) * ss).astype(np.int64), 0, hi - window)
        cols, rows = left[:, None] + offsets, top[:, None] + offsets  # [n, window] sub-pixel indices
        dx = ((cols + 0.5) / ss - cx[:, None]).astype(np.float32)[:, None, :]
        dy = ((rows + 0.5) / ss - cy[:, None]).astype(np.float32)[:, :, None]
        shape = np.maximum(factors["shape"][:, slot], 0)[:, None, None]
        rotation = factors["rotation"][:, slot][:, None, None].astype(np.float32)
        inside = inside_shape(dx, dy, radius, shape, rotation) & mask[:, None, None]
        flat = scene_base + rows[:, :, None] * hi + cols[:, None, :]  # [n, window, window]
        colour = np.broadcast_to(np.maximum(factors["colour"][:, slot], 0).astype(np.uint8)[:, None, None],
                                 inside.shape)
        canvas[flat[inside]] = colour[inside]
    # Output pixel of each sub-pixel: scene * s * s + (row // ss) * s + column // ss.
    pixel_of = (np.arange(hi) // ss)[:, None] * s + (np.arange(hi) // ss)[None, :]
    pixel = (np.arange(n, dtype=np.int64) * s * s)[:, None, None] + pixel_of
    histogram = np.bincount((pixel.reshape(-1) * codes + canvas), minlength=n * s * s * codes)
    total = histogram.reshape(n, s, s, codes) @ palette  # [n, s, s, 3] sums of 8-bit values
    return (total / (255.0 * ss * ss)).astype(np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- data sets


def default_cache_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "aigc_jax", "shapes")


def dataset_key(world: ShapesWorld, seed: int, count: int, split: str) -> str:
    text = f"v{CACHE_VERSION}|{world}|seed={seed}|count={count}|split={split}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read_cache(path: str, world: ShapesWorld, count: int):
    """(images, factors) from a cache file, or None (with a warning) when it is unreadable or
    holds arrays of the wrong shapes: the caller renders it again."""
    try:
        with np.load(path) as archive:
            loaded = {key: archive[key] for key in archive.files}
        images = loaded.pop("images")
        s = world.image_size
        if images.shape != (count, s, s, 3) or images.dtype != np.uint8 or loaded["count"].shape != (count,) \
                or loaded["shape"].shape != (count, world.max_objects):
            raise ValueError(f"arrays of unexpected shapes (images {images.shape} {images.dtype})")
        return images, loaded
    except Exception as e:  # a corrupt zip raises several kinds (BadZipFile, ValueError, EOFError, KeyError)
        warnings.warn(f"shapes cache file {path!r} is unreadable ({type(e).__name__}: {e}); rendering it again")
        return None


def make_dataset(world: ShapesWorld, seed: int, count: int, split: str = "train", cache_dir: str = "",
                 progress: bool = True) -> tuple:
    """(images uint8 [count, S, S, 3], factors) of scenes 0..count-1 of the stream (seed, split).

    Cached as an NPZ in cache_dir (default ~/.cache/aigc_jax/shapes) under a hash of the world's
    settings, seed, count, split and CACHE_VERSION; written through a temporary file and a rename,
    so a concurrent reader never sees half a file. A corrupt or mismatched cache file is not an
    error: it is reported with a warning and rendered again (the data are a pure function of the
    key). Rendering shows a tqdm progress bar (progress=False hides it)."""
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise DataError(f"make_dataset needs a positive number of scenes, got {count!r}")
    if split not in SPLITS:
        raise DataError(f"unknown shapes split {split!r}; expected one of {', '.join(SPLITS)}")
    cache_dir = cache_dir or default_cache_dir()
    path = os.path.join(cache_dir, f"shapes_{dataset_key(world, seed, count, split)}.npz")
    if os.path.exists(path):
        cached = _read_cache(path, world, count)
        if cached is not None:
            return cached
    from tqdm import tqdm
    factors = sample_factors(world, seed, np.arange(count), split)
    images = np.empty((count, world.image_size, world.image_size, 3), np.uint8)
    chunk = 512
    with tqdm(total=count, desc=f"rendering {split} shapes", unit="scene", disable=not progress) as bar:
        for start in range(0, count, chunk):
            part = {key: value[start:start + chunk] for key, value in factors.items()}
            images[start:start + chunk] = to_uint8(render(world, part))
            bar.update(len(part["count"]))
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, images=images, **factors)
    os.replace(tmp, path)  # atomic: a reader sees no file or the whole file
    return images, factors


# ----------------------------------------------------------------------------- captions

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")


def relation(scene: dict, a: int, b: int) -> str:
    """Where object a is relative to object b: along the axis that separates their centres more
    (a vertical tie counts as vertical); y grows downwards, so smaller y is "above"."""
    dx = float(scene["x"][a] - scene["x"][b])
    dy = float(scene["y"][a] - scene["y"][b])
    if abs(dy) >= abs(dx):
        return "above" if dy < 0 else "below"
    return "left of" if dx < 0 else "right of"


def _phrase(scene: dict, slot: int) -> str:
    return (f"a {SIZES[scene['size'][slot]]} {COLOURS[scene['colour'][slot]]} "
            f"{SHAPES[scene['shape'][slot]]}")


def _objects_text(scene: dict, order: list) -> str:
    """"A rel B, C, and D": the first two in `order` related, the rest listed."""
    first = _phrase(scene, order[0])
    if len(order) == 1:
        return first
    head = f"{first} {relation(scene, order[0], order[1])} {_phrase(scene, order[1])}"
    rest = [_phrase(scene, slot) for slot in order[2:]]
    if not rest:
        return head
    return ", ".join([head] + rest[:-1]) + ", and " + rest[-1]


def caption(scene: dict, template: int = 0) -> str:
    """An English caption of one scene (scene_of(factors, n)). The first two objects (slot order)
    are related by `relation`; canonical words only, so parse_caption reads every template:
      0  "a small red circle above a large blue square, and a medium white star"
      1  "a small red circle above a large blue square, and a medium white star on a grey background"
      2  "three objects on a grey background: a large blue square below a small red circle, and a
          medium white star"   (count and background stated; the first two swapped)
      3  "there are three objects: a medium white star, a small red circle above a large blue
          square"   (count stated; the unrelated objects first, the related pair last)
    template is an int in 0..NUM_TEMPLATES-1 (a caller may draw it from a seeded rng)."""
    count = int(scene["count"])
    order = list(range(count))
    background = BACKGROUNDS[int(scene["background"])]
    if template == 0:
        return _objects_text(scene, order)
    if template == 1:
        return f"{_objects_text(scene, order)} on a {background} background"
    if template == 2:
        if count >= 2:
            order[0], order[1] = order[1], order[0]
        noun = "object" if count == 1 else "objects"
        return f"{NUMBER_WORDS[count]} {noun} on a {background} background: {_objects_text(scene, order)}"
    if template == 3:
        if count == 1:
            return f"there is one object: {_phrase(scene, 0)}"
        listed = [_phrase(scene, slot) for slot in order[2:]]
        pair = f"{_phrase(scene, 0)} {relation(scene, 0, 1)} {_phrase(scene, 1)}"
        return f"there are {NUMBER_WORDS[count]} objects: " + ", ".join(listed + [pair])
    raise DataError(f"caption template {template!r} does not exist; expected 0..{NUM_TEMPLATES - 1}")

_WORDS = lambda names: "|".join(sorted(names, key=len, reverse=True))  # noqa: E731
_OBJECT = re.compile(rf"\ba ({_WORDS(SIZES)}) ({_WORDS(COLOURS)}) ({_WORDS(SHAPES)})\b")
_RELATION = re.compile(rf"^ ({_WORDS(RELATIONS)}) $")
_BACKGROUND = re.compile(rf"\bon a ({_WORDS(BACKGROUNDS)}) background\b")
_COUNT = re.compile(rf"\b({_WORDS(NUMBER_WORDS)}) objects?\b")


def parse_caption(text: str) -> dict:
    """The factors a caption states:
      objects     list of {"size", "colour", "shape"} (names) in the order stated
      relation    (a, relation, b): stated object a is `relation` of stated object b, or None
      background  name or None;  count  int or None
    Unknown words between objects are an error only where they break an object phrase:
    a caption with no object phrase raises DataError."""
    text = text.strip().lower()
    matches = list(_OBJECT.finditer(text))
    if not matches:
        raise DataError(f"no object phrase ('a <size> <colour> <shape>') in caption {text!r}")
    objects = [{"size": m.group(1), "colour": m.group(2), "shape": m.group(3)} for m in matches]
    found = None
    for i in range(len(matches) - 1):
        between = _RELATION.match(text[matches[i].end():matches[i + 1].start()])
        if between:
            found = (i, between.group(1), i + 1)
            break
    background = _BACKGROUND.search(text)
    count = _COUNT.search(text)
    return {"objects": objects, "relation": found,
            "background": background.group(1) if background else None,
            "count": NUMBER_WORDS.index(count.group(1)) if count else None}


def caption_agrees(parsed: dict, scene: dict) -> bool:
    """Whether a parsed caption states only facts of the scene: the same multiset of objects,
    the relation holding between some two distinct scene objects that match the related
    phrases, and the background and count, where stated."""
    count = int(scene["count"])
    names = [{"size": SIZES[scene["size"][k]], "colour": COLOURS[scene["colour"][k]],
              "shape": SHAPES[scene["shape"][k]]} for k in range(count)]
    key = lambda o: (o["shape"], o["colour"], o["size"])  # noqa: E731
    if sorted(map(key, parsed["objects"])) != sorted(map(key, names)):
        return False
    if parsed["background"] is not None and parsed["background"] != BACKGROUNDS[int(scene["background"])]:
        return False
    if parsed["count"] is not None and parsed["count"] != count:
        return False
    if count >= 2 and parsed["relation"] is None:
        return False
    if parsed["relation"] is not None:
        a, rel, b = parsed["relation"]
        want_a, want_b = key(parsed["objects"][a]), key(parsed["objects"][b])
        return any(key(names[i]) == want_a and key(names[j]) == want_b and relation(scene, i, j) == rel
                   for i in range(count) for j in range(count) if i != j)
    return True


# ----------------------------------------------------------------------------- classifier targets

POSITION_BINS = 3  # the main object's centre on a 3 x 3 grid: bin = row * 3 + column


def targets(world: ShapesWorld, factors: dict) -> dict:
    """The factor classifier's targets (aigc_jax/metrics/factor_classifier.py), N scenes:
      categorical, int32 [N]:  count (count - min_objects), background, and the main object's
        (main_object: the largest) shape, colour, size, position (3 x 3 bin of its centre)
      multi-label, float32 [N, K]: shape_present [N, 4], colour_present [N, 8],
        pair_present [N, 32] (pair_index = shape * 8 + colour)"""
    n = len(factors["count"])
    main = main_object(factors)
    rows = np.arange(n)
    s = world.image_size
    column = np.clip((factors["x"][rows, main] / s * POSITION_BINS).astype(np.int32), 0, POSITION_BINS - 1)
    row = np.clip((factors["y"][rows, main] / s * POSITION_BINS).astype(np.int32), 0, POSITION_BINS - 1)
    mask = factors["mask"]
    shape_present = np.zeros((n, len(SHAPES)), np.float32)
    colour_present = np.zeros((n, len(COLOURS)), np.float32)
    pair_present = np.zeros((n, len(SHAPES) * len(COLOURS)), np.float32)
    scene, slot = np.nonzero(mask)
    shape, colour = factors["shape"][scene, slot], factors["colour"][scene, slot]
    shape_present[scene, shape] = 1.0
    colour_present[scene, colour] = 1.0
    pair_present[scene, pair_index(shape, colour)] = 1.0
    return {"count": (factors["count"] - world.min_objects).astype(np.int32),
            "background": factors["background"].astype(np.int32),
            "shape": factors["shape"][rows, main].astype(np.int32),
            "colour": factors["colour"][rows, main].astype(np.int32),
            "size": factors["size"][rows, main].astype(np.int32),
            "position": (row * POSITION_BINS + column).astype(np.int32),
            "shape_present": shape_present, "colour_present": colour_present, "pair_present": pair_present}
