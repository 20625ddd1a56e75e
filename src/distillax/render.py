"""Rollout animations: the central policy beside a context's own teacher, as a GIF.

    python -m distillax.evaluate runs/a --video 4   # runs/a/eval/videos/video_0.gif ... video_3.gif

Two halves. On the device, `record` plays one episode per context for the central policy
and for the context's own-cell teacher in one jitted loop, from the same reset key and the
same per-step keys as `evaluation.episode_returns` (so the captioned returns are the
evaluator's), and keeps per step a small picture of each env state (`Drawer.pick`: the
gymnax state itself, or a brax state's geom poses) and whether the episode is still running.
On the host, a 2-D projection is drawn with Pillow (`PIL.ImageDraw`), frame by frame, and
the frames are written as a GIF; no offline 3-D renderer is needed, so it runs wherever the
trainer runs, brax/MJX tasks included.

Drawing is table-driven: `DRAWERS[task name]` is a `Drawer` (world box, `pick`, `draw`); one
`draw` per task family (cart-pole, pendulum, point on a ring, grid world) and one generic
projection of MuJoCo geoms (capsules as thick segments, spheres as discs) for every brax
task, on the plane that fits it (x-z for the double pendulum, x-y from above for reacher
and ant) with the goal or target from the context. Add one for your task with `register`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from distillax import logs
from distillax.contexts import ContextSpace, Partition, assign
from distillax.envs.base import ContextualEnv
from distillax.trainer import RUN_ONCE

# --- recording (device) ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Recording:
    """One episode per context `[K, d]` of the central policy (index 0 of the leading axis)
    and of each context's own teacher (index 1), T = the recorded steps.

    frames: `Drawer.pick` of the state acted on at step t, leaves `[2, T, K, ...]`;
    alive: `[2, T, K]`, the episode still running at step t (frames after its end are not
    drawn); returns: `[2, K]` undiscounted, up to the first termination or truncation;
    teacher: `[K]` the teacher of each context's cell; contexts: `[K, d]`.
    """

    frames: Any
    alive: np.ndarray
    returns: np.ndarray
    teacher: np.ndarray
    contexts: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Recorded steps of each episode `[2, K]`."""
        return self.alive.sum(axis=1)


def record(model: Any, policies: Any, contexts: np.ndarray, key: jax.Array,
           greedy: bool = True, steps: int | None = None) -> Recording:
    """Play the central policy and each context's own teacher in `contexts [K, d]`.

    The two policies use the reset key and the step keys exactly as two calls of
    `evaluation.episode_returns(policy, env, contexts, key)` would, so both meet the same
    initial state and the returns equal the evaluator's (tested). Runs at most `steps` steps
    (default: the env's maximum episode length) and stops once every episode has ended.

    Steps call the env's `step_env`, not `ContextualEnv.step`: a recorded episode is never
    continued, and the step's auto-reset is most of a brax step's compile time (an MJX reset
    compiles about as long as a step; measured on the 2-core CPU, reacher-target).
    """
    from distillax.policy import central_policy, own_cell, teacher_policy

    env: ContextualEnv = model.env
    pick = drawer_for(env).pick
    T = int(steps or env.max_steps)
    contexts = jnp.asarray(contexts, jnp.float32)
    K = contexts.shape[0]
    central = central_policy(model, policies, greedy)
    teacher = teacher_policy(model, policies, own_cell(model, policies.partition), greedy)

    def step(key, state, action, context):  # `ContextualEnv.step` without its auto-reset
        params = env.to_params(context)
        obs, state, reward, terminated, _ = env.env.step_env(jax.random.split(key)[0], state,
                                                             action, params)
        return obs, state, reward, terminated | env.env.is_truncated(state, params)

    @functools.partial(jax.jit, compiler_options=RUN_ONCE)
    def run(contexts, key):
        key_reset, key_run = jax.random.split(key)
        both = jnp.concatenate([contexts, contexts])  # [2K, d]: central rows, then teachers
        twice = lambda k: jnp.concatenate([k, k])  # noqa: E731  one key per context, shared
        obs, state = jax.vmap(env.reset)(twice(jax.random.split(key_reset, K)), both)
        look = jax.vmap(lambda s, c: pick(env, s, c))
        buf = jax.tree.map(lambda x: jnp.zeros((T,) + x.shape, x.dtype), look(state, both))

        def running(carry):
            t, *_, alive_t = carry
            return (t < T) & jnp.any(alive_t)

        def body(carry):
            t, obs, state, buf, alive_buf, total, alive_t = carry
            buf = jax.tree.map(lambda b, x: b.at[t].set(x), buf, look(state, both))
            alive_buf = alive_buf.at[t].set(alive_t)
            k_act, k_env = jax.random.split(jax.random.fold_in(key_run, t))
            action = jnp.concatenate([central(obs[:K], contexts, k_act),
                                      teacher(obs[K:], contexts, k_act)])
            obs, state, reward, done = jax.vmap(step)(twice(jax.random.split(k_env, K)),
                                                      state, action, both)
            total = total + jnp.where(alive_t, reward, 0.0)
            return t + 1, obs, state, buf, alive_buf, total, alive_t & ~done

        init = (jnp.zeros((), jnp.int32), obs, state, buf, jnp.zeros((T, 2 * K), bool),
                jnp.zeros(2 * K), jnp.ones(2 * K, bool))
        _, _, _, buf, alive_buf, total, _ = jax.lax.while_loop(running, body, init)
        split = lambda x: jnp.stack([x[:, :K], x[:, K:]])  # noqa: E731  [T, 2K] -> [2, T, K]
        return (jax.tree.map(split, buf), split(alive_buf), total.reshape(2, K),
                assign(policies.partition, env.space, contexts))

    frames, alive, returns, cell = jax.tree.map(np.asarray, run(contexts, key))
    return Recording(frames, alive, returns, cell, np.asarray(contexts))


