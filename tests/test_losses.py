"""Loss terms on small arrays with hand-computed values, gradient paths and MC checks."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillax import losses
from distillax.distributions import Categorical, DiagGaussian

LN2, LN3 = math.log(2.0), math.log(3.0)
MC_SAMPLES = 200_000
MC_Z = 5.0  # tolerance in standard errors


def _identity(f):
    return f


TRANSFORMS = pytest.mark.parametrize("transform", [_identity, jax.jit], ids=["nojit", "jit"])


# --- ppo_clip_loss --------------------------------------------------------------------------

# ratios on both sides of the clip range [0.8, 1.2], with positive and negative advantages:
#   r    A   r A    clip(r) A   min
#  0.5  +1   0.5    0.8         0.5   (below range, A > 0: unclipped, pessimistic)
#  1.5  +1   1.5    1.2         1.2   (above range, A > 0: clipped)
#  1.1  +1   1.1    1.1         1.1   (inside)
#  0.9  -1  -0.9   -0.9        -0.9   (inside)
#  1.5  -1  -1.5   -1.2        -1.5   (above range, A < 0: unclipped, pessimistic)
#  0.5  -1  -0.5   -0.8        -0.8   (below range, A < 0: clipped)
# sum = -0.4, mean = -0.0666667, loss = +0.0666667
PPO_RATIOS = np.array([0.5, 1.5, 1.1, 0.9, 1.5, 0.5], np.float32)
PPO_ADV = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0], np.float32)


@TRANSFORMS
def test_ppo_clip_loss_hand_values(transform):
    f = transform(losses.ppo_clip_loss)
    loss = f(jnp.log(PPO_RATIOS), jnp.asarray(PPO_ADV), 0.2)
    chex.assert_shape(loss, ())
    np.testing.assert_allclose(loss, 0.4 / 6, rtol=1e-6)
    # all inside the range (eps = 1): plain surrogate -mean(r A) = -(0.5+1.5+1.1-0.9-1.5-0.5)/6
    #                                                           = -0.2 / 6 = -0.0333333
    np.testing.assert_allclose(f(jnp.log(PPO_RATIOS), jnp.asarray(PPO_ADV), 1.0), -0.2 / 6,
                               rtol=1e-5)
    # r = 1 everywhere: -mean(A) = 0
    np.testing.assert_allclose(f(jnp.zeros(6), jnp.asarray(PPO_ADV), 0.2), 0.0, atol=1e-7)


def test_ppo_clip_loss_gradient_vanishes_where_clipped():
    # d/d log r of -r A / n where the unclipped branch is the min, else 0 (n = 6):
    #   [-0.5/6, 0, -1.1/6, +0.9/6, +1.5/6, 0]
    g = jax.grad(losses.ppo_clip_loss)(jnp.log(PPO_RATIOS), jnp.asarray(PPO_ADV), 0.2)
    np.testing.assert_allclose(g, np.array([-0.5, 0.0, -1.1, 0.9, 1.5, 0.0]) / 6,
                               rtol=1e-5, atol=1e-7)


def test_ppo_clip_loss_vmap():
    lr = jnp.log(jnp.stack([PPO_RATIOS, PPO_RATIOS[::-1]]))
    adv = jnp.stack([PPO_ADV, -PPO_ADV])
    vm = jax.vmap(losses.ppo_clip_loss, in_axes=(0, 0, None))(lr, adv, 0.2)
    chex.assert_shape(vm, (2,))
    np.testing.assert_allclose(vm, [losses.ppo_clip_loss(lr[i], adv[i], 0.2) for i in range(2)],
                               rtol=1e-6)
    np.testing.assert_allclose(vm[0], 0.4 / 6, rtol=1e-6)


# --- value_loss -----------------------------------------------------------------------------

@TRANSFORMS
def test_value_loss_hand_values(transform):
    # eps = 0.2, old = 0 -> v_clip = clip(v, -0.2, 0.2)
    #   v=1, R=1: (1-1)^2 = 0,   (0.2-1)^2 = 0.64 -> 0.64   (clipped branch is larger)
    #   v=1, R=0: (1-0)^2 = 1,   (0.2-0)^2 = 0.04 -> 1
    #   v=0, R=2: (0-2)^2 = 4,   (0-2)^2   = 4    -> 4
    # 0.5 * mean = 0.5 * 5.64 / 3 = 0.94
    f = transform(losses.value_loss)
    loss = f(jnp.array([1.0, 1.0, 0.0]), jnp.zeros(3), jnp.array([1.0, 0.0, 2.0]), 0.2)
    chex.assert_shape(loss, ())
    np.testing.assert_allclose(loss, 0.94, rtol=1e-6)
    # a wide clip range is the plain 0.5 mean (v - R)^2 = 0.5 * (0 + 1 + 4) / 3 = 0.8333333
    loss_wide = f(jnp.array([1.0, 1.0, 0.0]), jnp.zeros(3), jnp.array([1.0, 0.0, 2.0]), 10.0)
    np.testing.assert_allclose(loss_wide, 5.0 / 6, rtol=1e-6)


# --- ratio_kl -------------------------------------------------------------------------------

@TRANSFORMS
def test_ratio_kl_hand_values(transform):
    # log r_i = [ln 2, 0], log r_c = [0, ln 2]:
    #   r_i (log r_i - log r_c) = [2 ln 2, -ln 2] = [1.3862944, -0.6931472], mean = 0.3465736
    f = transform(losses.ratio_kl)
    np.testing.assert_allclose(f(jnp.array([LN2, 0.0]), jnp.array([0.0, LN2])), 0.3465736,
                               rtol=1e-6)
    # teacher == central -> 0 whatever the ratio to the old policy
    np.testing.assert_allclose(f(jnp.array([0.3, -0.7]), jnp.array([0.3, -0.7])), 0.0,
                               atol=1e-7)


def test_ratio_kl_gradient_paths():
    lr, lrc = jnp.array([LN2, 0.0]), jnp.array([0.0, LN2])
    g_t, g_c = jax.grad(losses.ratio_kl, argnums=(0, 1))(lr, lrc)
    # the central ratio is stopped: no gradient into the central policy
    np.testing.assert_array_equal(g_c, 0.0)
    # d/dl [e^l (l - c)] / n = e^l (l - c + 1) / 2:
    #   [2 (ln 2 + 1) / 2, 1 (0 - ln 2 + 1) / 2] = [1.6931472, 0.1534264]
    np.testing.assert_allclose(g_t, [1.6931472, 0.1534264], rtol=1e-6)


def _sampled_ratios(key, old_logits, n):
    """Actions a ~ pi_old `[n]` and their log pi_old."""
    a = jax.random.categorical(key, old_logits, shape=(n,))
    return a, jax.nn.log_softmax(old_logits)[a]


def test_ratio_kl_is_unbiased_for_categorical_kl():
    """E_{a ~ pi_old}[ratio_kl] = KL(pi_i || pi_c) with pi_old != pi_i (importance sampled)."""
    old = jnp.array([0.2, -0.3, 0.5])
    teacher = jnp.array([1.0, -0.5, 0.0])
    central = jnp.array([-0.4, 0.6, 0.3])
    a, old_lp = _sampled_ratios(jax.random.key(0), old, MC_SAMPLES)
    lp_t = jax.nn.log_softmax(teacher)[a]
    lp_c = jax.nn.log_softmax(central)[a]

    estimate = float(losses.ratio_kl(lp_t - old_lp, lp_c - old_lp))
    # per-sample values of the same estimator, for its standard error
    per_sample = jax.vmap(lambda x, y: losses.ratio_kl(x[None], y[None]))(lp_t - old_lp,
                                                                           lp_c - old_lp)
    se = float(np.std(np.asarray(per_sample), ddof=1) / math.sqrt(MC_SAMPLES))
    np.testing.assert_allclose(float(jnp.mean(per_sample)), estimate, rtol=1e-4)
    exact = float(Categorical(teacher).kl(Categorical(central)))
    assert exact > 10 * se  # the check has power
    assert abs(estimate - exact) < MC_Z * se, (estimate, exact, se)
    # the estimator is of KL(pi_i || pi_c), not the reverse KL
    reverse = float(Categorical(central).kl(Categorical(teacher)))
    assert abs(estimate - reverse) > MC_Z * se, (estimate, reverse, se)


def test_ratio_kl_gradient_matches_closed_form_kl_gradient():
    """grad_teacher E_old[ratio_kl] = grad_teacher KL(pi_i || pi_c), by MC per component."""
    old = jnp.array([0.2, -0.3, 0.5])
    teacher = jnp.array([1.0, -0.5, 0.0])
    central = jnp.array([-0.4, 0.6, 0.3])
    a, old_lp = _sampled_ratios(jax.random.key(1), old, MC_SAMPLES)

    def per_sample(t_logits, c_logits, a_j, old_lp_j):
        lr = jax.nn.log_softmax(t_logits)[a_j] - old_lp_j
        lrc = jax.nn.log_softmax(c_logits)[a_j] - old_lp_j
        return losses.ratio_kl(lr[None], lrc[None])

    g_t, g_c = jax.vmap(jax.grad(per_sample, argnums=(0, 1)), in_axes=(None, None, 0, 0))(
        teacher, central, a, old_lp)
    chex.assert_shape(g_t, (MC_SAMPLES, 3))
    np.testing.assert_array_equal(g_c, 0.0)  # no path into the central logits
    g_mc = np.asarray(g_t, np.float64).mean(0)
    se = np.asarray(g_t, np.float64).std(0, ddof=1) / math.sqrt(MC_SAMPLES)

    g_exact = np.asarray(jax.grad(lambda t: Categorical(t).kl(Categorical(central)))(teacher))
    assert np.all(np.abs(g_exact) > 10 * se)  # each component is resolved by the MC
    assert np.all(np.abs(g_mc - g_exact) < MC_Z * se), (g_mc, g_exact, se)

    # the minibatch-mean form (as the update uses it) is the same estimate; its float32
    # scatter-add over 200k samples rounds differently, so hold it to the MC tolerance too
    def batch_loss(t_logits):
        lr = jax.nn.log_softmax(t_logits)[a] - old_lp
        lrc = jax.nn.log_softmax(central)[a] - old_lp
        return losses.ratio_kl(lr, lrc)

    g_batch = np.asarray(jax.grad(batch_loss)(teacher))
    assert np.all(np.abs(g_batch - g_exact) < MC_Z * se), (g_batch, g_exact, se)


# --- distillation (kl) and the closed-form coupling: the same KL, opposite gradient paths ---

def _kl_distill(tl, cl):
    return losses.distill_loss(Categorical(tl), Categorical(cl), jnp.zeros(tl.shape[0]),
                               jnp.ones(tl.shape[0]), "kl")


@TRANSFORMS
def test_distill_kl_hand_values_and_gradient_paths(transform):
    # teacher [1/4, 3/4], central uniform: KL(t || c) = 0.1308120 (see test_distributions);
    # second state: teacher uniform, central [1/4, 3/4]: KL = 0.1438410; mean = 0.1373265
    t = jnp.array([[0.0, LN3], [0.0, 0.0]])
    c = jnp.array([[0.0, 0.0], [0.0, LN3]])
    f = transform(_kl_distill)
    np.testing.assert_allclose(f(t, c), (0.1308120 + 0.1438410) / 2, rtol=1e-5)

    g_t, g_c = transform(jax.grad(f, argnums=(0, 1)))(t, c)
    # the teacher is the (stopped) target
    np.testing.assert_array_equal(g_t, 0.0)
    # d KL(p || softmax(z)) / dz = softmax(z) - p, over n = 2 states:
    #   state 0: ([1/2, 1/2] - [1/4, 3/4]) / 2 = [0.125, -0.125]
    #   state 1: ([1/4, 3/4] - [1/2, 1/2]) / 2 = [-0.125, 0.125]
    np.testing.assert_allclose(g_c, [[0.125, -0.125], [-0.125, 0.125]], rtol=1e-5)


@TRANSFORMS
def test_closed_form_kl_hand_values_and_only_the_teacher_moves(transform):
    # the same two states as above: mean KL(pi_i || pi_c) = 0.1373265
    t = jnp.array([[0.0, LN3], [0.0, 0.0]])
    c = jnp.array([[0.0, 0.0], [0.0, LN3]])
    f = transform(lambda tl, cl: losses.closed_form_kl(Categorical(tl), Categorical(cl)))
    np.testing.assert_allclose(f(t, c), (0.1308120 + 0.1438410) / 2, rtol=1e-5)
    g_t, g_c = jax.grad(f, argnums=(0, 1))(t, c)
    np.testing.assert_array_equal(g_c, 0.0)  # the central policy is the stopped anchor
    # d KL(softmax(z) || q) / dz_k = p_k (log p_k - log q_k - KL), over n = 2 states:
    #   state 0: p = [1/4, 3/4], q uniform, KL = 0.1308120:
    #     [0.25 (ln 0.5 - 0.1308120), 0.75 (ln 1.5 - 0.1308120)] / 2 = [-0.1029949, 0.1029949]
    #   state 1: p uniform, q = [1/4, 3/4], KL = 0.1438410:
    #     [0.5 (ln 2 - 0.1438410), 0.5 (ln 2/3 - 0.1438410)] / 2 = [0.1373265, -0.1373265]
    np.testing.assert_allclose(g_t, [[-0.1029949, 0.1029949], [0.1373265, -0.1373265]],
                               rtol=1e-5)


def test_distill_kl_gaussian():
    # KL(N(0, 1) || N(1, 2^2)) = 0.4431472 (see test_distributions), one state
    t = DiagGaussian(jnp.array([[0.0]]), jnp.array([[0.0]]))
    c_mean, c_log_std = jnp.array([[1.0]]), jnp.array([[LN2]])

    def f(t, c):
        return losses.distill_loss(t, c, jnp.zeros((1, 1)), jnp.ones(1), "kl")

    np.testing.assert_allclose(f(t, DiagGaussian(c_mean, c_log_std)), 0.4431472, rtol=1e-6)
    g = jax.grad(lambda m, s: f(t, DiagGaussian(m, s)), argnums=(0, 1))(c_mean, c_log_std)
    # d/dmu_c = (mu_c - mu_t) / sigma_c^2 = 1/4
    # d/dlog sigma_c = 1 - (sigma_t^2 + (mu_t - mu_c)^2) / sigma_c^2 = 1 - 2/4 = 0.5
    np.testing.assert_allclose(g[0], [[0.25]], rtol=1e-5)
    np.testing.assert_allclose(g[1], [[0.5]], rtol=1e-5)
    gt = jax.grad(lambda m: f(DiagGaussian(m, jnp.zeros((1, 1))),
                              DiagGaussian(c_mean, c_log_std)))(jnp.zeros((1, 1)))
    np.testing.assert_array_equal(gt, 0.0)
    # the closed-form coupling on the same pair: the same value, the teacher's gradient
    # d KL(N(m, 1) || N(1, 4)) / dm = (m - 1) / 4 = -1/4 at m = 0
    coupling = lambda m: losses.closed_form_kl(DiagGaussian(m, jnp.zeros((1, 1))),  # noqa: E731
                                               DiagGaussian(c_mean, c_log_std))
    np.testing.assert_allclose(coupling(jnp.zeros((1, 1))), 0.4431472, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(coupling)(jnp.zeros((1, 1))), [[-0.25]], rtol=1e-5)


# --- central_ratio_clip -------------------------------------------------------------------

# eps = eps_c = 0.2; r = pi_i/pi_old, w = pi_c/pi_old, rho_c = r/w; A already normalised;
# m1 = min(rA, clip(r)A), m2 = clip(rho_c, 0.8, 1.2) w A, term = max(0, m1 - m2):
#   r    w     rho_c  A    m1    m2                    term
#  1.1  0.8   1.375  +1   1.1   1.2 * 0.8 = 0.96       0.14  (pi_i too far above pi_c, A > 0)
#  1.1  1.0   1.1    +1   1.1   1.1                    0     (inside the central range)
#  0.9  1.25  0.72   -1  -0.9   0.8 * 1.25 * -1 = -1   0.1   (too far below pi_c, A < 0)
#  1.5  1.0   1.5    +1   1.2   1.2                    0     (PPO's own clip already binds)
#  1.3  1.25  1.04   -1  -1.3   1.04 * 1.25 * -1=-1.3  0     (inside)
#  1.0  0.5   2.0    -1  -1.0   1.2 * 0.5 * -1 = -0.6  0     (A pushes back towards pi_c)
# mean = 0.24 / 6 = 0.04
CLIP_R = np.array([1.1, 1.1, 0.9, 1.5, 1.3, 1.0], np.float32)
CLIP_W = np.array([0.8, 1.0, 1.25, 1.0, 1.25, 0.5], np.float32)
CLIP_A = np.array([1.0, 1.0, -1.0, 1.0, -1.0, -1.0], np.float32)


@TRANSFORMS
def test_central_ratio_clip_hand_values(transform):
    f = transform(losses.central_ratio_clip)
    args = (jnp.log(CLIP_R), jnp.log(CLIP_W), jnp.asarray(CLIP_A), 0.2, 0.2)
    np.testing.assert_allclose(f(*args), 0.04, rtol=1e-5)
    # alpha = 1: PPO's surrogate plus the term is -mean(min(m1, m2)), the pessimistic bound
    # over both clips: m1 = [1.1, 1.1, -0.9, 1.2, -1.3, -1.0], m2 = [0.96, 1.1, -1, 1.2, -1.3,
    # -0.6] -> min = [0.96, 1.1, -1, 1.2, -1.3, -1.0], sum -0.04, -mean = 0.0066667
    # (PPO alone: -mean(m1) = -0.2 / 6 = -0.0333333; plus the term's 0.04)
    total = losses.ppo_clip_loss(args[0], args[2], 0.2) + f(*args)
    np.testing.assert_allclose(total, 0.04 / 6, rtol=1e-5)
    # everything inside a wide central range: no term
    np.testing.assert_allclose(f(*args[:3], 0.2, 10.0), 0.0, atol=1e-7)


def test_central_ratio_clip_gradient_paths():
    g_t, g_c = jax.grad(losses.central_ratio_clip, argnums=(0, 1))(
        jnp.log(CLIP_R), jnp.log(CLIP_W), jnp.asarray(CLIP_A), 0.2, 0.2)
    # the central policy is the stopped anchor
    np.testing.assert_array_equal(g_c, 0.0)
    # d/d log r of (m1 - m2) where the term is active: d(rA)/d log r = rA (m2 is clipped, so
    # constant): sample 0: 1.1 / 6 = 0.1833333, sample 2: -0.9 / 6 = -0.15; elsewhere 0. So
    # with alpha = 1 the term cancels the surrogate's gradient exactly where pi_i / pi_c left
    # the range in the direction A favours, as PPO's clip does for pi_i / pi_old.
    np.testing.assert_allclose(g_t, [1.1 / 6, 0.0, -0.15, 0.0, 0.0, 0.0], rtol=1e-5,
                               atol=1e-7)
    g_ppo = jax.grad(losses.ppo_clip_loss)(jnp.log(CLIP_R), jnp.asarray(CLIP_A), 0.2)
    np.testing.assert_allclose(np.asarray(g_ppo + g_t)[[0, 2]], 0.0, atol=1e-7)


# --- normalize ------------------------------------------------------------------------------

@TRANSFORMS
def test_normalize_hand_values(transform):
    # x = [1, 2, 3, 4]: mean 2.5, population var 1.25, std 1.1180340
    #   -> [-1.5, -0.5, 0.5, 1.5] / 1.1180340 = [-1.3416408, -0.4472136, 0.4472136, 1.3416408]
    out = transform(losses.normalize)(jnp.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose(out, [-1.3416408, -0.4472136, 0.4472136, 1.3416408], rtol=1e-5)
    # a constant input has zero deviation and does not divide by zero
    np.testing.assert_allclose(transform(losses.normalize)(jnp.full(3, 7.0)), 0.0, atol=1e-6)


def test_normalize_axis_name_pools_moments_over_shards():
    x = jnp.array([1.0, 2.0, 3.0, 4.0])
    # two "devices" holding [1, 2] and [3, 4] normalise with the moments of all four
    sharded = jax.vmap(lambda s: losses.normalize(s, axis_name="data"), axis_name="data")(
        x.reshape(2, 2))
    np.testing.assert_allclose(sharded.reshape(-1), losses.normalize(x), rtol=1e-6)
    # without the axis name each shard uses its own moments: [-1, 1] twice
    local = jax.vmap(losses.normalize)(x.reshape(2, 2))
    np.testing.assert_allclose(local, [[-1.0, 1.0], [-1.0, 1.0]], rtol=1e-6)


# --- teacher_loss (PPO terms only) ----------------------------------------------------------

# Two samples, one per action, from a teacher with probs [1/4, 3/4]:
#   action     = [1, 0]          log pi_i = [ln 3/4, ln 1/4]
#   old        = [ln 1/2, ln 1/2] (pi_old uniform) -> r_i = [1.5, 0.5]
#   advantages = [1, -1] (already normalised)
#   clip (eps 0.2): r=1.5, A=+1 -> min(1.5, 1.2) = 1.2; r=0.5, A=-1 -> min(-0.5, -0.8) = -0.8
#                   loss = -(1.2 - 0.8) / 2 = -0.2
#   value: v = [1, 0], old v = [0, 0], R = [1, 2] -> 0.5 * (0.64 + 4) / 2 = 1.16
#   entropy: 0.5623351 for both states
#   total (c_v 0.5, c_ent 0.01): -0.2 + 0.58 - 0.005623351 = 0.3743766
#   approx_kl = mean((r - 1) - log r) = ((0.5 - 0.4054651) + (-0.5 + 0.6931472)) / 2 = 0.1438410
#   clip_frac = both |r - 1| > 0.2 -> 1.0
def _teacher_loss_args(teacher_logits=(0.0, LN3)):
    n = 2
    return dict(
        dist=Categorical(jnp.broadcast_to(jnp.asarray(teacher_logits), (n, 2))),
        value=jnp.array([1.0, 0.0]),
        action=jnp.array([1, 0]),
        old_log_prob=jnp.full(n, math.log(0.5)),
        old_value=jnp.zeros(n),
        advantages=jnp.array([1.0, -1.0]),
        returns=jnp.array([1.0, 2.0]),
    )


COEFS = dict(clip_eps=0.2, vf_coef=0.5, ent_coef=0.01)


@TRANSFORMS
def test_teacher_loss_hand_values(transform):
    f = transform(lambda args: losses.teacher_loss(**args, **COEFS))
    t = f(_teacher_loss_args())
    chex.assert_tree_shape_prefix(t, ())
    np.testing.assert_allclose(t.clip, -0.2, rtol=1e-5)
    np.testing.assert_allclose(t.value, 1.16, rtol=1e-6)
    np.testing.assert_allclose(t.entropy, 0.5623351, rtol=1e-6)
    np.testing.assert_allclose(t.loss, 0.3743766, rtol=1e-5)
    np.testing.assert_allclose(t.approx_kl, 0.1438410, rtol=1e-5)
    np.testing.assert_allclose(t.clip_frac, 1.0)


def test_teacher_loss_vmap_equals_loop():
    k = jax.random.split(jax.random.key(7), 7)
    P, n = 3, 5
    args = dict(
        dist=Categorical(jax.random.normal(k[0], (P, n, 2))),
        value=jax.random.normal(k[1], (P, n)),
        action=jax.random.randint(k[2], (P, n), 0, 2),
        old_log_prob=jnp.log(jax.random.uniform(k[3], (P, n), minval=0.2, maxval=0.8)),
        old_value=jax.random.normal(k[4], (P, n)),
        advantages=jax.random.normal(k[5], (P, n)),
        returns=jax.random.normal(k[6], (P, n)),
    )
    one_teacher = jax.jit(lambda a: losses.teacher_loss(**a, **COEFS))
    vm = jax.vmap(one_teacher)(args)
    chex.assert_tree_shape_prefix(vm, (P,))
    for i in range(P):
        one = one_teacher(jax.tree.map(lambda x, i=i: x[i], args))
        chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], vm), one, rtol=1e-5,
                                    atol=1e-6)


def test_ratio_kl_penalises_moving_away_from_central():
    """The estimate grows the further the teacher is from pi_c, and its gradient points back.

    pi_old = pi_c = uniform and one sample per action, so ratio_kl = KL(pi_i || uniform)
    exactly: 0 at s = 0, then increasing in s for teacher logits [0, s].
    """
    action = jnp.array([1, 0])
    old = jnp.full(2, math.log(0.5))

    def couple(s):
        lp = Categorical(jnp.broadcast_to(jnp.stack([0.0, s]), (2, 2))).log_prob(action)
        return losses.ratio_kl(lp - old, jnp.zeros(2))  # pi_c = pi_old: log r_c = 0

    values = [float(couple(s)) for s in (0.0, 0.5, 1.0, 2.0)]
    np.testing.assert_allclose(values[0], 0.0, atol=1e-6)
    assert all(b > a for a, b in zip(values, values[1:])), values
    # at s = ln 3: KL([1/4, 3/4] || uniform) = 0.1308121
    np.testing.assert_allclose(couple(jnp.float32(LN3)), 0.1308121, rtol=1e-4)
    g = jax.grad(couple)
    assert float(g(1.0)) > 0.0 and float(g(-1.0)) < 0.0


# --- distill_loss (every divergence) --------------------------------------------------------

# Two states; teacher [1/4, 3/4] in both, central uniform; actions [1, 0]; weights [1, 0.5].
#   kl : KL(t || c) = 0.1308120 per state -> (1 + 0.5) * 0.1308120 / 2 = 0.0981090
#   nll: -log pi_c(a) = ln 2 per state     -> 1.5 * 0.6931472 / 2     = 0.5198604
#   mse: (0 - 0)^2 + (0 - ln 3)^2 = 1.2069490 -> 1.5 * 1.2069490 / 2  = 0.9052118
@pytest.mark.parametrize("divergence,expected", [("kl", 0.0981090), ("nll", 0.5198604),
                                                 ("mse", 0.9052118)])
def test_distill_loss_hand_values_and_teacher_is_stopped(divergence, expected):
    t = jnp.array([[0.0, LN3], [0.0, LN3]])
    c = jnp.zeros((2, 2))
    action, weight = jnp.array([1, 0]), jnp.array([1.0, 0.5])

    def f(tl, cl):
        return losses.distill_loss(Categorical(tl), Categorical(cl), action, weight, divergence)

    np.testing.assert_allclose(f(t, c), expected, rtol=1e-5)
    g_t, g_c = jax.grad(f, argnums=(0, 1))(t, c)
    np.testing.assert_array_equal(g_t, 0.0)
    assert float(jnp.abs(g_c).sum()) > 0.0
    # zero weights switch the term off
    np.testing.assert_allclose(
        losses.distill_loss(Categorical(t), Categorical(c), action, jnp.zeros(2), divergence), 0.0)


def test_distill_loss_kl_equals_the_closed_form_and_gaussian_mse():
    k1, k2 = jax.random.split(jax.random.key(8))
    t, c = Categorical(jax.random.normal(k1, (4, 3))), Categorical(jax.random.normal(k2, (4, 3)))
    np.testing.assert_allclose(losses.distill_loss(t, c, jnp.zeros(4), jnp.ones(4), "kl"),
                               jnp.mean(t.kl(c)), rtol=1e-6)
    # Gaussian mse matches the means only: (1 - 0)^2 + (2 - 0)^2 = 5, whatever the stds
    tg = DiagGaussian(jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 0.0]]))
    cg = DiagGaussian(jnp.zeros((1, 2)), jnp.array([[1.0, -1.0]]))
    np.testing.assert_allclose(losses.distill_loss(tg, cg, jnp.zeros((1, 2)), jnp.ones(1), "mse"),
                               5.0, rtol=1e-6)
    with pytest.raises(ValueError, match="divergence"):
        losses.distill_loss(t, c, jnp.zeros(4), jnp.ones(4), "js")


# --- dnc_coupling ---------------------------------------------------------------------------

def test_dnc_coupling_hand_values_and_gradient_paths():
    # two teachers with state-independent policies p0 = [1/4, 3/4], p1 = uniform, one state
    # each, so cross[i, j] = p_i:
    #   L_0 = rho_0 (KL(p0||p0) + KL(p0||p0)) + rho_1 (KL(p0||p1) + KL(p1||p0))
    #       = 0.7 * (0.1308120 + 0.1438410) = 0.7 * 0.2746530 = 0.1922571
    #   L_1 = 0.3 * 0.2746530 = 0.0823959
    rho = jnp.array([0.3, 0.7])
    own = jnp.array([[[0.0, LN3]], [[0.0, 0.0]]])  # [P, n, A]
    cross = jnp.broadcast_to(own[:, None], (2, 2, 1, 2))  # [i, j, n, A]

    def f(own_l, cross_l):
        return losses.dnc_coupling(Categorical(own_l), Categorical(cross_l), rho)

    out = f(own, cross)
    chex.assert_shape(out, (2,))
    np.testing.assert_allclose(out, [0.1922571, 0.0823959], rtol=1e-5)
    # identical teachers are not penalised
    np.testing.assert_allclose(f(jnp.zeros_like(own), jnp.zeros_like(cross)), 0.0, atol=1e-7)
    # L_0 reaches teacher 0 only (its own states and its passes on partition 1's states)
    g_own, g_cross = jax.grad(lambda o, c: f(o, c)[0], argnums=(0, 1))(own, cross)
    np.testing.assert_array_equal(g_own[1], 0.0)
    np.testing.assert_array_equal(g_cross[1], 0.0)
    assert float(jnp.abs(g_own[0]).sum()) > 0.0 and float(jnp.abs(g_cross[0]).sum()) > 0.0


def test_feature_loss_hand_values_and_teacher_features_are_stopped():
    pred = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    target = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    weight = jnp.array([1.0, 0.5])
    # sample 0: 1 + 4 = 5; sample 1: 1 + 4 = 5, weight 0.5 -> mean(5, 2.5) = 3.75
    np.testing.assert_allclose(float(losses.feature_loss(pred, target, weight)), 3.75, rtol=1e-6)
    g_pred, g_target = jax.grad(losses.feature_loss, argnums=(0, 1))(pred, target, weight)
    # d/dpred = 2 w (pred - target) / n
    np.testing.assert_allclose(g_pred, [[1.0, 2.0], [-0.5, -1.0]], rtol=1e-6)
    np.testing.assert_array_equal(g_target, 0.0)


def test_distral_reward_hand_value():
    # r + (alpha/beta) log pi_c - (1/beta) log pi_i, alpha 0.5, beta 5, pi_c 1/2, pi_i 1/4:
    #   1 + 0.1 * (-0.6931472) + 0.2 * 1.3862944 = 1 - 0.0693147 + 0.2772589 = 1.2079442
    out = losses.distral_reward(jnp.array([1.0]), jnp.log(jnp.array([0.5])),
                                jnp.log(jnp.array([0.25])), 0.5, 5.0)
    np.testing.assert_allclose(out, [1.2079442], rtol=1e-6)
