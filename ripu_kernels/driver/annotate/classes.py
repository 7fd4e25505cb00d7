"""The classes annotators see: train ids, names and colours, plus the two entries every export declares.

* the classes ``0 .. num_classes-1`` with their names (the config's dataset) and colours: the Cityscapes
  palette for Cityscapes class names, a fixed palette (Pascal VOC's colour map) for any other name;
* ``background`` (0, 0, 0): void / not labelled (train id 255), as CVAT and datumaro treat a black
  ``background``;
* ``query`` (255, 255, 255): the queried regions in our exports; pixels still marked ``query`` in an
  annotator's file were not labelled (void).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..data.cityscapes import CLASS_NAMES_16, CLASS_NAMES_19

IGNORE_INDEX = 255
VOID_NAME, VOID_COLOR = "background", (0, 0, 0)
QUERY_NAME, QUERY_COLOR = "query", (255, 255, 255)
# names an annotator's file may use for "not labelled / void"
VOID_ALIASES = frozenset({"background", "void", "unlabeled", "unlabelled", "ignore", "ignored", "none"})

# Cityscapes' colours of its 19 evaluated classes (the official palette of cityscapesScripts' labels)
CITYSCAPES_COLORS = {
    "road": (128, 64, 128), "sidewalk": (244, 35, 232), "building": (70, 70, 70), "wall": (102, 102, 156),
    "fence": (190, 153, 153), "pole": (153, 153, 153), "traffic light": (250, 170, 30),
    "traffic sign": (220, 220, 0), "vegetation": (107, 142, 35), "terrain": (152, 251, 152),
    "sky": (70, 130, 180), "person": (220, 20, 60), "rider": (255, 0, 0), "car": (0, 0, 142),
    "truck": (0, 0, 70), "bus": (0, 60, 100), "train": (0, 80, 100), "motorcycle": (0, 0, 230),
    "bicycle": (119, 11, 32)}


def voc_color(index: int) -> tuple[int, int, int]:
    """Pascal VOC's colour of ``index`` (bit-interleaved): a fixed palette for classes of other datasets."""
    r = g = b = 0
    c = index
    for j in range(8):
        r |= ((c >> 0) & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    return (r, g, b)


def hex_color(rgb) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in rgb)


@dataclass(frozen=True)
class ClassTable:
    """Names and colours of the train ids ``0 .. len(names)-1``."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    @classmethod
    def build(cls, names) -> "ClassTable":
        names = tuple(str(n) for n in names)
        if len(set(n.lower() for n in names)) != len(names):
            raise ValueError(f"classes: class names must be unique, got {list(names)}")
        for n in names:
            if n.lower() in VOID_ALIASES or n.lower() == QUERY_NAME:
                raise ValueError(f"classes: {n!r} is reserved for void / the queried regions")
        colors, used = [], {VOID_COLOR, QUERY_COLOR}
        fallback = 1
        for n in names:
            color = CITYSCAPES_COLORS.get(n.lower())
            while color is None or color in used:
                color, fallback = voc_color(fallback), fallback + 1
            colors.append(color)
            used.add(color)
        return cls(names, tuple(colors))

    def __len__(self) -> int:
        return len(self.names)

    def to_json(self) -> list[dict]:
        return [{"id": i, "name": n, "color": list(c)} for i, (n, c) in enumerate(zip(self.names, self.colors))]

    def lookup(self) -> dict[str, int]:
        """Lower-case name -> train id; void aliases -> 255 (the query label is handled by the readers)."""
        table = {n.lower(): i for i, n in enumerate(self.names)}
        table.update({v: IGNORE_INDEX for v in VOID_ALIASES})
        return table


def class_names_for(cfg, dataset=None) -> tuple[str, ...]:
    """The class names of a config: the dataset's own, else by the config's data (synthetic, Cityscapes)."""
    n = cfg.data.num_classes
    names = tuple(getattr(dataset, "class_names", ()) or ())
    if len(names) == n:
        return names
    if cfg.data.target == "synthetic":
        from ..data.synthetic import CLASS_NAMES

        if len(CLASS_NAMES) == n:
            return tuple(CLASS_NAMES)
    if cfg.data.target == "cityscapes" and n in (16, 19):
        return CLASS_NAMES_19 if n == 19 else CLASS_NAMES_16
    return tuple(f"class_{i}" for i in range(n))