# --- drawing (host) ------------------------------------------------------------------------

# One palette for every frame (GIF frames are palette images): name -> RGB.
COLORS = {"bg": (255, 255, 255), "ink": (30, 30, 30), "grid": (205, 205, 205),
          "wall": (70, 70, 80), "goal": (40, 160, 60), "trail": (150, 175, 220),
          "ended": (200, 40, 40), "band": (238, 238, 238),
          "body": [(31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189),
                   (140, 86, 75), (227, 119, 194), (23, 190, 207), (188, 189, 34)]}
_NAMED = [k for k in COLORS if k != "body"]
_INDEX = {k: i for i, k in enumerate(_NAMED)}
PALETTE = [c for k in _NAMED for c in COLORS[k]] + [c for rgb in COLORS["body"] for c in rgb]


def color(name: str | int) -> int:
    """Palette index of a named colour, or (an int) of body colour `name mod 8`."""
    if isinstance(name, str):
        return _INDEX[name]
    return len(_NAMED) + name % len(COLORS["body"])


class Canvas:
    """A panel of a frame: `PIL.ImageDraw` with world coordinates (x right, y up) mapped onto
    the pixel box `box = (left, top, right, bottom)` from the world box `view = (x0, x1, y0,
    y1)` (same scale on both axes: the panel's aspect is the view's)."""

    def __init__(self, draw: Any, box: tuple[int, int, int, int],
                 view: tuple[float, float, float, float]):
        self.d, self.box, self.view = draw, box, view
        self.scale = (box[2] - box[0]) / (view[1] - view[0])  # pixels per world unit

    def px(self, x: float, y: float) -> tuple[float, float]:
        return (self.box[0] + (x - self.view[0]) * self.scale,
                self.box[3] - (y - self.view[2]) * self.scale)

    def line(self, points: Any, fill: str | int = "ink", width: float = 0.0) -> None:
        """A polyline through `points [n, 2]`; `width` in world units (at least 1 px)."""
        pts = [self.px(float(x), float(y)) for x, y in np.asarray(points, float).reshape(-1, 2)]
        if len(pts) > 1:
            self.d.line(pts, fill=color(fill), width=max(1, round(width * self.scale)),
                        joint="curve")

    def disc(self, x: float, y: float, r: float, fill: str | int = "ink",
             outline: str | int | None = None, min_px: float = 2.0) -> None:
        """A disc of world radius `r` (at least `min_px` pixels) centred on (x, y)."""
        cx, cy = self.px(x, y)
        rp = max(min_px, r * self.scale)
        self.d.ellipse([cx - rp, cy - rp, cx + rp, cy + rp], fill=color(fill),
                       outline=None if outline is None else color(outline))

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: str | int = "ink",
             outline: str | int | None = None) -> None:
        (a, b), (c, d) = self.px(x0, y1), self.px(x1, y0)
        self.d.rectangle([a, b, c, d], fill=None if fill is None else color(fill),
                         outline=None if outline is None else color(outline))

    def capsule(self, p: Any, q: Any, r: float, fill: str | int) -> None:
        """A segment p -> q of world radius r with round ends."""
        self.line([p, q], fill, 2 * r)
        for x, y in (p, q):
            self.disc(float(x), float(y), r, fill, min_px=0.5)


