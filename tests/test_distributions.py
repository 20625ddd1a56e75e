"""Categorical and diagonal-Gaussian distributions: hand-computed values, closed forms vs MC.

Hand values use logits [0, ln 3] -> probs [1/4, 3/4] and Gaussians with sigma in {1, 2}.
Monte-Carlo checks are seeded; their tolerance is a multiple of the estimator's standard
error, so they fail only when the closed form is wrong (or with probability ~1e-6).
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillax.distributions import Categorical, DiagGaussian, stop_gradient

LN2, LN3 = math.log(2.0), math.log(3.0)
LN2PI = math.log(2.0 * math.pi)  # 1.8378771
MC_SAMPLES = 200_000
MC_Z = 5.0  # tolerance in standard errors


def _identity(f):
    return f


TRANSFORMS = pytest.mark.parametrize("transform", [_identity, jax.jit], ids=["nojit", "jit"])


def _mc_mean(values: jax.Array) -> tuple[float, float]:
    """(sample mean, standard error of the mean) of per-sample values `[N]`."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


# --- Categorical ----------------------------------------------------------------------------

@TRANSFORMS
def test_categorical_hand_values(transform):
    p = Categorical(jnp.array([0.0, LN3]))  # probs [1/4, 3/4]
    q = Categorical(jnp.array([0.0, 0.0]))  # uniform [1/2, 1/2]

    log_prob = transform(lambda d, a: d.log_prob(a))
    # log pi(1) = ln 3/4 = -0.2876821, log pi(0) = ln 1/4 = -1.3862944
    np.testing.assert_allclose(log_prob(p, jnp.array(1)), -0.2876821, rtol=1e-6)
    np.testing.assert_allclose(log_prob(p, jnp.array(0)), -1.3862944, rtol=1e-6)
    # float actions (as stored in a batch) index the same way
    p2 = Categorical(jnp.array([[0.0, LN3], [0.0, LN3]]))
    np.testing.assert_allclose(log_prob(p2, jnp.array([1.0, 0.0])), [-0.2876821, -1.3862944],
                               rtol=1e-6)

    # H = -(1/4 ln 1/4 + 3/4 ln 3/4) = ln 4 - 3/4 ln 3 = 1.3862944 - 0.8239592 = 0.5623351
    np.testing.assert_allclose(transform(lambda d: d.entropy())(p), 0.5623351, rtol=1e-6)
    # uniform over 2: H = ln 2 = 0.6931472
    np.testing.assert_allclose(transform(lambda d: d.entropy())(q), LN2, rtol=1e-6)

    kl = transform(lambda a, b: a.kl(b))
    # KL(p || q) = 1/4 ln(1/4 / 1/2) + 3/4 ln(3/4 / 1/2) = -0.1732868 + 0.3040988 = 0.1308120
    np.testing.assert_allclose(kl(p, q), 0.1308120, rtol=1e-5)
    # KL(q || p) = 1/2 ln(1/2 / 1/4) + 1/2 ln(1/2 / 3/4) = 0.3465736 - 0.2027326 = 0.1438410
    np.testing.assert_allclose(kl(q, p), 0.1438410, rtol=1e-5)

    assert int(transform(lambda d: d.mode())(p)) == 1
    # softmax is shift invariant: logits [5, 5 + ln 3] are the same distribution
    p_shift = Categorical(jnp.array([5.0, 5.0 + LN3]))
    np.testing.assert_allclose(kl(p, p_shift), 0.0, atol=1e-6)


def test_categorical_batched_shapes():
    logits = jnp.zeros((2, 3, 4))
    d = Categorical(logits)
    chex.assert_shape(d.log_prob(jnp.zeros((2, 3), jnp.int32)), (2, 3))
    chex.assert_shape(d.entropy(), (2, 3))
    chex.assert_shape(d.kl(d), (2, 3))
    chex.assert_shape(d.mode(), (2, 3))
    chex.assert_shape(d.sample(jax.random.key(0)), (2, 3))
    # uniform over 4: log pi = -ln 4 = -1.3862944, H = ln 4
    np.testing.assert_allclose(d.log_prob(jnp.full((2, 3), 3)), -math.log(4.0), rtol=1e-6)
    np.testing.assert_allclose(d.entropy(), math.log(4.0), rtol=1e-6)


