"""An embedded, deterministic two-domain street-scene benchmark shaped like GTAV -> Cityscapes (no download).

Every image is drawn from a seeded layout generator of a street seen from a car: a road in perspective between
two sidewalks, terrain strips, building facades on both sides converging to a vanishing point, trees, walls and
fences along the sidewalks, poles carrying traffic signs and lights, people on the sidewalks, riders on bicycles
and motorcycles, cars, trucks, buses and trams on the road. Labels are the 19 Cityscapes train ids in their
order (road = 0 ... bicycle = 18).

What decides acquisition is fixed from published statistics (docs/benchmark-data.md lists each with its
source):

* class frequencies: the *target* layout ("Cityscapes") is calibrated to the per-class pixel shares of the
  Cityscapes fine annotations, the *source* layout ("GTAV") to those of GTAV (``CITYSCAPES_PIXEL_PERCENT``,
  ``GTAV_PIXEL_PERCENT`` below): a few large classes (road, building, vegetation) and rare small or thin ones
  (pole, traffic sign, rider, motorcycle) in the published order; the label distributions of the two domains
  differ as the two datasets do (GTAV: more sky, trucks and walls, fewer people, cars and bicycles);
* object sizes follow ground-plane perspective: an object of real height ``Z`` standing on image row ``y``
  is ``Z / camera_height * (y - horizon)`` pixels tall, with distances drawn uniformly, so far (small) objects
  outnumber near ones; about 7 people per Cityscapes image;
* co-occurrence: cars, trucks, buses and trams stand on the road, people, poles, signs, lights, parked
  bicycles, walls and fences on or along the sidewalks, riders on their bicycles or motorcycles;
* the domain gap: the source is rendered like a game (saturated palette, sunlight and hard shadows, crisp
  edges, little noise), the target like a car camera on an overcast day (grey, desaturated palette, other
  textures, vignetting, blur, sensor noise); a source-only model then reaches about half of the
  target-supervised mIoU, as on GTAV -> Cityscapes.

Images are generated once per dataset object and are identical across runs and machines for a given seed:
only NumPy's ``PCG64`` generator seeded by ``(seed, domain, split, index)`` is used.
"""
from __future__ import annotations

import numpy as np

from .base import SegmentationDataset

CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
               "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
               "bicycle")
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK,
 BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)
NUM_CLASSES = len(CLASS_NAMES)

# Per-class share of labelled pixels (%), as published in m-birke/automotive-segmentation-datasets
# (cityscapes.md and playing_for_data.md, commit af5e0aef52a8823dca25b78904d23f8c19421bbc): Cityscapes fine
# annotations and GTAV ("Playing for Data"). Shares of all pixels; the 19 train classes sum to 88.4% (Cityscapes)
# and 88.8% (GTAV), the rest is void. The generator is calibrated to these shares renormalised over the 19.
CITYSCAPES_PIXEL_PERCENT = dict(zip(CLASS_NAMES, (
    32.7, 5.3, 20.1, 0.59, 0.77, 1.1243, 0.1823, 0.5015, 14.3, 0.98, 3.5, 1.1, 0.1295, 6.0, 0.2406, 0.2271, 0.1907,
    0.0848, 0.4030)))
GTAV_PIXEL_PERCENT = dict(zip(CLASS_NAMES, (
    32.1046, 8.2764, 16.9, 1.8435, 0.6331, 1.06, 0.1342, 0.0807, 7.6, 2.2, 13.5, 0.362, 0.031, 2.5154, 1.129, 0.3680,
    0.0648, 0.0315, 0.0054)))

DOMAINS = {"source": 0, "target": 1}
SPLITS = {"train": 0, "val": 1}

# Real heights (m) of what stands on the ground and the camera height; the pixel height of an object is
# height / CAMERA_HEIGHT * (row - horizon) (a pinhole camera over a flat ground plane).
CAMERA_HEIGHT = 1.3
HEIGHT_M = {PERSON: 1.7, CAR: 1.5, TRUCK: 3.2, BUS: 3.1, TRAIN: 3.4, POLE: 5.0, BICYCLE: 1.0, MOTORCYCLE: 1.1,
            RIDER: 0.8}