@dataclasses.dataclass(frozen=True)
class Drawer:
    """How to draw one task.

    view: the world box `(x0, x1, y0, y1)` a panel shows; pick: `(env, state, context [d])
    -> small pytree`, jit-able, what `record` keeps of each step (default: the state itself);
    draw: `draw(canvas, frames, t, context [d], env)` draws step t, where `frames` holds
    every recorded step of this episode (leaves `[T, ...]`, for trails).
    """

    view: tuple[float, float, float, float]
    draw: Callable[[Canvas, Any, int, np.ndarray, ContextualEnv], None]
    pick: Callable[[ContextualEnv, Any, jax.Array], Any] = lambda env, state, context: state


def _cartpole(c: Canvas, f: Any, t: int, context: np.ndarray, env: ContextualEnv) -> None:
    """Track, the +-2.4 m limits, the cart, and the pole (gymnax's `length` is half the
    pole: drawn 2 x context[0] long), leaning right for theta > 0."""
    x, theta, half = float(f.x[t]), float(f.theta[t]), float(context[0])
    c.line([(-3, 0), (3, 0)], "grid", 0.03)
    for edge in (-2.4, 2.4):
        c.line([(edge, -0.15), (edge, 0.15)], "ended", 0.03)
    c.rect(x - 0.25, -0.1, x + 0.25, 0.15, 1)
    top = (x, 0.15)
    tip = (x + 2 * half * math.sin(theta), 0.15 + 2 * half * math.cos(theta))
    c.line([top, tip], 0, 0.06)
    c.disc(*top, 0.04, "ink")


def _pendulum(c: Canvas, f: Any, t: int, context: np.ndarray, env: ContextualEnv) -> None:
    """The pole from the pivot at angle theta (0 = upright, counter-clockwise as gym draws
    it), of the context's length; the bob's area grows with the context's mass."""
    theta, length, mass = float(f.theta[t]), float(context[1]), float(context[0])
    tip = (-length * math.sin(theta), length * math.cos(theta))
    c.line([(0, 0), tip], 0, 0.06)
    c.disc(*tip, 0.1 * math.sqrt(mass), 1)
    c.disc(0, 0, 0.04, "ink")


def _pointgoal(c: Canvas, f: Any, t: int, context: np.ndarray, env: ContextualEnv) -> None:
    """The goal ring, the goal at the context's angle (its tolerance as a circle), and the
    point with its trail."""
    p = env.env.default_params
    ring = [(p.goal_radius * math.cos(a), p.goal_radius * math.sin(a))
            for a in np.linspace(0, 2 * math.pi, 73)]
    c.line(ring, "grid", 0.01)
    g = (p.goal_radius * math.cos(float(context[0])), p.goal_radius * math.sin(float(context[0])))
    c.disc(*g, p.goal_tolerance, "goal")
    c.line(f.pos[:t + 1], "trail", 0.02)
    c.disc(float(f.pos[t, 0]), float(f.pos[t, 1]), 0.05, 0)


def _fourrooms(c: Canvas, f: Any, t: int, context: np.ndarray, env: ContextualEnv) -> None:
    """The 13 x 13 map (row 0 at the top), the goal cell of the context, the agent's path
    and cell."""
    walls = np.asarray(env.env.occupied_map)
    rows = walls.shape[0]
    cell = lambda r, k: (k + 0.5, rows - r - 0.5)  # noqa: E731  cell centre in world units
    for r, k in zip(*np.nonzero(walls)):
        c.rect(k, rows - r - 1, k + 1, rows - r, "wall")
    g = np.round(context).astype(int)
    c.rect(g[1] + 0.1, rows - g[0] - 0.9, g[1] + 0.9, rows - g[0] - 0.1, "goal")
    c.line([cell(r, k) for r, k in f.pos[:t + 1]], "trail", 0.15)
    c.disc(*cell(*f.pos[t]), 0.35, 0)


