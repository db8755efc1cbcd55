"""The world's 48 object classes: each a procedurally drawn *family*.

A family draws a fresh member per call from ``rng``: proportions, optional parts, pose and stroke vary,
so a class is a distribution of drawings rather than one glyph (a model has to learn the concept, not
memorise a template). Drawings are in object units (see :mod:`shared.world.geometry`) and are
normalised by :func:`~shared.world.geometry.fit`, so the scene alone decides the on-canvas size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shared.world.geometry import Part, arc, ellipse, fit, limb, line, polygon, rect, regular, star

Family = Callable[[np.random.Generator], list[Part]]
FAMILIES: dict[str, Family] = {}


def family(name: str) -> Callable[[Family], Family]:
    def register(fn: Family) -> Family:
        FAMILIES[name] = fn
        return fn

    return register


# ---------------------------------------------------------------- simple shapes
@family("circle")
def _circle(r):
    return [ellipse(0, 0, 1, r.uniform(0.85, 1.15))]


@family("square")
def _square(r):
    a = r.uniform(0.85, 1.15)
    return [rect(-a, -1, a, 1)]


@family("triangle")
def _triangle(r):
    j = r.uniform(-0.15, 0.15, 6)
    return [polygon([(r.uniform(-0.4, 0.4) + j[0], -1 + j[1]), (1 + j[2], 0.8 + j[3]), (-1 + j[4], 0.8 + j[5])])]


@family("star")
def _star(r):
    return [star(0, 0, 1, r.uniform(0.35, 0.55), int(r.choice([5, 5, 6])))]


@family("heart")
def _heart(r):
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3 * r.uniform(0.85, 1.2)
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return [polygon(np.stack([x, y], 1))]


@family("crescent")
def _crescent(r):
    d = r.uniform(0.5, 0.9)
    th0 = np.arccos(d / 2)
    outer = np.linspace(th0, 2 * np.pi - th0, 24)
    inner = np.linspace(np.pi + th0, np.pi - th0, 24)
    pts = np.concatenate([np.stack([np.cos(outer), np.sin(outer)], 1), np.stack([d + np.cos(inner), np.sin(inner)], 1)])
    return [polygon(pts)]


@family("cross")
def _cross(r):
    w, b = r.uniform(0.22, 0.38), r.uniform(-0.3, 0.0)
    return [rect(-w, -1, w, 1), rect(-0.8, b - w, 0.8, b + w)]


@family("arrow")
def _arrow(r):
    w, hx, hw = r.uniform(0.12, 0.25), r.uniform(0.1, 0.45), r.uniform(0.45, 0.7)
    return [rect(-1, -w, hx, w), polygon([(hx - 0.05, -hw), (1, 0), (hx - 0.05, hw)])]


@family("diamond")
def _diamond(r):
    w = r.uniform(0.5, 0.75)
    return [polygon([(0, -1), (w, r.uniform(-0.15, 0.1)), (0, 1), (-w, r.uniform(-0.15, 0.1))])]


@family("hexagon")
def _hexagon(r):
    return [regular(0, 0, 1, 6, rot=r.choice([0, np.pi / 6]))]


@family("lightning")
def _lightning(r):
    j = r.uniform(-0.1, 0.1, (6, 2))
    pts = np.array([(0.3, -1), (-0.45, 0.1), (0.0, 0.1), (-0.3, 1), (0.5, -0.2), (0.05, -0.2)]) + j
    return [polygon(pts)]


@family("cloud")
def _cloud(r):
    n = int(r.integers(3, 6))
    xs = np.linspace(-0.8, 0.8, n)
    puffs = [ellipse(x, -r.uniform(0.1, 0.4), r.uniform(0.3, 0.45), r.uniform(0.3, 0.45)) for x in xs]
    return [ellipse(0, 0.1, 1, r.uniform(0.3, 0.4)), *puffs]


@family("droplet")
def _droplet(r):
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    p = r.uniform(0.6, 1.4)
    return [polygon(np.stack([0.7 * np.sin(t) * np.abs(np.sin(t / 2)) ** p, -np.cos(t)], 1))]


# ---------------------------------------------------------------- composite objects
@family("house")
def _house(r):
    w, h, rh = r.uniform(0.6, 1.0), r.uniform(0.5, 0.9), r.uniform(0.4, 0.8)
    parts = [rect(-w, 0, w, h)]
    if r.random() < 0.5:
        parts.insert(0, rect(w * 0.45, -rh * 0.8, w * 0.65, 0.0, "dark"))  # chimney
    over = r.uniform(0.0, 0.15)
    parts.append(polygon([(-w - over, 0), (0, -rh), (w + over, 0)], "accent"))
    dx = r.uniform(-0.4, 0.4) * w
    parts.append(rect(dx - 0.15, h * 0.4, dx + 0.15, h, "dark"))
    for x in (-w * 0.65, w * 0.65)[: int(r.integers(1, 3))]:
        if abs(x - dx) > 0.35:
            parts.append(rect(x - 0.13, h * 0.2, x + 0.13, h * 0.45, "light"))
    return parts


@family("tree")
def _tree(r):
    tw, th = r.uniform(0.1, 0.2), r.uniform(0.4, 0.8)
    parts = [rect(-tw, 0.2, tw, 0.2 + th, "dark")]
    kind = r.integers(3)
    if kind == 0:  # round crown
        parts.append(ellipse(0, -0.3, r.uniform(0.5, 0.8), r.uniform(0.5, 0.7)))
    elif kind == 1:  # pine: stacked triangles
        for i, y in enumerate(np.linspace(-0.9, 0.0, int(r.integers(2, 4)))):
            w = 0.35 + 0.2 * i
            parts.append(polygon([(-w, y + 0.45), (0, y - 0.3), (w, y + 0.45)]))
    else:  # clustered crown
        for _ in range(int(r.integers(3, 6))):
            parts.append(
                ellipse(r.uniform(-0.45, 0.45), r.uniform(-0.6, 0.0), r.uniform(0.3, 0.45), r.uniform(0.3, 0.4))
            )
    return parts


@family("fish")
def _fish(r):
    bl, bh = r.uniform(0.7, 1.0), r.uniform(0.3, 0.55)
    tail = r.uniform(0.3, 0.5)
    return [
        polygon(
            [(bl * 0.8, 0), (bl + tail, -tail * r.uniform(0.7, 1.1)), (bl + tail * 0.8, 0), (bl + tail, tail)], "accent"
        ),
        polygon([(0, -bh), (0.35, -bh - r.uniform(0.15, 0.35)), (0.6, -bh * 0.6)], "accent"),
        ellipse(0, 0, bl, bh),
        ellipse(-bl * 0.6, -bh * 0.2, 0.08, 0.08, "dark"),
        arc(-bl * 0.2, 0, 0.25, bh * 0.7, -1.2, 1.2, 0.04),
    ]


@family("car")
def _car(r):
    L, H, ch = r.uniform(0.9, 1.0), r.uniform(0.25, 0.4), r.uniform(0.25, 0.4)
    c0, c1 = r.uniform(-0.6, -0.3), r.uniform(0.2, 0.5)
    wr = r.uniform(0.17, 0.25)
    return [
        polygon([(c0, 0), (c0 + 0.2, -ch), (c1 - 0.1, -ch), (c1 + 0.15, 0)], "accent"),
        polygon([(c0 + 0.12, -0.03), (c0 + 0.25, -ch + 0.08), (c1 - 0.13, -ch + 0.08), (c1 + 0.03, -0.03)], "light"),
        rect(-L, 0, L, H),
        ellipse(-L * 0.55, H, wr, wr, "dark"),
        ellipse(L * 0.55, H, wr, wr, "dark"),
        ellipse(L - 0.06, H * 0.35, 0.06, 0.05, "light"),
    ]


@family("cup")
def _cup(r):
    tw, bw, h = r.uniform(0.5, 0.7), r.uniform(0.35, 0.6), r.uniform(0.7, 1.0)
    parts = [arc(tw * 0.9, 0, r.uniform(0.25, 0.4), h * 0.3, -np.pi / 2, np.pi / 2, r.uniform(0.08, 0.14), "main")]
    parts.append(polygon([(-tw, -h / 2), (tw, -h / 2), (bw, h / 2), (-bw, h / 2)]))
    parts.append(ellipse(0, -h / 2, tw, 0.08, "dark"))
    if r.random() < 0.5:
        parts.append(ellipse(0, h / 2 + 0.05, tw + 0.3, 0.1, "accent"))  # saucer
    return parts


@family("key")
def _key(r):
    hr, sl, sw = r.uniform(0.3, 0.45), r.uniform(1.0, 1.4), r.uniform(0.08, 0.14)
    parts = [ellipse(-1 + hr, 0, hr, hr * r.uniform(0.9, 1.1)), ellipse(-1 + hr, 0, hr * 0.45, hr * 0.45, "light")]
    x0 = -1 + 2 * hr - 0.05
    parts.append(rect(x0, -sw, x0 + sl, sw))
    for i in range(int(r.integers(2, 4))):
        x = x0 + sl - 0.12 - i * r.uniform(0.18, 0.25)
        parts.append(rect(x - 0.06, sw, x + 0.06, sw + r.uniform(0.12, 0.28)))
    return parts


@family("umbrella")
def _umbrella(r):
    w, h = 1.0, r.uniform(0.5, 0.8)
    n = int(r.integers(3, 6))
    t = np.linspace(np.pi, 2 * np.pi, 30)
    top = np.stack([w * np.cos(t), h * np.sin(t)], 1)
    xs = np.linspace(w, -w, n + 1)
    scallop = [(x, 0.12 * (i % 2)) for i, x in enumerate(np.linspace(w, -w, 2 * n + 1))]
    shaft_len = r.uniform(0.8, 1.1)
    return [
        polygon(np.concatenate([top, np.array(scallop)])),
        *[line([(x, 0.05), (0, -h)], 0.03, "dark") for x in xs[1:-1]],
        line([(0, -h), (0, shaft_len)], r.uniform(0.05, 0.09), "dark"),
        arc(-0.15, shaft_len, 0.15, 0.15, 0, np.pi, 0.07),
    ]


@family("flower")
def _flower(r):
    n, pl, pw = int(r.integers(5, 9)), r.uniform(0.35, 0.5), r.uniform(0.14, 0.25)
    parts = [limb((0, 0.0), (r.uniform(-0.15, 0.15), 1.3), 0.08, role="dark")]
    if r.random() < 0.7:
        parts.append(ellipse(0.22, 0.8, 0.22, 0.09, "dark", rot=-0.6))
    rot = r.uniform(0, np.pi)
    for k in range(n):
        a = rot + 2 * np.pi * k / n
        parts.append(ellipse(np.cos(a) * pl, np.sin(a) * pl, pl, pw, rot=-a))
    parts.append(ellipse(0, 0, r.uniform(0.18, 0.28), r.uniform(0.18, 0.28), "accent"))
    return parts


@family("boat")
def _boat(r):
    L, hd, mh = 1.0, r.uniform(0.25, 0.4), r.uniform(0.9, 1.4)
    mx = r.uniform(-0.15, 0.15)
    parts = [
        line([(mx, 0), (mx, -mh)], 0.05, "dark"),
        polygon([(mx + 0.05, -mh), (mx + 0.05, -0.1), (mx + r.uniform(0.5, 0.9), -0.1)], "light"),
    ]
    if r.random() < 0.6:
        parts.append(polygon([(mx - 0.05, -mh * 0.85), (mx - 0.05, -0.1), (mx - r.uniform(0.4, 0.7), -0.1)], "light"))
    parts.append(polygon([(-L, 0), (L, 0), (L * r.uniform(0.55, 0.75), hd), (-L * r.uniform(0.55, 0.75), hd)]))
    return parts


@family("bird")
def _bird(r):
    bl, bh, hr = r.uniform(0.5, 0.7), r.uniform(0.3, 0.4), r.uniform(0.2, 0.28)
    wing_up = r.random() < 0.5
    wing = [(-0.2, -0.05), (0.35, -0.05), (0.1, -0.75 if wing_up else 0.2)]
    return [
        line([(-0.05, bh * 0.8), (-0.1, bh + 0.35)], 0.04),
        line([(0.15, bh * 0.8), (0.15, bh + 0.35)], 0.04),
        polygon([(bl * 0.8, -0.05), (bl + 0.45, -0.2 - r.uniform(0, 0.2)), (bl + 0.45, 0.15)], "dark"),
        ellipse(0, 0, bl, bh),
        ellipse(-bl - hr * 0.3, -bh - hr * 0.2, hr, hr),
        polygon(
            [
                (-bl - hr * 1.1, -bh - hr * 0.35),
                (-bl - hr * 1.1 - r.uniform(0.2, 0.35), -bh - hr * 0.1),
                (-bl - hr * 1.1, -bh + hr * 0.1),
            ],
            "accent",
        ),
        ellipse(-bl - hr * 0.55, -bh - hr * 0.35, 0.05, 0.05, "dark"),
        polygon(wing, "dark"),
    ]


@family("person")
def _person(r):
    hr, bw, bh, leg = r.uniform(0.17, 0.24), r.uniform(0.18, 0.3), r.uniform(0.5, 0.7), r.uniform(0.6, 0.8)
    top = -0.9 + 2 * hr
    a1, a2 = r.uniform(-0.5, 1.6, 2)
    sh = top + 0.1
    arm = r.uniform(0.45, 0.6)
    hip = top + bh
    spread = r.uniform(0.05, 0.3)
    return [
        limb((-bw * 0.7, hip), (-bw * 0.7 - spread, hip + leg), 0.13, role="dark"),
        limb((bw * 0.7, hip), (bw * 0.7 + spread, hip + leg), 0.13, role="dark"),
        limb((-bw, sh), (-bw - arm * np.cos(a1 - 0.5), sh + arm * np.sin(1.1 - a1)), 0.1, role="accent"),
        limb((bw, sh), (bw + arm * np.cos(a2 - 0.5), sh + arm * np.sin(1.1 - a2)), 0.1, role="accent"),
        polygon([(-bw, top), (bw, top), (bw * 1.1, hip), (-bw * 1.1, hip)]),
        ellipse(0, -0.9 + hr, hr, hr * 1.1, "light"),
    ]


@family("guitar")
def _guitar(r):
    lb, ub, nl = r.uniform(0.4, 0.5), r.uniform(0.28, 0.36), r.uniform(0.9, 1.2)
    yl, yu = 0.6, 0.6 - lb - ub * 0.6
    return [
        rect(-0.06, yu - ub - nl, 0.06, yu, "dark"),
        rect(-0.11, yu - ub - nl - 0.25, 0.11, yu - ub - nl, "dark"),
        ellipse(0, yl, lb, lb * r.uniform(0.9, 1.1)),
        ellipse(0, yu, ub, ub * r.uniform(0.9, 1.1)),
        ellipse(0, (yl + yu) / 2 + 0.05, 0.12, 0.12, "dark"),
        rect(-0.15, yl + lb * 0.4, 0.15, yl + lb * 0.5, "accent"),
    ]


def _quadruped(r, body, leg_len, leg_w, neck, head, tail, extra=()):
    """A side-view four-legged animal: the shared skeleton of dog, horse, elephant and giraffe, with
    each species passing the proportions that make it recognisable."""
    bx, bh = body
    spread = r.uniform(0.0, 0.15)
    legs = [
        limb((x, 0.0), (x + spread * s, bh + leg_len), leg_w, role="dark" if i % 2 else "main")
        for i, (x, s) in enumerate([(-bx * 0.7, -1), (-bx * 0.55, 1), (bx * 0.55, -1), (bx * 0.7, 1)])
    ]
    return [*legs, tail, ellipse(0, 0, bx, bh), *neck, *head, *extra]


@family("dog")
def _dog(r):
    bx, bh = r.uniform(0.55, 0.7), r.uniform(0.22, 0.3)
    hx, hy, hr = -bx - 0.1, -bh - r.uniform(0.1, 0.25), r.uniform(0.2, 0.26)
    return _quadruped(
        r,
        (bx, bh),
        r.uniform(0.3, 0.45),
        0.12,
        neck=[limb((-bx * 0.7, -0.05), (hx, hy), 0.2)],
        head=[
            ellipse(hx, hy, hr, hr * 0.9),
            ellipse(hx - hr * 0.9, hy + hr * 0.3, hr * 0.6, hr * 0.4),
            ellipse(hx + hr * 0.3, hy + hr * 0.3, hr * 0.35, hr * 0.75, "dark", rot=0.3),
            ellipse(hx - hr * 1.45, hy + hr * 0.15, 0.06, 0.06, "dark"),
        ],
        tail=limb((bx * 0.9, -bh * 0.3), (bx + 0.3, -bh - r.uniform(0.2, 0.45)), 0.07),
    )


@family("horse")
def _horse(r):
    bx, bh = r.uniform(0.6, 0.72), r.uniform(0.22, 0.28)
    nx, ny = -bx - r.uniform(0.05, 0.2), -bh - r.uniform(0.45, 0.6)
    return _quadruped(
        r,
        (bx, bh),
        r.uniform(0.6, 0.8),
        0.1,
        neck=[
            limb((-bx * 0.6, -0.05), (nx, ny), 0.3, 0.18),
            limb((-bx * 0.45, -bh * 0.6), (nx + 0.08, ny - 0.02), 0.07, role="dark"),
        ],
        head=[
            limb((nx, ny), (nx - r.uniform(0.35, 0.45), ny + r.uniform(0.2, 0.3)), 0.2, 0.13),
            polygon([(nx + 0.02, ny - 0.05), (nx + 0.08, ny - 0.22), (nx + 0.1, ny)], "dark"),
        ],
        tail=limb((bx * 0.95, -bh * 0.4), (bx + 0.15, bh + r.uniform(0.3, 0.5)), 0.1, 0.05, role="dark"),
    )


@family("elephant")
def _elephant(r):
    bx, bh = r.uniform(0.6, 0.7), r.uniform(0.38, 0.45)
    hx, hy, hr = -bx - 0.05, -bh * 0.4, r.uniform(0.3, 0.36)
    tc = r.uniform(0.1, 0.4)
    trunk = line(
        [
            (hx - hr * 0.7, hy + 0.05),
            (hx - hr * 1.1, hy + 0.4),
            (hx - hr * 1.1 - tc * 0.5, hy + 0.75),
            (hx - hr * 1.1 - tc, hy + 0.8),
        ],
        0.14,
        "main",
    )
    return _quadruped(
        r,
        (bx, bh),
        r.uniform(0.3, 0.4),
        0.24,
        neck=[],
        head=[
            ellipse(hx, hy, hr, hr),
            trunk,
            ellipse(hx + hr * 0.5, hy + 0.05, hr * 0.75, hr * r.uniform(0.9, 1.2), "dark"),
        ],
        tail=line([(bx * 0.95, -bh * 0.3), (bx + 0.15, bh * 0.6)], 0.04),
        extra=[ellipse(hx - hr * 0.3, hy - hr * 0.3, 0.05, 0.05, "light")],
    )


@family("giraffe")
def _giraffe(r):
    bx, bh = r.uniform(0.4, 0.5), r.uniform(0.18, 0.24)
    nx, ny = -bx - r.uniform(0.05, 0.25), -bh - r.uniform(0.9, 1.2)
    spots = [
        ellipse(r.uniform(-bx * 0.7, bx * 0.7), r.uniform(-bh * 0.6, bh * 0.6), 0.07, 0.06, "dark")
        for _ in range(int(r.integers(3, 7)))
    ]
    spots += [ellipse(-bx * 0.6 + t * (nx + bx * 0.6), -bh + t * (ny + bh), 0.05, 0.05, "dark") for t in (0.3, 0.6)]
    return _quadruped(
        r,
        (bx, bh),
        r.uniform(0.7, 0.9),
        0.08,
        neck=[limb((-bx * 0.6, -0.05), (nx, ny), 0.2, 0.12)],
        head=[
            limb((nx, ny), (nx - 0.3, ny + 0.12), 0.16, 0.1),
            line([(nx + 0.02, ny - 0.05), (nx + 0.04, ny - 0.2)], 0.04),
        ],
        tail=line([(bx * 0.95, -bh * 0.3), (bx + 0.1, bh + 0.3)], 0.03),
        extra=spots,
    )


@family("sun")
def _sun(r):
    n, cr, rl = int(r.integers(7, 13)), r.uniform(0.45, 0.6), r.uniform(0.2, 0.4)
    rot, w = r.uniform(0, np.pi), r.uniform(0.06, 0.12)
    rays = [
        limb(
            (np.cos(a) * (cr + 0.08), np.sin(a) * (cr + 0.08)),
            (np.cos(a) * (cr + 0.08 + rl), np.sin(a) * (cr + 0.08 + rl)),
            w,
            role="accent",
        )
        for a in rot + 2 * np.pi * np.arange(n) / n
    ]
    return [*rays, ellipse(0, 0, cr, cr)]


@family("apple")
def _apple(r):
    w = r.uniform(0.4, 0.55)
    return [
        limb((0, -0.5), (r.uniform(0.0, 0.15), -0.95), 0.07, role="dark"),
        ellipse(0.22, -0.75, 0.22, 0.09, "accent", rot=-0.4)
        if r.random() < 0.7
        else ellipse(0, -0.5, 0.03, 0.03, "dark"),
        ellipse(-w * 0.55, 0, w, 0.6),
        ellipse(w * 0.55, 0, w, 0.6),
        ellipse(0, -0.52, 0.12, 0.05, "dark"),
    ]


@family("mushroom")
def _mushroom(r):
    cw, ch, sw = r.uniform(0.8, 1.0), r.uniform(0.45, 0.7), r.uniform(0.18, 0.3)
    t = np.linspace(np.pi, 2 * np.pi, 30)
    cap = polygon(np.stack([cw * np.cos(t), ch * np.sin(t)], 1))
    spots = [
        ellipse(r.uniform(-cw * 0.5, cw * 0.5), -r.uniform(0.15, ch * 0.7), 0.09, 0.07, "light")
        for _ in range(int(r.integers(0, 5)))
    ]
    return [polygon([(-sw, 0), (sw, 0), (sw * 1.2, 0.8), (-sw * 1.2, 0.8)], "light"), cap, *spots]


@family("bottle")
def _bottle(r):
    bw, nw, sh = r.uniform(0.3, 0.45), r.uniform(0.1, 0.16), r.uniform(-0.3, 0.0)
    return [
        polygon([(-bw, 1), (bw, 1), (bw, sh), (nw, sh - 0.3), (nw, -0.85), (-nw, -0.85), (-nw, sh - 0.3), (-bw, sh)]),
        rect(-nw - 0.02, -1, nw + 0.02, -0.82, "accent"),
        rect(-bw, 0.15, bw, r.uniform(0.45, 0.7), "light"),
    ]


@family("chair")
def _chair(r):
    sw, sy, bh = r.uniform(0.5, 0.7), r.uniform(0.0, 0.2), r.uniform(0.7, 1.0)
    lw = r.uniform(0.06, 0.1)
    return [
        rect(-sw, sy - bh, -sw + 0.14, sy, "dark"),
        limb((-sw + 0.07, sy), (-sw + 0.07 - r.uniform(0, 0.1), 1), lw, role="dark"),
        limb((sw - 0.07, sy), (sw - 0.07 + r.uniform(0, 0.1), 1), lw, role="dark"),
        rect(-sw, sy - 0.08, sw, sy + 0.08),
        rect(-sw - 0.02, sy - bh, -sw + 0.18, sy - bh + r.uniform(0.1, 0.3), "accent"),
    ]


@family("table")
def _table(r):
    tw, th, ty = 1.0, r.uniform(0.08, 0.16), r.uniform(-0.4, -0.1)
    lw, inset = r.uniform(0.07, 0.13), r.uniform(0.05, 0.25)
    parts = [limb((x, ty), (x, 0.7), lw, role="dark") for x in (-tw + inset, tw - inset)]
    if r.random() < 0.5:
        parts.append(ellipse(r.uniform(-0.4, 0.4), ty - 0.15, 0.15, 0.15, "accent"))  # a vase/plate
    return [*parts, rect(-tw, ty - th, tw, ty)]


@family("clock")
def _clock(r):
    a1, a2 = r.uniform(0, 2 * np.pi, 2)
    rim = r.uniform(0.1, 0.2)
    parts = [ellipse(0, 0, 1, 1), ellipse(0, 0, 1 - rim, 1 - rim, "light")]
    parts += [
        line([(0.78 * np.cos(a), 0.78 * np.sin(a)), (0.68 * np.cos(a), 0.68 * np.sin(a))], 0.05)
        for a in np.arange(12) * np.pi / 6
    ]
    parts += [
        line([(0, 0), (0.45 * np.cos(a1), 0.45 * np.sin(a1))], 0.1),
        line([(0, 0), (0.7 * np.cos(a2), 0.7 * np.sin(a2))], 0.06),
    ]
    return parts


@family("bell")
def _bell(r):
    y = np.linspace(-0.7, 0.6, 14)
    w0, flare = r.uniform(0.25, 0.35), r.uniform(0.6, 0.9)
    x = w0 + (flare - w0) * ((y + 0.7) / 1.3) ** 2.5
    pts = np.concatenate([np.stack([x, y], 1), np.stack([-x[::-1], y[::-1]], 1)])
    return [
        arc(0, -0.78, 0.14, 0.14, np.pi, 2 * np.pi, 0.06),
        ellipse(0, 0.72, 0.14, 0.14, "dark"),
        polygon(pts),
        rect(-flare, 0.5, flare, 0.62, "accent"),
    ]


@family("candle")
def _candle(r):
    w, top = r.uniform(0.2, 0.32), r.uniform(-0.45, -0.1)
    fh = r.uniform(0.3, 0.45)
    t = np.linspace(0, 2 * np.pi, 30, endpoint=False)
    flame = np.stack([0.16 * np.sin(t) * np.abs(np.sin(t / 2)), top - 0.12 - fh / 2 - fh / 2 * np.cos(t)], 1)
    parts = [rect(-w, top, w, 1), line([(0, top), (0, top - 0.12)], 0.04), polygon(flame, "accent")]
    if r.random() < 0.5:
        parts.insert(0, ellipse(0, 1, w + 0.3, 0.1, "dark"))  # holder
    return parts


@family("rocket")
def _rocket(r):
    w, L = r.uniform(0.22, 0.32), r.uniform(1.0, 1.3)
    nose = np.linspace(0, np.pi, 12)
    body = np.concatenate(
        [[(w, 0.6)], np.stack([w * np.cos(nose), -L + 0.6 - 0.45 * np.sin(nose) - 0.0], 1) * (1, 1), [(-w, 0.6)]]
    )
    fin = r.uniform(0.25, 0.4)
    parts = [
        polygon([(-w, 0.2), (-w - fin, 0.75), (-w, 0.6)], "accent"),
        polygon([(w, 0.2), (w + fin, 0.75), (w, 0.6)], "accent"),
        polygon(body),
        ellipse(0, -0.2, w * 0.5, w * 0.5, "light"),
    ]
    if r.random() < 0.6:
        parts.insert(0, polygon([(-w * 0.7, 0.6), (0, 0.6 + r.uniform(0.3, 0.5)), (w * 0.7, 0.6)], "accent"))
    return parts


@family("airplane")
def _airplane(r):
    fl, fw = 1.0, r.uniform(0.1, 0.16)
    ws, wb = r.uniform(0.7, 1.0), r.uniform(-0.2, 0.1)
    sweep = r.uniform(0.0, 0.35)
    return [
        polygon([(wb - 0.15, 0), (wb + sweep, -ws), (wb + sweep + 0.22, -ws), (wb + 0.25, 0)], "accent"),
        polygon([(wb - 0.15, 0), (wb + sweep, ws), (wb + sweep + 0.22, ws), (wb + 0.25, 0)], "accent"),
        polygon([(0.7, 0), (0.85 + sweep * 0.3, -0.35), (0.98, -0.35), (0.95, 0)], "accent"),
        polygon([(0.7, 0), (0.85 + sweep * 0.3, 0.35), (0.98, 0.35), (0.95, 0)], "accent"),
        ellipse(0, 0, fl, fw),
    ]


@family("light bulb")
def _bulb(r):
    br, nw = r.uniform(0.45, 0.6), r.uniform(0.18, 0.25)
    cy = -1 + br
    neck_y = cy + br * 0.75
    parts = [
        polygon([(-br * 0.66, cy + br * 0.75), (br * 0.66, cy + br * 0.75), (nw, neck_y + 0.3), (-nw, neck_y + 0.3)]),
        ellipse(0, cy, br, br),
    ]
    parts.append(rect(-nw, neck_y + 0.3, nw, neck_y + 0.6, "dark"))
    parts += [line([(-nw, neck_y + y), (nw, neck_y + y + 0.05)], 0.04, "light") for y in (0.38, 0.48)]
    parts.append(line([(-0.1, cy + 0.2), (-0.05, cy - 0.05), (0.05, cy + 0.2), (0.1, cy - 0.05)], 0.04, "dark"))
    return parts


@family("hat")
def _hat(r):
    bw, cw, ch = 1.0, r.uniform(0.45, 0.65), r.uniform(0.5, 0.9)
    tw = cw * r.uniform(0.75, 1.0)
    return [
        ellipse(0, 0.3, bw, r.uniform(0.1, 0.2), "dark"),
        polygon([(-cw, 0.3), (cw, 0.3), (tw, 0.3 - ch), (-tw, 0.3 - ch)]),
        rect(-cw, 0.1, cw, 0.22, "accent"),
    ]


@family("butterfly")
def _butterfly(r):
    uw, lw = r.uniform(0.45, 0.6), r.uniform(0.3, 0.42)
    a = r.uniform(0.3, 0.7)
    return [
        ellipse(-uw * 0.9, -0.3, uw, uw * 0.7, rot=a),
        ellipse(uw * 0.9, -0.3, uw, uw * 0.7, rot=-a),
        ellipse(-lw * 0.9, 0.35, lw, lw * 0.8, "accent", rot=-a),
        ellipse(lw * 0.9, 0.35, lw, lw * 0.8, "accent", rot=a),
        ellipse(-uw * 0.9, -0.3, 0.1, 0.1, "light"),
        ellipse(uw * 0.9, -0.3, 0.1, 0.1, "light"),
        ellipse(0, 0, 0.08, 0.6, "dark"),
        line([(0, -0.55), (-0.25, -0.95)], 0.03),
        line([(0, -0.55), (0.25, -0.95)], 0.03),
    ]


@family("snowman")
def _snowman(r):
    r1, r2 = r.uniform(0.42, 0.52), r.uniform(0.3, 0.38)
    y1, y2 = 1 - r1, 1 - 2 * r1 - r2 + 0.08
    parts = [ellipse(0, y1, r1, r1, "light"), ellipse(0, y2, r2, r2, "light")]
    if r.random() < 0.7:  # a third ball
        r3 = r2 * 0.75
        y3 = y2 - r2 - r3 + 0.06
        parts.append(ellipse(0, y3, r3, r3, "light"))
    else:
        y3, r3 = y2, r2
    parts += [
        rect(-r3 * 0.8, y3 - r3 - 0.35, r3 * 0.8, y3 - r3 * 0.7),
        rect(-r3 * 1.2, y3 - r3 * 0.8, r3 * 1.2, y3 - r3 * 0.65),
    ]
    parts += [
        ellipse(-r3 * 0.35, y3 - 0.05, 0.04, 0.04, "dark"),
        ellipse(r3 * 0.35, y3 - 0.05, 0.04, 0.04, "dark"),
        polygon([(0, y3 + 0.02), (r.uniform(0.25, 0.4), y3 + 0.08), (0, y3 + 0.12)], "accent"),
    ]
    parts += [
        line([(-r2, y2), (-r2 - 0.35, y2 - r.uniform(0.0, 0.35))], 0.04),
        line([(r2, y2), (r2 + 0.35, y2 - r.uniform(0.0, 0.35))], 0.04),
    ]
    return parts


@family("leaf")
def _leaf(r):
    w, tip = r.uniform(0.3, 0.5), r.uniform(0.8, 1.0)
    t = np.linspace(-1, 1, 20)
    bend = r.uniform(-0.2, 0.2)
    up = np.stack([t * tip, -w * (1 - t**2) + bend * t**2], 1)
    lo = np.stack([t[::-1] * tip, w * (1 - t[::-1] ** 2) + bend * t[::-1] ** 2], 1)
    parts = [line([(-tip, bend), (-tip - 0.3, bend + 0.1)], 0.06), polygon(np.concatenate([up, lo]))]
    parts.append(line(np.stack([t * tip, bend * t**2], 1), 0.04, "dark"))
    parts += [
        line([(x, bend * x * x), (x + 0.2, s * w * 0.6)], 0.03, "dark")
        for x in np.linspace(-0.5, 0.4, 3)
        for s in (-1, 1)
    ]
    return parts


@family("cactus")
def _cactus(r):
    w, ah = r.uniform(0.16, 0.24), r.uniform(-0.3, 0.1)
    parts = [rect(-w, -0.8, w, 0.55), ellipse(0, -0.8, w, w * 0.8)]
    for s in (-1, 1)[: int(r.integers(1, 3))] if r.random() < 0.8 else ():
        x_out = s * r.uniform(0.45, 0.6)
        top = ah - r.uniform(0.2, 0.45)
        parts += [
            rect(min(s * w, x_out), ah - 0.08, max(s * w, x_out), ah + 0.08),
            rect(x_out - 0.09, top, x_out + 0.09, ah + 0.08),
            ellipse(x_out, top, 0.09, 0.07),
        ]
    parts.append(polygon([(-0.45, 0.55), (0.45, 0.55), (0.35, 1), (-0.35, 1)], "accent"))
    return parts


@family("anchor")
def _anchor(r):
    w, cr = r.uniform(0.08, 0.12), r.uniform(0.55, 0.75)
    by = r.uniform(-0.55, -0.4)
    return [
        arc(0, -0.8, 0.16, 0.16, 0, 2 * np.pi, 0.08, "main"),
        rect(-w, -0.64, w, 0.95),
        rect(-0.45, by - 0.06, 0.45, by + 0.06),
        arc(0, 0.95 - cr, cr, cr, 0.2, np.pi - 0.2, 0.14, "main"),
        polygon([(cr * 0.98, 0.95 - cr * 0.8), (cr * 1.15, 0.95 - cr * 0.45), (cr * 0.75, 0.95 - cr * 0.55)]),
        polygon([(-cr * 0.98, 0.95 - cr * 0.8), (-cr * 1.15, 0.95 - cr * 0.45), (-cr * 0.75, 0.95 - cr * 0.55)]),
    ]


@family("tent")
def _tent(r):
    w, h, apex = r.uniform(0.8, 1.0), r.uniform(0.7, 1.0), r.uniform(-0.15, 0.15)
    dw = r.uniform(0.15, 0.3)
    parts = [
        polygon([(-w, 0.6), (apex, 0.6 - h), (w, 0.6)]),
        polygon([(apex - dw, 0.6), (apex, 0.6 - h * 0.55), (apex + dw, 0.6)], "dark"),
    ]
    parts += [
        line([(apex, 0.6 - h), (apex + 0.1, 0.6 - h - 0.25)], 0.04),
        line([(-w, 0.6), (-w - 0.15, 0.75)], 0.03),
        line([(w, 0.6), (w + 0.15, 0.75)], 0.03),
    ]
    if r.random() < 0.5:
        parts.append(
            polygon([(apex + 0.1, 0.6 - h - 0.25), (apex + 0.4, 0.6 - h - 0.18), (apex + 0.1, 0.6 - h - 0.1)], "accent")
        )  # flag
    return parts


def draw(class_name: str, rng: np.random.Generator) -> list[Part]:
    """A fresh member of ``class_name``'s family, normalised to the unit box."""
    return fit(FAMILIES[class_name](rng))


CLASS_NAMES: tuple[str, ...] = tuple(FAMILIES)