@TRANSFORMS
def test_categorical_vmap_matches_batched(transform):
    """rlax style: the same function jitted or not, and under vmap, gives the same numbers."""
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    lp = jax.random.normal(k1, (5, 3)) * 2.0
    lq = jax.random.normal(k2, (5, 3)) * 2.0
    act = jax.random.randint(k3, (5,), 0, 3)

    def f(p_logits, q_logits, a):
        p, q = Categorical(p_logits), Categorical(q_logits)
        return p.kl(q), p.entropy(), p.log_prob(a), p.mode()

    batched = transform(f)(lp, lq, act)
    vmapped = transform(jax.vmap(f))(lp, lq, act)
    looped = [f(lp[i], lq[i], act[i]) for i in range(5)]
    for j in range(4):
        np.testing.assert_allclose(vmapped[j], batched[j], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.stack([r[j] for r in looped]), batched[j],
                                   rtol=1e-6, atol=1e-7)


def test_categorical_kl_self_is_zero():
    logits = jax.random.normal(jax.random.key(2), (7, 5)) * 3.0
    d = Categorical(logits)
    np.testing.assert_allclose(d.kl(d), 0.0, atol=1e-6)
    assert bool(jnp.all(d.kl(Categorical(logits + 1.0)) < 1e-5))  # shift invariance
    assert bool(jnp.all(d.kl(Categorical(jnp.flip(logits, -1))) > 0.0))  # a different one


def test_categorical_kl_and_entropy_match_monte_carlo():
    p = Categorical(jnp.array([0.3, -1.2, 1.0, 0.0]))
    q = Categorical(jnp.array([-0.5, 0.4, 0.2, 1.1]))
    a = jax.vmap(p.sample)(jax.random.split(jax.random.key(3), MC_SAMPLES))
    chex.assert_shape(a, (MC_SAMPLES,))
    # sampling frequencies match the probabilities (binomial standard error)
    probs = np.asarray(jax.nn.softmax(p.logits))
    freq = np.bincount(np.asarray(a), minlength=4) / MC_SAMPLES
    se = np.sqrt(probs * (1 - probs) / MC_SAMPLES)
    assert np.all(np.abs(freq - probs) < MC_Z * se), (freq, probs)

    # log_prob takes actions `[...]` matching the distribution's batch axes `[...]`
    pn = Categorical(jnp.broadcast_to(p.logits, (MC_SAMPLES, 4)))
    qn = Categorical(jnp.broadcast_to(q.logits, (MC_SAMPLES, 4)))
    kl_mc, kl_se = _mc_mean(pn.log_prob(a) - qn.log_prob(a))
    assert abs(float(p.kl(q)) - kl_mc) < MC_Z * kl_se, (float(p.kl(q)), kl_mc, kl_se)
    h_mc, h_se = _mc_mean(-pn.log_prob(a))
    assert abs(float(p.entropy()) - h_mc) < MC_Z * h_se, (float(p.entropy()), h_mc, h_se)


# --- DiagGaussian ---------------------------------------------------------------------------

@TRANSFORMS
def test_gaussian_hand_values(transform):
    # p: N(0, 1) x N(1, 2^2)
    p = DiagGaussian(jnp.array([0.0, 1.0]), jnp.array([0.0, LN2]))

    # at a = [1, 1]: dim 0: -1/2 * 1^2 - 0 - 1/2 ln 2pi; dim 1: -0 - ln 2 - 1/2 ln 2pi
    # sum = -0.5 - 0.6931472 - 1.8378771 = -3.0310243
    np.testing.assert_allclose(transform(lambda d, a: d.log_prob(a))(p, jnp.array([1.0, 1.0])),
                               -3.0310243, rtol=1e-6)
    # H = sum(log sigma) + d/2 (1 + ln 2pi) = ln 2 + 1 + ln 2pi = 3.5310243
    np.testing.assert_allclose(transform(lambda d: d.entropy())(p), 3.5310243, rtol=1e-6)
    np.testing.assert_allclose(transform(lambda d: d.mode())(p), [0.0, 1.0])

    # 1-d KL(N(0, 1) || N(1, 2^2)) = ln(2/1) + (1 + (0 - 1)^2) / (2 * 4) - 1/2
    #                              = 0.6931472 + 0.25 - 0.5 = 0.4431472
    a = DiagGaussian(jnp.array([0.0]), jnp.array([0.0]))
    b = DiagGaussian(jnp.array([1.0]), jnp.array([LN2]))
    kl = transform(lambda x, y: x.kl(y))
    np.testing.assert_allclose(kl(a, b), 0.4431472, rtol=1e-6)
    # KL(N(1, 4) || N(0, 1)) = ln(1/2) + (4 + 1) / 2 - 1/2 = -0.6931472 + 2 = 1.3068528
    np.testing.assert_allclose(kl(b, a), 1.3068528, rtol=1e-6)
    # dims add: KL([a, b] || [b, a]) = 0.4431472 + 1.3068528 = 1.75
    ab = DiagGaussian(jnp.array([0.0, 1.0]), jnp.array([0.0, LN2]))
    ba = DiagGaussian(jnp.array([1.0, 0.0]), jnp.array([LN2, 0.0]))
    np.testing.assert_allclose(kl(ab, ba), 1.75, rtol=1e-6)