# MuJoCo geom types (mjtGeom) drawn as segments or discs; planes and meshes are left out.
_SPHERE, _CAPSULE, _ELLIPSOID, _CYLINDER, _BOX = 2, 3, 4, 5, 6


def _geom_poses(env: ContextualEnv, state: Any, context: jax.Array) -> dict[str, jax.Array]:
    """A brax state's geom centres `[G, 3]`, orientations `[G, 3, 3]` (MJX `Data`) and sizes
    `[G, 3]` (the context's `System`: a context may set a pole's length)."""
    ps = state.inner.pipeline_state
    return {"pos": ps.geom_xpos, "mat": ps.geom_xmat,
            "size": env.env.system(env.to_params(context).context).geom_size}


def brax_drawer(view: tuple[float, float, float, float], axes: tuple[int, int],
                goal: Callable[[np.ndarray], tuple[float, float]] | None = None,
                trail_geom: int | None = None) -> Drawer:
    """A generic 2-D projection of a brax task's MuJoCo geoms on world `axes` (e.g. (0, 2):
    x-z, seen from the side; (0, 1): x-y, from above), farthest first along the dropped
    axis. Capsules and cylinders are segments between their end caps, of their radius;
    spheres and ellipsoids discs; boxes their projected extent; each body its colour (the
    world's geoms grey). `goal(context) -> (x, y)` marks a goal or target; `trail_geom`
    traces one geom's path (the ant's torso, the reacher's fingertip)."""
    depth = ({0, 1, 2} - set(axes)).pop()
    sign = 1.0 if depth == 2 else -1.0  # from above, high is near; from the side (-y), +y far

    def draw(c: Canvas, f: Any, t: int, context: np.ndarray, env: ContextualEnv) -> None:
        sys = env.env.brax_env.sys
        kinds, bodies = np.asarray(sys.geom_type), np.asarray(sys.geom_bodyid)
        pos, mat, sizes = (np.asarray(f[k][t]) for k in ("pos", "mat", "size"))
        if goal is not None:
            c.disc(*goal(context), 0.0, "goal", min_px=5)
        if trail_geom is not None:
            c.line(np.asarray(f["pos"][:t + 1, trail_geom])[:, list(axes)], "trail", 0.0)
        for g in np.argsort(sign * pos[:, depth], kind="stable"):
            fill = "grid" if bodies[g] == 0 else int(bodies[g]) - 1
            centre, r = pos[g], float(sizes[g, 0])
            if kinds[g] in (_CAPSULE, _CYLINDER):
                half = mat[g][:, 2] * sizes[g, 1]  # the geom's local z axis is its length
                c.capsule((centre - half)[list(axes)], (centre + half)[list(axes)], r, fill)
            elif kinds[g] in (_SPHERE, _ELLIPSOID):
                c.disc(*centre[list(axes)], r, fill)
            elif kinds[g] == _BOX:
                signs = np.array(list(np.ndindex(2, 2, 2))) * 2 - 1  # [8, 3] the corners
                corners = centre + (signs * sizes[g]) @ mat[g].T
                lo, hi = corners[:, list(axes)].min(0), corners[:, list(axes)].max(0)
                c.rect(lo[0], lo[1], hi[0], hi[1], fill)

    return Drawer(view=view, draw=draw, pick=_geom_poses)


def _ant_goal(context: np.ndarray) -> tuple[float, float]:
    from distillax.envs.ant_goal import RADIUS  # brax: only when an ant is drawn

    return RADIUS * math.cos(float(context[0])), RADIUS * math.sin(float(context[0]))


_DOUBLE_PENDULUM = brax_drawer((-1.3, 1.3, -0.3, 1.8), (0, 2))

