"""Drawing one procedural pedestrian: who a person is, and how they look from one side.

Identity lives in the spatial layout of a few shared colours (which colour is on
top, the pattern, where the bag hangs), not in the colours themselves: the
palette is small, many people share each colour, and some people are palette
swaps of each other. A colour histogram cannot tell such people apart; a
network that looks at where colours are can.

Everything here draws at the caller's render size with PIL `ImageDraw` and is
a pure function of its arguments, so the generator stays deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

# Deliberately few, saturated-but-ordinary clothing colours so that colour alone
# identifies a colour class, never a person.
PALETTE: dict[str, RGB] = {
    "black": (28, 28, 32),
    "white": (232, 232, 226),
    "grey": (128, 128, 128),
    "red": (196, 32, 38),
    "blue": (36, 72, 188),
    "green": (42, 138, 62),
    "yellow": (228, 198, 42),
    "orange": (232, 118, 32),
    "purple": (118, 52, 148),
    "pink": (232, 132, 168),
    "brown": (108, 70, 42),
    "beige": (198, 178, 138),
}
_COLOURS: list[RGB] = list(PALETTE.values())
SKIN_TONES: list[RGB] = [
    (238, 204, 178),
    (222, 178, 144),
    (192, 144, 104),
    (148, 100, 70),
    (98, 66, 46),
]
HAIR_COLOURS: list[RGB] = [
    (22, 20, 20),
    (58, 40, 26),
    (108, 74, 40),
    (196, 166, 98),
    (150, 148, 146),
]
PATTERNS = ("solid", "hstripes", "vstripes", "checks", "split", "block", "logo")
BOTTOMS = ("trousers", "shorts", "skirt")
VIEWS = ("front", "back", "side")


@dataclass(frozen=True)
class Identity:
    """What stays the same about a person across cameras.

    Lengths are fractions of the person's height so one identity can be drawn
    at any scale.
    """

    height: float
    shoulder: float
    head: float
    leg: float
    skin: RGB
    hair: RGB
    long_hair: bool
    top: RGB
    top2: RGB
    pattern: str
    stripe: float
    long_sleeves: bool
    bottom: RGB
    bottom_type: str
    shoes: RGB
    backpack: RGB | None
    bag: RGB | None
    bag_left: bool
    hat: RGB | None
    scarf: RGB | None


def _pick(rng: np.random.Generator, items: list[RGB]) -> RGB:
    return items[int(rng.integers(len(items)))]


def _maybe(rng: np.random.Generator, p: float) -> RGB | None:
    return _pick(rng, _COLOURS) if rng.random() < p else None


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random person; all draws happen in a fixed order so one seed is one person."""
    top, top2, bottom = (_COLOURS[i] for i in rng.choice(len(_COLOURS), 3, replace=False))
    return Identity(
        height=float(rng.uniform(0.86, 1.0)),
        shoulder=float(rng.uniform(0.10, 0.145)),
        head=float(rng.uniform(0.058, 0.078)),
        leg=float(rng.uniform(0.42, 0.52)),
        skin=_pick(rng, SKIN_TONES),
        hair=_pick(rng, HAIR_COLOURS),
        long_hair=bool(rng.random() < 0.35),
        top=top,
        top2=top2,
        pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
        stripe=float(rng.uniform(0.06, 0.10)),
        long_sleeves=bool(rng.random() < 0.5),
        bottom=bottom,
        bottom_type=BOTTOMS[int(rng.choice(3, p=[0.6, 0.25, 0.15]))],
        shoes=_pick(rng, _COLOURS[:3] + _COLOURS[-2:]),
        backpack=_maybe(rng, 0.35),
        bag=_maybe(rng, 0.25),
        bag_left=bool(rng.random() < 0.5),
        hat=_maybe(rng, 0.15),
        scarf=_maybe(rng, 0.15),
    )


def palette_swap(person: Identity) -> Identity:
    """The same outfit with top and bottom colours exchanged: same histogram, other person."""
    return replace(person, top=person.bottom, bottom=person.top)


@dataclass(frozen=True)
class Pose:
    """Per-image placement and walking phase, in render pixels."""

    view: str
    facing: int  # +1 faces right, -1 faces left (side view and mirrored front/back)
    cx: float
    feet_y: float
    size: float  # person height in pixels
    phase: float  # walking phase in radians