def test_gaussian_broadcast_log_std_shapes():
    """A state-independent `log_std [A]` broadcasts against `mean [N, A]`."""
    mean = jnp.zeros((3, 2))
    d = DiagGaussian(mean, jnp.array([0.0, LN2]))
    chex.assert_shape(d.entropy(), (3,))
    chex.assert_shape(d.log_prob(jnp.zeros((3, 2))), (3,))
    chex.assert_shape(d.kl(d), (3,))
    chex.assert_shape(d.sample(jax.random.key(0)), (3, 2))
    # H = ln 2 + 1 + ln 2pi = 3.5310243 per row
    np.testing.assert_allclose(d.entropy(), 3.5310243, rtol=1e-6)
    # log p(0) = -ln 2 - ln 2pi = -2.5310243 per row
    np.testing.assert_allclose(d.log_prob(jnp.zeros((3, 2))), -2.5310243, rtol=1e-6)


@TRANSFORMS
def test_gaussian_vmap_matches_batched(transform):
    k = jax.random.split(jax.random.key(4), 5)
    mp, mq = jax.random.normal(k[0], (6, 3)), jax.random.normal(k[1], (6, 3))
    sp, sq = 0.5 * jax.random.normal(k[2], (6, 3)), 0.5 * jax.random.normal(k[3], (6, 3))
    x = jax.random.normal(k[4], (6, 3))

    def f(mp, sp, mq, sq, x):
        p, q = DiagGaussian(mp, sp), DiagGaussian(mq, sq)
        return p.kl(q), p.entropy(), p.log_prob(x)

    batched = transform(f)(mp, sp, mq, sq, x)
    vmapped = transform(jax.vmap(f))(mp, sp, mq, sq, x)
    for j in range(3):
        np.testing.assert_allclose(vmapped[j], batched[j], rtol=1e-5, atol=1e-6)


def test_gaussian_kl_self_is_zero():
    k1, k2 = jax.random.split(jax.random.key(5))
    d = DiagGaussian(jax.random.normal(k1, (4, 3)), jax.random.normal(k2, (4, 3)))
    np.testing.assert_allclose(d.kl(d), 0.0, atol=1e-6)
    assert bool(jnp.all(d.kl(d.replace(mean=d.mean + 0.1)) > 0.0))


def test_gaussian_kl_and_entropy_match_monte_carlo():
    p = DiagGaussian(jnp.array([0.3, -1.0, 2.0]), jnp.array([0.2, -0.5, 0.0]))
    q = DiagGaussian(jnp.array([0.0, -0.4, 1.5]), jnp.array([0.5, 0.0, -0.3]))
    x = jax.vmap(p.sample)(jax.random.split(jax.random.key(6), MC_SAMPLES))
    chex.assert_shape(x, (MC_SAMPLES, 3))
    # sample moments: mean within 5 SE, std within 1%
    se = np.exp(np.asarray(p.log_std)) / math.sqrt(MC_SAMPLES)
    assert np.all(np.abs(np.asarray(x).mean(0) - np.asarray(p.mean)) < MC_Z * se)
    np.testing.assert_allclose(np.asarray(x).std(0), np.exp(np.asarray(p.log_std)), rtol=1e-2)

    kl_mc, kl_se = _mc_mean(p.log_prob(x) - q.log_prob(x))
    assert abs(float(p.kl(q)) - kl_mc) < MC_Z * kl_se, (float(p.kl(q)), kl_mc, kl_se)
    h_mc, h_se = _mc_mean(-p.log_prob(x))
    assert abs(float(p.entropy()) - h_mc) < MC_Z * h_se, (float(p.entropy()), h_mc, h_se)


# --- helpers --------------------------------------------------------------------------------