ASPECT = {PERSON: 0.38, CAR: 1.45, TRUCK: 1.1, BUS: 1.9, TRAIN: 2.6, BICYCLE: 1.7, MOTORCYCLE: 1.6}  # width/height

# Layout of each domain: expected counts and probabilities per image, calibrated so that the class shares of
# 600 generated 60x120 images match the published shares above (docs/benchmark-data.md shows both).
LAYOUT = {
    "target": dict(horizon=(0.38, 0.48), road_near=(0.60, 0.85), road_far=0.02, sidewalk=(0.20, 0.36),
                   terrain=0.8, terrain_width=(0.10, 0.25), facade_slope=(2.2, 5.0), facade_gap=0.10,
                   trees=5.0, tree_size=(0.16, 0.34), hedge=0.45, wall=0.45, wall_height=1.2, fence=0.55, poles=7.0, sign=0.5,
                   light=0.3, persons=7.0, bicycles=2.5, riders=0.8, moto_share=0.6, cars=6.5, truck=0.07,
                   bus=0.065, train=0.035),
    "source": dict(horizon=(0.40, 0.52), road_near=(0.60, 0.85), road_far=0.02, sidewalk=(0.35, 0.55),
                   terrain=0.8, terrain_width=(0.25, 0.50), facade_slope=(0.45, 1.3), facade_gap=0.25,
                   trees=3.0, tree_size=(0.12, 0.26), hedge=0.2, wall=1.0, wall_height=2.0, fence=0.5, poles=6.0, sign=0.1,
                   light=0.3, persons=2.6, bicycles=0.02, riders=0.25, moto_share=0.5, cars=2.8, truck=0.35,
                   bus=0.06, train=0.01),
}
# Where each kind of object stands, as a range of depth (row - horizon) / (bottom - horizon): distances are
# uniform between the two ends, so small far objects outnumber large near ones.
DEPTH = {"tree": (0.08, 1.0), "pole": (0.06, 1.0), "person": (0.05, 0.7), "parked": (0.05, 0.7),
         "rider": (0.05, 0.7), "car": (0.05, 0.9), "truck": (0.08, 0.45), "bus": (0.08, 0.45),
         "train": (0.08, 0.45)}


def _u(rng: np.random.Generator, lo_hi) -> float:
    return float(rng.uniform(*lo_hi))


class _Scene:
    """The ground-plane geometry of one image: horizon, vanishing point, road and sidewalk edges per row."""

    def __init__(self, rng: np.random.Generator, h: int, w: int, p: dict):
        self.h, self.w = h, w
        self.hz = h * _u(rng, p["horizon"])
        self.vx = w * rng.uniform(0.42, 0.58)
        self.road_far, self.road_near = p["road_far"] * w, _u(rng, p["road_near"]) * w
        self.sw_near = _u(rng, p["sidewalk"]) * w
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float64)

    def depth(self, y):
        """0 at the horizon, 1 at the bottom row."""
        return np.clip((y - self.hz) / max(self.h - self.hz, 1.0), 0.0, 1.0)

    def road_half(self, y):
        return self.road_far + (self.road_near - self.road_far) * self.depth(y)

    def sidewalk_outer(self, y):
        return self.road_half(y) + 1.0 + self.sw_near * self.depth(y)

    def ground_row(self, rng: np.random.Generator, kind: str) -> float:
        """A ground row for an object at a uniformly drawn distance (depth = nearest distance / distance)."""
        lo, hi = DEPTH[kind]
        d = rng.uniform(1.0 / hi, 1.0 / lo)          # distance in units of the bottom row's
        return self.hz + max(self.h - self.hz, 1.0) / d

    def pixel_height(self, metres: float, y: float) -> float:
        return metres / CAMERA_HEIGHT * (y - self.hz)