def _limb(
    draw: ImageDraw.ImageDraw,
    a: tuple[float, float],
    b: tuple[float, float],
    wa: float,
    wb: float,
    colour: RGB,
) -> None:
    """A tapered quadrilateral from a to b, the building block of arms and legs."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy) or 1.0
    px, py = -dy / n, dx / n
    draw.polygon(
        [
            (a[0] + px * wa / 2, a[1] + py * wa / 2),
            (b[0] + px * wb / 2, b[1] + py * wb / 2),
            (b[0] - px * wb / 2, b[1] - py * wb / 2),
            (a[0] - px * wa / 2, a[1] - py * wa / 2),
        ],
        fill=colour,
    )


def _ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, c: RGB):
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=c)


def _pattern(person: Identity, view: str, w: int, h: int, size: float, mirror: bool) -> np.ndarray:
    """The torso texture in a (h, w) box; back views hide the logo and mirror the split."""
    yy, xx = np.mgrid[0:h, 0:w]
    period = max(2.0, person.stripe * size)
    a, b = np.array(person.top, np.uint8), np.array(person.top2, np.uint8)
    p = person.pattern
    if p == "hstripes":
        second = (yy // (period / 2)).astype(int) % 2 == 1
    elif p == "vstripes":
        second = (xx // (period / 2)).astype(int) % 2 == 1
    elif p == "checks":
        second = ((yy // (period / 2)).astype(int) + (xx // (period / 2)).astype(int)) % 2 == 1
    elif p == "split":
        second = (xx >= w / 2) if not mirror else (xx < w / 2)
        if view == "side":
            second = np.zeros_like(second) if mirror else np.ones_like(second)
    elif p == "block":
        second = yy >= h * 0.45
    elif p == "logo" and view == "front":
        second = (np.abs(xx - w / 2) < w * 0.22) & (np.abs(yy - h * 0.33) < h * 0.16)
    else:
        second = np.zeros((h, w), bool)
    return np.where(second[..., None], b, a)


def _torso(
    canvas: Image.Image, person: Identity, view: str, poly: list[tuple[float, float]], size: float
):
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    x0, y0 = int(math.floor(min(xs))), int(math.floor(min(ys)))
    x1, y1 = int(math.ceil(max(xs))) + 1, int(math.ceil(max(ys))) + 1
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        return
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in poly], fill=255)
    tex = Image.fromarray(_pattern(person, view, w, h, size, mirror=view == "back"))
    canvas.paste(tex, (x0, y0), mask)


def draw_person(canvas: Image.Image, person: Identity, pose: Pose) -> None:
    """Draw `person` onto `canvas` (RGB, render resolution) in place."""
    draw = ImageDraw.Draw(canvas)
    s, cx, feet = pose.size, pose.cx, pose.feet_y
    top_y = feet - s
    hr = person.head * s
    head_cy = top_y + hr
    neck_y = top_y + 2 * hr
    sh_y = neck_y + 0.025 * s
    hip_y = feet - person.leg * s
    side = pose.view == "side"
    sw = person.shoulder * s * (0.6 if side else 1.0)
    hw = sw * 0.82
    f = pose.facing
    swing = math.sin(pose.phase)
    ankle_y = feet - 0.03 * s

    # Legs: in side view they swing along the walking direction, otherwise barely.
    if side:
        lx = [cx + swing * 0.16 * s, cx - swing * 0.16 * s]
        hips = [cx, cx]
    else:
        lx = [cx - hw * 0.5 - 0.01 * s * swing, cx + hw * 0.5 + 0.01 * s * swing]
        hips = [cx - hw * 0.5, cx + hw * 0.5]
    leg_w, ankle_w = 0.085 * s, 0.055 * s
    knee_frac = {"trousers": 1.0, "shorts": 0.42, "skirt": 0.0}[person.bottom_type]
    for hx, fx in zip(hips, lx, strict=True):
        _limb(draw, (hx, hip_y), (fx, ankle_y), leg_w, ankle_w, person.skin)
        if knee_frac > 0:
            kx, ky = hx + (fx - hx) * knee_frac, hip_y + (ankle_y - hip_y) * knee_frac
            wk = leg_w + (ankle_w - leg_w) * knee_frac
            _limb(draw, (hx, hip_y - 0.02 * s), (kx, ky), leg_w * 1.08, wk * 1.08, person.bottom)
        shoe_dx = 0.04 * s * f if side else 0.0
        _ellipse(
            draw,
            fx + shoe_dx,
            feet - 0.015 * s,
            0.055 * s if side else 0.038 * s,
            0.02 * s,
            person.shoes,
        )
    if person.bottom_type == "skirt":
        sk_y = hip_y + (feet - hip_y) * 0.5
        draw.polygon(
            [(cx - hw, hip_y - 0.02 * s), (cx + hw, hip_y - 0.02 * s),
             (cx + hw * 1.55, sk_y), (cx - hw * 1.55, sk_y)],
            fill=person.bottom,
        )  # fmt: skip

    arm_len, arm_w = 0.36 * s, 0.055 * s
    sleeve_frac = 1.0 if person.long_sleeves else 0.4
    sh_x = [cx - sw + 0.02 * s, cx + sw - 0.02 * s]

    def arm(x: float, hand: tuple[float, float]) -> None:
        a = (x, sh_y + 0.02 * s)
        _limb(draw, a, hand, arm_w, arm_w * 0.8, person.skin)
        e = (a[0] + (hand[0] - a[0]) * sleeve_frac, a[1] + (hand[1] - a[1]) * sleeve_frac)
        _limb(draw, a, e, arm_w * 1.1, arm_w * 0.95, person.top)
        _ellipse(draw, hand[0], hand[1], arm_w * 0.45, arm_w * 0.5, person.skin)

    if side:
        back_x = cx - f * sw
        if person.backpack is not None:
            bx = back_x - f * 0.1 * s
            draw.rounded_rectangle(
                [min(bx, back_x), sh_y + 0.02 * s, max(bx, back_x) + 1, hip_y - 0.05 * s],
                radius=0.02 * s,
                fill=person.backpack,
            )
        arm(cx, (cx - swing * 0.14 * s, sh_y + arm_len * 0.97))  # far arm, behind the torso
    else:
        for i, x in enumerate(sh_x):
            out = (1 if i else -1) * 0.025 * s
            arm(x, (x + out, sh_y + arm_len + (0.01 * s * swing * (1 if i else -1))))

    torso = [
        (cx - sw, sh_y),
        (cx + sw, sh_y),
        (cx + hw, hip_y + 0.03 * s),
        (cx - hw, hip_y + 0.03 * s),
    ]
    _torso(canvas, person, pose.view, torso, s)

    if side:
        arm(cx, (cx + swing * 0.14 * s, sh_y + arm_len * 0.97))
    elif pose.view == "front" and person.backpack is not None:
        for x in sh_x:
            draw.line(
                [(x, sh_y), (x, sh_y + 0.16 * s)],
                fill=person.backpack,
                width=max(1, int(0.022 * s)),
            )
    elif pose.view == "back" and person.backpack is not None:
        draw.rounded_rectangle(
            [cx - 0.8 * sw, sh_y + 0.03 * s, cx + 0.8 * sw, hip_y - 0.03 * s],
            radius=0.03 * s,
            fill=person.backpack,
        )

    if person.bag is not None:
        # The bag hangs on the wearer's left or right: mirrored between front and back.
        left = person.bag_left != (pose.view == "back")
        hang = -1 if left else 1
        if side:
            bx = cx + 0.01 * s * f
        else:
            bx = cx + hang * (hw + 0.03 * s)
            other = cx - hang * (sw - 0.03 * s)
            draw.line(
                [(other, sh_y), (bx, hip_y - 0.02 * s)],
                fill=person.bag,
                width=max(1, int(0.016 * s)),
            )
        draw.rectangle(
            [bx - 0.055 * s, hip_y - 0.04 * s, bx + 0.055 * s, hip_y + 0.05 * s], fill=person.bag
        )

    # Head and hair.
    if person.long_hair and pose.view == "front":
        draw.rectangle([cx - hr * 1.05, head_cy, cx + hr * 1.05, sh_y + 0.05 * s], fill=person.hair)
    draw.rectangle([cx - hr * 0.35, head_cy, cx + hr * 0.35, sh_y + 0.01 * s], fill=person.skin)
    if pose.view == "back":
        _ellipse(draw, cx, head_cy, hr * 0.9, hr, person.hair)
        if person.long_hair:
            draw.rectangle(
                [cx - hr * 0.95, head_cy, cx + hr * 0.95, sh_y + 0.07 * s], fill=person.hair
            )
    else:
        _ellipse(draw, cx, head_cy, hr * 0.92 if not side else hr * 0.85, hr * 1.02, person.hair)
        fx = cx + (f * 0.2 * hr if side else 0.0)
        _ellipse(draw, fx, head_cy + hr * 0.22, hr * 0.75, hr * 0.8, person.skin)
        if side and person.long_hair:
            draw.rectangle(
                [min(cx, cx - f * hr * 0.9), head_cy, max(cx, cx - f * hr * 0.9), sh_y + 0.05 * s],
                fill=person.hair,
            )
    if person.hat is not None:
        draw.rectangle(
            [cx - hr * 0.95, top_y - hr * 0.1, cx + hr * 0.95, top_y + hr * 0.7], fill=person.hat
        )
        brim = hr * 0.5 * (f if side else 0)
        draw.rectangle(
            [
                cx - hr * 1.1 + min(brim, 0),
                top_y + hr * 0.55,
                cx + hr * 1.1 + max(brim, 0),
                top_y + hr * 0.75,
            ],
            fill=person.hat,
        )
    if person.scarf is not None:
        draw.rectangle(
            [cx - sw * 0.55, neck_y - 0.005 * s, cx + sw * 0.55, sh_y + 0.04 * s], fill=person.scarf
        )