DRAWERS: dict[str, Drawer] = {
    "cartpole": Drawer((-2.7, 2.7, -0.4, 2.3), _cartpole),
    "cartpole-v1": Drawer((-2.7, 2.7, -0.4, 2.3), _cartpole),
    "pendulum": Drawer((-1.7, 1.7, -1.7, 1.7), _pendulum),
    "pointgoal": Drawer((-1.35, 1.35, -1.35, 1.35), _pointgoal),
    "fourrooms": Drawer((0.0, 13.0, 0.0, 13.0), _fourrooms),
    "double-pendulum-physics": _DOUBLE_PENDULUM,
    "double-pendulum": _DOUBLE_PENDULUM,
    # the arena's walls are capsules at +-0.3 (body 0); geom 8 is the fingertip
    "reacher-target": brax_drawer((-0.33, 0.33, -0.33, 0.33), (0, 1),
                                  goal=lambda c: (float(c[0]), float(c[1])), trail_geom=8),
    # goals on the circle of radius 5; geom 1 is the torso
    "ant-goal": brax_drawer((-6.0, 6.0, -6.0, 6.0), (0, 1), goal=_ant_goal, trail_geom=1),
}


def register(name: str, drawer: Drawer) -> None:
    """Make task `name` (a `ContextualEnv.name`) drawable."""
    DRAWERS[name] = drawer


def drawer_for(env: ContextualEnv) -> Drawer:
    """The task's `Drawer`; a task without one is a `ValueError` naming it."""
    if env.name not in DRAWERS:
        raise ValueError(f"task `{env.name}` has no drawer for rollout videos (drawable: "
                         f"{sorted(DRAWERS)}); add one with distillax.render.register")
    return DRAWERS[env.name]


# --- frames and files ------------------------------------------------------------------------

FPS = 25  # GIF delays are in 1/100 s, so 40 ms is exact
MAX_FRAMES = 200  # longer episodes show every n-th step: a GIF stays under ~1-2 MB


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size)


def _wrap(text: str, width: int, font: Any) -> list[str]:
    """`text` split at ", " into lines no wider than `width` pixels."""
    lines: list[str] = []
    for part in text.split(", "):
        trial = f"{lines[-1]}, {part}" if lines else part
        if lines and font.getlength(trial) <= width:
            lines[-1] = trial
        else:
            lines.append(part)
    return lines


def frame_steps(lengths: Any, max_frames: int = MAX_FRAMES) -> list[int]:
    """The steps drawn: every n-th of the longer episode and its last step, n the smallest
    keeping at most `max_frames` (>= 2) frames."""
    T = int(max(lengths))
    n = max(1, math.ceil((T - 1) / (max_frames - 1)))
    return sorted(set(range(0, T - 1, n)) | {T - 1})


def video_frames(env: ContextualEnv, rec: Recording, k: int, labels: tuple[str, str],
                 caption: str, size: int = 280, max_frames: int = MAX_FRAMES) -> list[Any]:
    """Palette images of context k of `rec`: the central policy's panel (left) and the
    teacher's (right), `size` pixels wide each, their labels and returns above, the frame's
    step and `caption` (wrapped) below. A panel whose episode ended shows its last step."""
    from PIL import Image, ImageDraw

    drawer = drawer_for(env)
    x0, x1, y0, y1 = drawer.view
    panel_h = int(round(size * (y1 - y0) / (x1 - x0)))
    font, small = _font(13), _font(11)
    gap, top = 6, 22
    lines = _wrap(caption, 2 * size + gap - 8, small)
    W, H = 2 * size + gap, top + panel_h + 16 + 13 * len(lines) + 4
    lengths = rec.lengths[:, k]
    panels = [jax.tree.map(lambda x, w=who: x[w, :, k], rec.frames) for who in range(2)]
    context = rec.contexts[k]
    images = []
    for t in frame_steps(lengths, max_frames):
        img = Image.new("P", (W, H), color("bg"))
        img.putpalette(PALETTE)
        d = ImageDraw.Draw(img)
        d.fontmode = "1"  # no anti-aliasing: palette images, crisp and small
        for who in range(2):
            left = who * (size + gap)
            box = (left, top, left + size, top + panel_h)
            d.rectangle([left, 0, left + size - 1, top - 1], fill=color("band"))
            ended = t >= lengths[who]
            d.text((left + 4, 4), f"{labels[who]}   return {rec.returns[who, k]:.1f}"
                   + ("   (ended)" if ended else ""), fill=color("ended" if ended else "ink"),
                   font=font)
            canvas = Canvas(d, box, drawer.view)
            drawer.draw(canvas, panels[who], min(t, int(lengths[who]) - 1), context, env)
            d.rectangle(box, outline=color("grid"))
        below = top + panel_h + 2
        d.text((4, below), f"step {t + 1} / {int(max(lengths))}", fill=color("ink"), font=small)
        for i, line in enumerate(lines):
            d.text((4, below + 14 + 13 * i), line, fill=color("ink"), font=small)
        images.append(img)
    return images


