"""An embedded, deterministic two-domain street-scene dataset (no download).

Every image is drawn from a seeded layout generator: sky above a horizon, a row of buildings with trees
in front, a road in perspective between two sidewalks, poles, cars on the road and people on the
sidewalks (8 classes). The *same* layout distribution is rendered in two domains:

``source`` ("sunny synthetic"): clean colours, crisp edges, brick buildings with windows, green trees,
blue sky, light noise.

``target`` ("dusk camera"): a shifted palette in which several classes take colours that the source
gives to other classes (sidewalks look like source roads, trees like source brick, the sky like source
sidewalks), different textures, dim and colour-cast lighting with a vertical fall-off, a Gaussian blur
and stronger sensor noise. A model trained on the source alone transfers poorly; a few well chosen
target labels fix it, which is exactly the regime RIPU is about.

Images are generated once per dataset object (small, a few MB) and are identical across runs and
machines for a given seed: only NumPy's ``PCG64`` generator seeded by ``(seed, domain, split, index)``
is used.
"""
from __future__ import annotations

import numpy as np

from .base import SegmentationDataset

CLASS_NAMES = ("road", "sidewalk", "building", "vegetation", "sky", "pole", "car", "person")
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, POLE, CAR, PERSON = range(8)
NUM_CLASSES = len(CLASS_NAMES)

DOMAINS = {"source": 0, "target": 1}
SPLITS = {"train": 0, "val": 1}

