"""Rollout animations: the central policy beside a context's own teacher, as a GIF.

    python -m distillax.evaluate runs/a --video 4   # runs/a/eval/videos/video_0.gif ... video_3.gif

Two halves. On the device, `record` plays one episode per context for the central policy
and for the context's own-cell teacher in one jitted loop, from the same reset key and the
same per-step keys as `evaluation.episode_returns` (so the captioned returns are the
evaluator's), and keeps per step a small picture of each env state (`Drawer.pick`: the
gymnax state itself, or an MJX state's geom poses) and whether the episode is still running.
On the host, a 2-D projection is drawn with Pillow (`PIL.ImageDraw`), frame by frame, and
the frames are written as a GIF; no offline 3-D renderer is needed, so it runs wherever the
trainer runs, brax and MuJoCo Playground tasks included. (Playground's own renderer,
`mujoco.Renderer`, needs an OpenGL context: on a headless machine only with `MUJOCO_GL=egl`
set before mujoco is first imported, and an EGL library installed; the drawers need neither.)

Each task's registration carries its `Drawer` (world box, `pick`, `draw`: `envs.Task`): the
classic tasks' `draw` sits in their own modules, and every MJX task, brax's or Playground's,
uses one generic projection of MuJoCo geoms from here (`mjx_drawer`: capsules as thick
segments, spheres as discs) on the plane that fits it (x-z for the double pendulum and the
cart-pole, x-y from above for the reachers and ant) with the goal or target from the
context. Give your task one with `distillax.envs.register(name, make, drawer=Drawer(...))`.
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
from distillax.envs.base import ContextualEnv, Drawer
from distillax.xla import RUN_ONCE

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

    Both play the evaluator's episodes (`evaluation.episodes`, with `copies=2`: one batch of
    2K rows, the central policy's then the teachers') with `Drawer.pick` as its trace: the
    same keys as the evaluator's, so both meet the same initial state and the returns are
    the evaluator's. Runs at most `steps` steps (default: the env's maximum episode length)
    and stops once every episode has ended.
    """
    from distillax.evaluation import episodes
    from distillax.policy import (
        central_step,
        initial_memory,
        own_cell,
        recurrent_acts,
        teacher_step,
    )

    env: ContextualEnv = model.env
    pick = drawer_for(env).pick
    T = int(steps or env.max_steps)
    contexts = jnp.asarray(contexts, jnp.float32)
    K = contexts.shape[0]
    look = jax.vmap(lambda state, context: pick(env, state, context))
    # Both roles play as steps with a memory (None when feed-forward), so a recurrent central
    # policy or teacher carries its state along its own K rows on the same code path
    central = recurrent_acts(central_step(model, policies), greedy)
    teacher = recurrent_acts(teacher_step(model, policies, own_cell(model, policies.partition)),
                             greedy)

    def act(obs, context, k, memory):  # rows [0, K): the central policy; [K, 2K): the teachers
        a_c, m_c = central(obs[:K], context[:K], k, memory[0])
        a_t, m_t = teacher(obs[K:], context[K:], k, memory[1])
        return jnp.concatenate([a_c, a_t]), (m_c, m_t)

    memory = (initial_memory(model, K, central=True), initial_memory(model, K, central=False))

    @functools.partial(jax.jit, compiler_options=RUN_ONCE)
    def run(contexts, key):
        ep = episodes(act, env, contexts, key, trace=look, max_steps=T, copies=2, memory=memory)
        halves = lambda x: jnp.stack([x[..., :K], x[..., K:]])  # noqa: E731  [..., 2K] -> [2, ..., K]
        frames = jax.tree.map(lambda x: jnp.stack([x[:, :K], x[:, K:]]), ep.trace)
        return (frames, halves(ep.steps), halves(ep.returns),
                own_cell(model, policies.partition)(contexts))

    frames, lengths, returns, cell = jax.tree.map(np.asarray, run(contexts, key))
    alive = np.arange(T)[None, :, None] < lengths[:, None, :]  # [2, T, K]
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










# MuJoCo geom types (mjtGeom) drawn as segments or discs; planes and meshes are left out.
_SPHERE, _CAPSULE, _ELLIPSOID, _CYLINDER, _BOX = 2, 3, 4, 5, 6


def _geom_poses(env: ContextualEnv, state: Any, context: jax.Array) -> dict[str, jax.Array]:
    """An MJX state's geom centres `[G, 3]`, orientations `[G, 3, 3]` (MJX `Data`) and sizes
    `[G, 3]` (the context's model: a context may set a pole's length)."""
    data = env.env.mjx_data(state.inner)
    return {"pos": data.geom_xpos, "mat": data.geom_xmat,
            "size": env.env.system(env.to_params(context).context).geom_size}


def mjx_drawer(view: tuple[float, float, float, float], axes: tuple[int, int],
               goal: Callable[[np.ndarray], tuple[float, float]] | None = None,
               trail_geom: int | None = None) -> Drawer:
    """A generic 2-D projection of an MJX task's MuJoCo geoms (brax's or Playground's,
    `envs.mjx.MjxEnvironment`) on world `axes` (e.g. (0, 2): x-z, seen from the side;
    (0, 1): x-y, from above), farthest first along the dropped axis. Capsules and cylinders
    are segments between their end caps, of their radius; spheres and ellipsoids discs;
    boxes their projected extent; each body its colour (the world's geoms grey).
    `goal(context) -> (x, y)` marks a goal or target; `trail_geom` traces one geom's path
    (the ant's torso, the reacher's fingertip)."""
    depth = ({0, 1, 2} - set(axes)).pop()
    sign = 1.0 if depth == 2 else -1.0  # from above, high is near; from the side (-y), +y far

    def draw(c: Canvas, f: Any, t: int, context: np.ndarray, env: ContextualEnv) -> None:
        m = env.env.mj_model
        kinds, bodies = np.asarray(m.geom_type), np.asarray(m.geom_bodyid)
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


def drawer_for(env: ContextualEnv) -> Drawer:
    """The task's `Drawer` (its registration's, `envs.Task.drawer`); a task without one is a
    `ValueError` naming it."""
    from distillax import envs

    drawer = envs.task(env.name).drawer if env.name in envs.names() else None
    if drawer is None:
        raise ValueError(f"task `{env.name}` has no drawer for rollout videos; give its "
                         "registration one: distillax.envs.register(name, make, drawer=...)")
    return drawer


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
    from distillax.policy import policy_name

    rec = record(model, policies, contexts, key, greedy, steps)
    os.makedirs(out, exist_ok=True)
    space = model.env.space
    cname = policy_name(model.has_central, model.config.method)
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