def write_gif(path: str, images: list[Any], fps: int = FPS) -> None:
    """Save palette images as a looping GIF (Pillow stores each frame as its difference from
    the previous one, so a mostly still background costs little)."""
    images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                   duration=round(1000 / fps), disposal=1, optimize=False)


def context_label(space: ContextSpace, c: np.ndarray) -> str:
    return ", ".join(f"{n} = {v:.3g}" for n, v in zip(space.names, np.asarray(c).tolist()))


def video_contexts(space: ContextSpace, partition: Partition, candidates: np.ndarray,
                   k: int) -> np.ndarray:
    """K contexts `[K, d]` spread over the partitions: round-robin over the cells, the r-th
    round taking each cell's r-th candidate (`candidates [N, d]`, e.g. the evaluation grid)
    nearest its centre (in the scaled space); a cell holding no candidate gives its pool's
    members instead, and cells that run out are skipped."""
    cand = np.asarray(candidates, np.float32)
    cells = np.asarray(assign(partition, space, jnp.asarray(cand)))
    centres = np.asarray(partition.centres)
    lo, hi = np.asarray(space.low), np.asarray(space.high)
    queues = []
    for j in range(partition.size):
        mine = cand[cells == j]
        if len(mine) == 0:
            mine = np.unique(np.asarray(partition.pool[j]), axis=0)
        dist = np.linalg.norm((mine - lo) / (hi - lo) - centres[j], axis=-1)
        queues.append(list(mine[np.argsort(dist, kind="stable")]))
    out = []
    while len(out) < k and any(queues):
        for q in queues:
            if q and len(out) < k:
                out.append(q.pop(0))
    return np.asarray(out, np.float32).reshape(-1, space.dim)


def recording_bytes(env: ContextualEnv, k: int, steps: int | None = None,
                    size: int = 280) -> int:
    """About the memory `record` and `write_videos` take for K contexts: every step's drawn
    state of the 2K episodes (`Drawer.pick`, its shapes traced, not run) and their alive
    flags, on the device and again on the host, and one video's images."""
    from distillax.limits import traced_bytes

    def picked(key, context):
        return drawer_for(env).pick(env, env.reset(key, context)[1], context)

    per_step = traced_bytes(picked, env) + 1  # the drawn state, and its alive flag
    images = MAX_FRAMES * (2 * size) * 2 * size  # palette bytes, panels plus margins
    return 2 * int(steps or env.max_steps) * 2 * k * per_step + images


def write_videos(out: str, model: Any, policies: Any, contexts: np.ndarray, key: jax.Array,
                 greedy: bool = True, steps: int | None = None, size: int = 280,
                 max_frames: int = MAX_FRAMES) -> list[dict[str, Any]]:
    """`video_<i>.gif` in `out` for each context `[K, d]`: the central policy beside the
    context's own teacher, from the same initial state (one `record`). Returns per video
    its file name, context, teacher and the two returns and episode lengths."""
    rec = record(model, policies, contexts, key, greedy, steps)
    os.makedirs(out, exist_ok=True)
    space = model.env.space
    cname = "central" if model.has_central else "ppo policy"
    videos, start = [], time.perf_counter()
    for i in range(len(contexts)):
        if i == 1:  # a soft limit: time, estimated from the first video, noted if long
            first = time.perf_counter() - start
            if first * (len(contexts) - 1) > 60:
                warnings.warn(logs.Note(f"writing {len(contexts)} videos: about "
                                        f"{logs.format_duration(first * (len(contexts) - 1))}"
                                        f" more (the first took {first:.1f} s)"), stacklevel=2)
        j = int(rec.teacher[i])
        name = f"video_{i}.gif"
        write_gif(os.path.join(out, name),
                  video_frames(model.env, rec, i, (cname, f"teacher T{j}"),
                               context_label(space, contexts[i]), size, max_frames))
        videos.append({"file": name, "context": dict(zip(space.names,
                                                         np.asarray(contexts[i]).tolist())),
                       "teacher": j, "central_return": float(rec.returns[0, i]),
                       "teacher_return": float(rec.returns[1, i]),
                       "central_steps": int(rec.lengths[0, i]),
                       "teacher_steps": int(rec.lengths[1, i])})
    return videos