def test_stop_gradient_blocks_every_parameter():
    def f(mean, log_std):
        d = stop_gradient(DiagGaussian(mean, log_std))
        return jnp.sum(d.entropy() + d.log_prob(jnp.ones(2)))

    g_mean, g_std = jax.grad(f, argnums=(0, 1))(jnp.zeros(2), jnp.zeros(2))
    np.testing.assert_array_equal(g_mean, 0.0)
    np.testing.assert_array_equal(g_std, 0.0)

    # without the stop, the same function has a gradient (so the check above can fail)
    g = jax.grad(lambda lg: Categorical(lg).entropy())(jnp.array([0.0, LN3]))
    assert float(jnp.abs(g).sum()) > 0.0
    g_sg = jax.grad(lambda lg: stop_gradient(Categorical(lg)).entropy())(jnp.array([0.0, LN3]))
    np.testing.assert_array_equal(g_sg, 0.0)


def test_combine_is_the_normalised_product():
    # Categorical: logits alpha * h + beta * f = 0.5 * [0, 2] + 2 * [1, 0] = [2, 1]
    c = Categorical(jnp.array([0.0, 2.0])).combine(Categorical(jnp.array([1.0, 0.0])), 0.5, 2.0)
    np.testing.assert_allclose(c.logits, [2.0, 1.0])
    # Gaussian: the task column's std is read relative to sqrt(beta / (1 - alpha)), so its
    # precision in the product is (1 - alpha) exp(-2 log_std), whatever beta.
    # Two unit Gaussians, alpha 0.5, beta 5: precisions 0.5 and 0.5 -> 1: a unit Gaussian (a
    # plain product would have precision 0.5 + 5 = 5.5, std 0.43), mean (0 + 2) / 2 = 1
    g = DiagGaussian(jnp.array([0.0]), jnp.array([0.0])).combine(
        DiagGaussian(jnp.array([2.0]), jnp.array([0.0])), 0.5, 5.0)
    np.testing.assert_allclose(g.mean, [1.0], rtol=1e-6)
    np.testing.assert_allclose(g.log_std, [0.0], atol=1e-6)
    # alpha 0.25, N(0, 1) and a column N(4, 2^2): precisions 0.25 and 0.75 / 4 = 0.1875 ->
    # 0.4375; mean 0.1875 * 4 / 0.4375 = 12/7; log std = -ln(0.4375) / 2 = 0.4133393
    p1 = DiagGaussian(jnp.array([0.0]), jnp.array([0.0]))
    p2 = DiagGaussian(jnp.array([4.0]), jnp.array([LN2]))
    g = p1.combine(p2, 0.25, 3.0)
    np.testing.assert_allclose(g.mean, [12.0 / 7.0], rtol=1e-6)
    np.testing.assert_allclose(g.log_std, [0.4133393], rtol=1e-6)
    # it is the product p1^alpha * f^beta with f = p2 at std 2 sqrt(beta / (1 - alpha)):
    # log-densities add up to a constant, so alpha log p1 + beta log f - log g is flat in x
    f = DiagGaussian(jnp.array([4.0]), jnp.array([LN2 + 0.5 * math.log(3.0 / 0.75)]))
    xs = jnp.array([[-1.0], [0.5], [3.0]])
    gap = jax.vmap(lambda x: 0.25 * p1.log_prob(x) + 3.0 * f.log_prob(x) - g.log_prob(x))(xs)
    np.testing.assert_allclose(gap - gap[0], 0.0, atol=1e-5)


def test_widened_scales_the_std_or_the_temperature_per_sample():
    # noise injection's acting policy: sample 0 as it is, sample 1 at scale 3
    scale = jnp.array([1.0, 3.0])
    g = DiagGaussian(jnp.array([[0.0, 1.0], [0.0, 1.0]]), jnp.array([[0.0, LN2]] * 2))
    w = g.widened(scale)
    np.testing.assert_allclose(w.mean, g.mean)
    np.testing.assert_allclose(jnp.exp(w.log_std), [[1.0, 2.0], [3.0, 6.0]], rtol=1e-6)
    c = Categorical(jnp.array([[3.0, 0.0], [3.0, 0.0]])).widened(scale)
    # softmax([3, 0]) puts 0.9526 on action 0; at temperature 3, softmax([1, 0]): 0.7311
    np.testing.assert_allclose(jnp.exp(c.log_probs[:, 0]), [0.9525741, 0.7310586], rtol=1e-6)