def generate_layout(rng: np.random.Generator, h: int, w: int, domain: str = "target"):
    """A street-scene label map (H, W) int64, an instance map and per-instance (class, colour index)."""
    p = LAYOUT[domain]
    s = _Scene(rng, h, w, p)
    yy, xx, hz, vx = s.yy, s.xx, s.hz, s.vx
    dx = np.abs(xx - vx)
    label = np.full((h, w), SKY, dtype=np.int64)
    inst = np.zeros((h, w), dtype=np.int64)
    instances: list[tuple[int, int]] = []

    # facades on both sides: tops falling towards the vanishing point, one slope per block, a few gaps of sky
    for side in (-1, 1):
        x0 = vx
        while (side > 0 and x0 < w) or (side < 0 and x0 > 0):
            x1 = x0 + side * rng.uniform(0.08, 0.25) * w
            lo, hi = sorted((x0, x1))
            if rng.uniform() >= p["facade_gap"]:
                top = hz + 1.5 - _u(rng, p["facade_slope"]) * dx
                label[(xx >= lo) & (xx < hi) & (yy >= top)] = BUILDING
            x0 = x1
    far_band = (dx <= 0.12 * w) & (yy >= hz - rng.uniform(0.5, 3.0)) & (yy <= hz + 1)
    label[far_band] = BUILDING

    # ground: road, sidewalks, terrain strips, facades down to the sidewalks
    ground = yy > hz
    road = ground & (dx <= s.road_half(yy))
    outer = s.sidewalk_outer(yy)
    walk = ground & ~road & (dx <= outer)
    label[ground & ~road & ~walk] = BUILDING
    label[walk] = SIDEWALK
    label[road] = ROAD
    for side in (-1, 1):
        if rng.uniform() < p["terrain"]:
            tw = _u(rng, p["terrain_width"]) * w * s.depth(yy)
            strip = ground & ~road & (np.sign(xx - vx) == side) & (dx > outer) & (dx <= outer + tw)
            label[strip] = TERRAIN

    # walls and fences along the outer edge of a sidewalk (or terrain), over part of its length
    for cls, prob, height_m in ((WALL, p["wall"], p["wall_height"]), (FENCE, p["fence"], 1.1)):
        if rng.uniform() < prob:
            side = rng.choice([-1, 1])
            y_lo, y_hi = sorted(rng.uniform(0.05, 1.0, size=2))
            rows = (s.depth(yy) >= y_lo) & (s.depth(yy) <= y_hi)
            base = outer + (1.0 if cls == FENCE else 2.0)
            x_edge = vx + side * base
            col = (np.abs(xx - x_edge) <= 0.7 + 0.02 * w * s.depth(yy))
            # a low band standing on the edge: pixel height from the ground row of each column
            band = np.zeros((h, w), bool)
            ys = np.where(rows.any(axis=1))[0]
            for y in ys:
                cols = np.where(col[y])[0]
                ph = max(1, int(round(s.pixel_height(height_m, y))))
                band[max(0, y - ph):y + 1, cols] = True
            label[band & (yy <= hz + (h - hz))] = cls

    # trees (crowns and trunks) standing at the sidewalks' outer edges, hedges along them
    objects = []
    for _ in range(rng.poisson(p["trees"])):
        objects.append(("tree", s.ground_row(rng, "tree"), rng.choice([-1, 1])))
    if rng.uniform() < p["hedge"]:
        side = rng.choice([-1, 1])
        for y in range(int(hz) + 1, h):
            x_edge = vx + side * (s.sidewalk_outer(y) + 1)
            ph = max(1, int(round(s.pixel_height(0.9, y))))
            x_a, x_b = sorted((x_edge, x_edge + side * 0.06 * w * s.depth(y)))
            label[max(0, y - ph):y + 1, max(0, int(x_a)):max(0, int(x_b) + 1)] = VEGETATION
    for _ in range(rng.poisson(p["poles"])):
        objects.append(("pole", s.ground_row(rng, "pole"), rng.choice([-1, 1])))
    for _ in range(rng.poisson(p["persons"])):
        objects.append(("person", s.ground_row(rng, "person"), rng.choice([-1, 1])))
    for _ in range(rng.poisson(p["bicycles"])):
        objects.append(("parked", s.ground_row(rng, "parked"), rng.choice([-1, 1])))
    for _ in range(rng.poisson(p["riders"])):
        objects.append(("rider", s.ground_row(rng, "rider"), rng.choice([-1, 1])))
    for _ in range(rng.poisson(p["cars"])):
        objects.append(("car", s.ground_row(rng, "car"), 0))
    for name in ("truck", "bus", "train"):
        if rng.uniform() < p[name]:
            objects.append((name, s.ground_row(rng, name), 0))
    objects.sort(key=lambda o: o[1])  # painter's order: far (small row) first

    def add(mask, cls, colour=None):
        if mask.any():
            instances.append((cls, int(rng.integers(0, 4)) if colour is None else colour))
            label[mask] = cls
            inst[mask] = len(instances)

    for kind, yb, side in objects:
        yb = min(yb, h - 0.5)
        if kind in ("tree", "pole", "person", "parked", "rider"):
            edge = s.sidewalk_outer(yb)
            half = s.road_half(yb)
            if kind == "tree":
                cx = vx + side * (edge + rng.uniform(-0.5, 1.5))
            elif kind == "pole":
                cx = vx + side * (edge - rng.uniform(0.3, 1.0) * (edge - half) * 0.5)
            elif kind == "rider":
                cx = vx + side * (half - rng.uniform(0.05, 0.25) * half)  # on the road, near its edge
            else:
                cx = vx + side * rng.uniform(half + 0.5, edge + 0.5)
        else:
            half = s.road_half(yb)
            cx = vx + rng.uniform(-0.85, 0.85) * half
        if kind == "tree":
            trunk_h = s.pixel_height(rng.uniform(2.0, 4.0), yb)
            r = _u(rng, p["tree_size"]) * w * (0.3 + 0.7 * s.depth(yb))
            cy = yb - trunk_h - 0.7 * r
            crown = ((xx - cx) / r) ** 2 + ((yy - cy) / (0.9 * r)) ** 2 <= 1
            trunk = (np.abs(xx - cx) <= max(0.5, 0.04 * r)) & (yy <= yb) & (yy >= cy)
            label[crown | trunk] = VEGETATION
        elif kind == "pole":
            ph = s.pixel_height(rng.uniform(3.5, 7.0), yb)
            pw = 0.5 if s.depth(yb) < 0.55 else 1.0
            pole = (np.abs(xx - cx) <= pw) & (yy <= yb) & (yy >= yb - ph)
            add(pole, POLE, 0)
            top = yb - ph
            size = max(1.0, 0.12 * ph)
            if rng.uniform() < p["sign"]:
                sy = top + size * rng.uniform(0.8, 2.0)
                sign = (np.abs(xx - cx - side * 0.5) <= size) & (np.abs(yy - sy) <= size)
                add(sign, SIGN)
            if rng.uniform() < p["light"]:
                ly = top + size * 1.6
                lamp = (np.abs(xx - cx) <= max(0.5, 0.45 * size)) & (np.abs(yy - ly) <= 1.1 * size)
                add(lamp, LIGHT)
        elif kind == "person":
            ph = s.pixel_height(HEIGHT_M[PERSON] * rng.uniform(0.9, 1.1), yb)
            pw = ASPECT[PERSON] * ph
            body = ((xx - cx) / max(pw / 2, 0.5)) ** 2 + ((yy - (yb - 0.45 * ph)) / (0.45 * ph)) ** 2 <= 1
            head = (xx - cx) ** 2 + (yy - (yb - 0.92 * ph)) ** 2 <= max(0.6, 0.09 * ph) ** 2
            add(body | head, PERSON)
        elif kind in ("parked", "rider"):
            moto = kind == "rider" and rng.uniform() < p["moto_share"]
            cls = MOTORCYCLE if moto else BICYCLE
            bh = s.pixel_height(HEIGHT_M[cls], yb)
            bw = ASPECT[cls] * bh
            wheel_r = max(0.6, 0.32 * bh)
            wheels = np.zeros((h, w), bool)
            for ox in (-0.5 * bw + wheel_r, 0.5 * bw - wheel_r):
                d = np.sqrt((xx - cx - ox) ** 2 + (yy - (yb - wheel_r)) ** 2)
                wheels |= (d <= wheel_r) & ((d >= wheel_r - max(0.7, 0.25 * wheel_r)) | moto)
            frame = (np.abs(xx - cx) <= bw / 2) & (np.abs(yy - (yb - 1.3 * wheel_r)) <= max(0.5, 0.12 * bh))
            add(wheels | frame, cls)
            if kind == "rider":
                rh = s.pixel_height(HEIGHT_M[PERSON] * 0.75, yb)
                top = yb - 1.1 * wheel_r - rh
                rider = ((xx - cx) / max(0.5, 0.2 * rh)) ** 2 + ((yy - (top + rh / 2)) / (rh / 2)) ** 2 <= 1
                add(rider, RIDER)
        else:
            cls = {"car": CAR, "truck": TRUCK, "bus": BUS, "train": TRAIN}[kind]
            vh = s.pixel_height(HEIGHT_M[cls] * rng.uniform(0.9, 1.1), yb)
            vw = min(ASPECT[cls] * vh, 2 * s.road_half(yb) + 2)
            body = (np.abs(xx - cx) <= vw / 2) & (yy <= yb) & (yy >= yb - (0.55 if cls == CAR else 1.0) * vh)
            if cls == CAR:
                body |= (np.abs(xx - cx) <= 0.32 * vw) & (yy <= yb) & (yy >= yb - vh)
            elif cls == TRUCK:
                body &= ~((xx - cx) * rng.choice([-1, 1]) > 0.2 * vw) | (yy >= yb - 0.75 * vh)
            add(body, cls)
    return label, inst, instances