# Base colours (RGB in [0, 1]) per domain and class.
_PALETTE = {
    "source": np.array([
        [0.45, 0.45, 0.47],  # road: grey asphalt
        [0.72, 0.64, 0.52],  # sidewalk: beige tiles
        [0.62, 0.33, 0.27],  # building: brick
        [0.20, 0.55, 0.22],  # vegetation: green
        [0.52, 0.72, 0.95],  # sky: blue
        [0.22, 0.22, 0.24],  # pole: dark grey
        [0.80, 0.15, 0.15],  # car (instance colours below)
        [0.90, 0.70, 0.45],  # person
    ]),
    "target": np.array([
        [0.30, 0.26, 0.38],  # road: purple-grey
        [0.46, 0.46, 0.48],  # sidewalk: looks like the source road
        [0.35, 0.47, 0.58],  # building: blue-grey concrete
        [0.66, 0.40, 0.18],  # vegetation: autumn orange, near the source brick
        [0.85, 0.70, 0.55],  # sky: dusk peach, near the source sidewalk
        [0.85, 0.80, 0.20],  # pole: yellow
        [0.20, 0.60, 0.25],  # car
        [0.20, 0.28, 0.62],  # person: dark blue clothes
    ]),
}
_CAR_COLOURS = {
    "source": np.array([[0.80, 0.15, 0.15], [0.15, 0.25, 0.80], [0.92, 0.92, 0.92]]),
    "target": np.array([[0.20, 0.60, 0.25], [0.90, 0.80, 0.15], [0.10, 0.10, 0.12]]),
}
# Texture per class: 'smooth', 'noise' (fine grain), 'blotch' (coarse), 'tiles', 'windows', 'bands'.
_TEXTURE = {
    "source": ("noise", "tiles", "windows", "blotch", "smooth", "smooth", "smooth", "smooth"),
    "target": ("smooth", "noise", "bands", "noise", "blotch", "smooth", "smooth", "blotch"),
}


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Value noise in [-1, 1]: a coarse random grid upsampled bilinearly."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.uniform(-1.0, 1.0, size=(gh, gw))
    ys = np.arange(h) / cell
    xs = np.arange(w) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    g00, g01 = grid[y0][:, x0], grid[y0][:, x0 + 1]
    g10, g11 = grid[y0 + 1][:, x0], grid[y0 + 1][:, x0 + 1]
    return (g00 * (1 - fy) * (1 - fx) + g01 * (1 - fy) * fx + g10 * fy * (1 - fx) + g11 * fy * fx)


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(round(2.5 * sigma)))
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(img, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    tmp = sum(k[i] * pad[:, i:i + img.shape[1]] for i in range(len(k)))
    return sum(k[i] * tmp[i:i + img.shape[0]] for i in range(len(k)))


def generate_layout(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, list]:
    """A street-scene label map (H, W) int64, an instance map and per-instance (class, colour index)."""
    label = np.full((h, w), SKY, dtype=np.int64)
    inst = np.zeros((h, w), dtype=np.int64)
    instances: list[tuple[int, int]] = []
    yy, xx = np.mgrid[0:h, 0:w]
    horizon = int(h * rng.uniform(0.38, 0.52))

    # buildings: a row of blocks of random width and height, with gaps of sky
    x = int(rng.integers(-w // 10, 1))
    while x < w:
        bw = int(rng.uniform(0.12, 0.30) * w)
        if rng.uniform() < 0.8:
            top = max(0, horizon - int(rng.uniform(0.15, 0.42) * h))
            label[top:horizon + 1, max(x, 0):max(x + bw, 0)] = BUILDING
        x += bw + int(rng.uniform(0.0, 0.06) * w)

    # ground: road between two sidewalks, in perspective towards a vanishing point
    vx = rng.uniform(0.35, 0.65) * w
    half_far, half_near = rng.uniform(0.02, 0.06) * w, rng.uniform(0.28, 0.45) * w
    t = np.clip((yy - horizon) / max(h - horizon, 1), 0, 1)
    half = half_far + (half_near - half_far) * t
    ground = yy > horizon
    label[ground] = SIDEWALK
    label[ground & (np.abs(xx - vx) <= half)] = ROAD

    # trees: blobs near the horizon in front of the buildings, with a trunk
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0, w), horizon - rng.uniform(0.05, 0.25) * h
        rx, ry = rng.uniform(0.05, 0.12) * w, rng.uniform(0.08, 0.18) * h
        crown = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        label[crown] = VEGETATION
        trunk = (np.abs(xx - cx) <= max(1, 0.01 * w)) & (yy > cy) & (yy <= horizon + 0.04 * h)
        label[trunk] = VEGETATION

    def ground_row(frac: float) -> int:
        return int(horizon + 2 + frac * (h - horizon - 3))

    # poles on the sidewalks
    for _ in range(int(rng.integers(1, 4))):
        side = rng.choice([-1, 1])
        yb = ground_row(rng.uniform(0.1, 0.9))
        tt = (yb - horizon) / max(h - horizon, 1)
        px = int(vx + side * (half_far + (half_near - half_far) * tt + rng.uniform(2, 0.1 * w)))
        height = int((0.25 + 0.5 * tt) * h)
        pw = 1 if tt < 0.5 else 2
        label[max(0, yb - height):yb, max(0, px):max(0, px + pw)] = POLE

    # cars on the road and people on the sidewalks, far ones first (painter's order)
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        objects.append((CAR, rng.uniform(0.05, 1.0)))
    for _ in range(int(rng.integers(0, 4))):
        objects.append((PERSON, rng.uniform(0.05, 1.0)))
    objects.sort(key=lambda o: o[1])
    for cls, frac in objects:
        yb = ground_row(frac)
        tt = (yb - horizon) / max(h - horizon, 1)
        hw_road = half_far + (half_near - half_far) * tt
        if cls == CAR:
            cw = (0.07 + 0.24 * tt) * w
            ch = 0.5 * cw
            cx = vx + rng.uniform(-0.8, 0.8) * max(hw_road - cw / 2, 1)
            body = (np.abs(xx - cx) <= cw / 2) & (yy <= yb) & (yy >= yb - ch * 0.6)
            roof = (np.abs(xx - cx) <= cw * 0.32) & (yy < yb - ch * 0.6) & (yy >= yb - ch)
            mask = body | roof
        else:
            ph = (0.10 + 0.35 * tt) * h
            side = rng.choice([-1, 1])
            cx = vx + side * (hw_road + rng.uniform(0.02, 0.15) * w)
            cy = yb - ph / 2
            mask = ((xx - cx) / max(ph * 0.18, 0.8)) ** 2 + ((yy - cy) / (ph / 2)) ** 2 <= 1
        if mask.any():
            instances.append((cls, int(rng.integers(0, 3))))
            label[mask] = cls
            inst[mask] = len(instances)
    return label, inst, instances


def render(rng: np.random.Generator, label: np.ndarray, inst: np.ndarray, instances: list,
           domain: str) -> np.ndarray:
    """Render a label map in ``domain`` as float32 (H, W, 3) in [0, 1]."""
    h, w = label.shape
    palette = _PALETTE[domain] * rng.uniform(0.93, 1.07, size=(NUM_CLASSES, 1))
    img = palette[label].copy()
    for i, (cls, colour) in enumerate(instances, start=1):
        where = (inst == i) & (label == cls)
        if cls == CAR:
            img[where] = _CAR_COLOURS[domain][colour]
        else:
            img[where] = palette[cls] * (0.8 + 0.2 * colour)
    yy, xx = np.mgrid[0:h, 0:w]
    fields = {
        "smooth": np.zeros((h, w)),
        "noise": rng.normal(0.0, 1.0, size=(h, w)) * 0.8,
        "blotch": _smooth_noise(rng, h, w, max(2, w // 24)) * 1.2,
        "tiles": np.where((yy % 4 == 0) | (xx % 6 == 0), -1.2, 0.3),
        "windows": np.where(((yy % 6) >= 2) & ((yy % 6) <= 3) & ((xx % 5) >= 1) & ((xx % 5) <= 2), -1.8, 0.3),
        "bands": np.where((yy // 3) % 2 == 0, -0.9, 0.6),
    }
    mod = np.zeros((h, w))
    for cls, tex in enumerate(_TEXTURE[domain]):
        mod = np.where(label == cls, fields[tex], mod)
    img = img * (1.0 + 0.18 * mod)[..., None]
    if domain == "source":
        img = img * rng.uniform(0.9, 1.1)
        img = img + rng.normal(0.0, 0.02, size=img.shape)
    else:
        fall_off = 1.0 - rng.uniform(0.15, 0.35) * (yy / max(h - 1, 1))
        cast = np.array([1.0, 0.92, 1.08]) * rng.uniform(0.85, 1.0)
        img = img * fall_off[..., None] * cast
        img = _gaussian_blur(img, sigma=rng.uniform(0.7, 1.1))
        img = img + rng.normal(0.0, 0.045, size=img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def make_sample(seed: int, domain: str, split: str, index: int, height: int, width: int):
    """One deterministic (image float32 (H, W, 3), label int64 (H, W)) pair."""
    if domain not in DOMAINS:
        raise ValueError(f"synthetic: domain must be one of {sorted(DOMAINS)}, got {domain!r}")
    if split not in SPLITS:
        raise ValueError(f"synthetic: split must be one of {sorted(SPLITS)}, got {split!r}")
    ss = np.random.SeedSequence([int(seed), DOMAINS[domain], SPLITS[split], int(index)])
    layout_rng, render_rng = (np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(2))
    label, inst, instances = generate_layout(layout_rng, height, width)
    return render(render_rng, label, inst, instances, domain), label


class SyntheticStreets(SegmentationDataset):
    """``n`` images of one domain and split of the embedded street-scene data, ids ``"{domain}/{split}/{i:05d}"``."""

    num_classes = NUM_CLASSES
    class_names = CLASS_NAMES

    def __init__(self, domain: str, split: str, n: int, height: int = 60, width: int = 120, seed: int = 0,
                 hide_labels: bool = False):
        super().__init__(hide_labels=hide_labels)
        if n < 0:
            raise ValueError(f"synthetic: the number of images must be >= 0, got {n}")
        if height < 8 or width < 8:
            raise ValueError(f"synthetic: images must be at least 8x8, got {width}x{height}")
        self.name = f"synthetic-{domain}-{split}"
        self.domain, self.split, self.seed = domain, split, seed
        samples = [make_sample(seed, domain, split, i, height, width) for i in range(n)]
        self._images = np.stack([s[0] for s in samples]) if n else np.zeros((0, height, width, 3), np.float32)
        self._labels = np.stack([s[1] for s in samples]) if n else np.zeros((0, height, width), np.int64)

    def __len__(self) -> int:
        return len(self._images)

    def image_id(self, index: int) -> str:
        return f"{self.domain}/{self.split}/{index:05d}"

    def load_image(self, index: int) -> np.ndarray:
        return self._images[index]

    def load_label(self, index: int) -> np.ndarray:
        return self._labels[index]