# ------------------------------------------------------------------------------------------------ rendering
# Base colours (RGB in [0, 1]) per domain and class. The source is a saturated, sunny game palette; the target
# an overcast camera palette in which several classes move towards colours the source gives to others
# (sidewalk towards the source road, vegetation and terrain towards brown, the sky towards white-grey).
_PALETTE = {
    "source": np.array([
        [0.40, 0.38, 0.42], [0.78, 0.70, 0.58], [0.70, 0.52, 0.40], [0.80, 0.78, 0.70], [0.55, 0.42, 0.30],
        [0.25, 0.25, 0.27], [0.95, 0.75, 0.10], [0.95, 0.85, 0.10], [0.22, 0.62, 0.18], [0.55, 0.75, 0.30],
        [0.45, 0.68, 0.98], [0.85, 0.30, 0.30], [0.95, 0.45, 0.10], [0.75, 0.12, 0.12], [0.20, 0.30, 0.75],
        [0.95, 0.85, 0.30], [0.55, 0.60, 0.65], [0.15, 0.15, 0.75], [0.60, 0.20, 0.60]]),
    "target": np.array([
        [0.34, 0.33, 0.36], [0.42, 0.41, 0.43], [0.46, 0.45, 0.44], [0.52, 0.50, 0.47], [0.40, 0.38, 0.33],
        [0.36, 0.36, 0.38], [0.30, 0.28, 0.22], [0.70, 0.66, 0.30], [0.30, 0.36, 0.22], [0.45, 0.45, 0.30],
        [0.80, 0.82, 0.85], [0.30, 0.26, 0.30], [0.28, 0.24, 0.26], [0.30, 0.32, 0.40], [0.50, 0.50, 0.52],
        [0.55, 0.52, 0.40], [0.60, 0.55, 0.30], [0.22, 0.22, 0.26], [0.25, 0.22, 0.24]]),
}
# per-instance colours of vehicles and clothes: four variants per domain
_INSTANCE_TINT = {
    "source": np.array([[1.0, 1.0, 1.0], [0.35, 0.55, 1.25], [1.25, 1.2, 0.5], [0.5, 1.2, 0.6]]),
    "target": np.array([[1.0, 1.0, 1.0], [0.6, 0.6, 0.6], [1.6, 1.6, 1.6], [1.15, 0.95, 0.85]]),
}
# Texture per class ('smooth', 'noise' fine grain, 'blotch' coarse, 'tiles', 'windows', 'bands', 'leaves').
_TEXTURE = {
    "source": ("noise", "tiles", "windows", "smooth", "bands", "smooth", "smooth", "smooth", "leaves", "noise",
               "smooth", "smooth", "smooth", "smooth", "smooth", "windows", "windows", "smooth", "smooth"),
    "target": ("blotch", "noise", "blotch", "noise", "smooth", "smooth", "smooth", "smooth", "blotch", "blotch",
               "smooth", "noise", "noise", "smooth", "smooth", "smooth", "smooth", "smooth", "smooth"),
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


def render(rng: np.random.Generator, label: np.ndarray, inst: np.ndarray, instances: list,
           domain: str) -> np.ndarray:
    """Render a label map in ``domain`` as float32 (H, W, 3) in [0, 1]."""
    h, w = label.shape
    palette = _PALETTE[domain] * rng.uniform(0.92, 1.08, size=(NUM_CLASSES, 1))
    img = palette[label].copy()
    tints = _INSTANCE_TINT[domain]
    for i, (cls, colour) in enumerate(instances, start=1):
        if cls in (CAR, TRUCK, BUS, PERSON, RIDER, BICYCLE, MOTORCYCLE):
            where = inst == i
            img[where] = np.clip(palette[cls] * tints[colour % len(tints)], 0, 1)
    yy, xx = np.mgrid[0:h, 0:w]
    fields = {
        "smooth": np.zeros((h, w)),
        "noise": rng.normal(0.0, 1.0, size=(h, w)) * 0.8,
        "blotch": _smooth_noise(rng, h, w, max(2, w // 24)) * 1.2,
        "leaves": _smooth_noise(rng, h, w, 2) * 1.4,
        "tiles": np.where((yy % 4 == 0) | (xx % 6 == 0), -1.2, 0.3),
        "windows": np.where(((yy % 6) >= 2) & ((yy % 6) <= 3) & ((xx % 5) >= 1) & ((xx % 5) <= 2), -1.8, 0.3),
        "bands": np.where((yy // 2) % 2 == 0, -0.9, 0.6),
    }
    mod = np.zeros((h, w))
    for cls, tex in enumerate(_TEXTURE[domain]):
        mod = np.where(label == cls, fields[tex], mod)
    img = img * (1.0 + 0.18 * mod)[..., None]
    if domain == "source":
        # sunlight from one side: the facades on that side lit, the others and the ground beside them in shadow
        sun = rng.choice([-1, 1])
        vx = w / 2
        shade = np.where((np.sign(xx - vx) == -sun) & (label != SKY), 0.7, 1.08)
        img = img * shade[..., None] * rng.uniform(0.95, 1.1)
        img = img + rng.normal(0.0, 0.015, size=img.shape)
    else:
        vignette = 1.0 - 0.35 * (((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2)
        cast = np.array([0.97, 1.0, 1.05]) * rng.uniform(0.8, 1.0)
        img = img * vignette[..., None] * cast
        img = img * 0.85 + 0.15 * img.mean(axis=2, keepdims=True)  # desaturated
        img = _gaussian_blur(img, sigma=rng.uniform(0.5, 0.7))
        img = img + rng.normal(0.0, 0.03, size=img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def make_sample(seed: int, domain: str, split: str, index: int, height: int, width: int):
    """One deterministic (image float32 (H, W, 3), label int64 (H, W)) pair."""
    if domain not in DOMAINS:
        raise ValueError(f"synthetic: domain must be one of {sorted(DOMAINS)}, got {domain!r}")
    if split not in SPLITS:
        raise ValueError(f"synthetic: split must be one of {sorted(SPLITS)}, got {split!r}")
    ss = np.random.SeedSequence([int(seed), DOMAINS[domain], SPLITS[split], int(index)])
    layout_rng, render_rng = (np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(2))
    label, inst, instances = generate_layout(layout_rng, height, width, domain)
    return render(render_rng, label, inst, instances, domain), label


def class_shares(labels: np.ndarray) -> dict[str, float]:
    """Percent of pixels per class over a stack of label maps."""
    counts = np.bincount(np.asarray(labels).ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    return dict(zip(CLASS_NAMES, (100.0 * counts / max(1, counts.sum())).tolist()))


def published_shares(domain: str) -> dict[str, float]:
    """The published per-class pixel shares of the domain's model dataset, renormalised over the 19 classes."""
    table = CITYSCAPES_PIXEL_PERCENT if domain == "target" else GTAV_PIXEL_PERCENT
    total = sum(table.values())
    return {k: 100.0 * v / total for k, v in table.items()}


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

    def label_hw(self, index: int) -> tuple[int, int]:
        """(H, W) of the labels of image ``index`` (all images share one size)."""
        return tuple(self._labels.shape[1:3])
