"""Running mean / variance of observations (Chan et al. parallel combination)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from distillax import normalizer
from distillax.normalizer import RunningStats, apply, init_stats, update


def _data(key, shape, mean, std):
    return mean + std * jax.random.normal(key, shape)


def test_init_stats():
    s = init_stats((3, 4))
    chex.assert_shape([s.mean, s.var], (3, 4))
    chex.assert_shape(s.count, (3,))
    np.testing.assert_array_equal(s.mean, 0.0)
    np.testing.assert_array_equal(s.var, 1.0)
    np.testing.assert_allclose(s.count, 1e-4)


def test_two_updates_equal_the_concatenation():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    # two batches from different distributions, so combining them is not trivial
    x1 = _data(k1, (300, 4), jnp.asarray([3.0, -1.0, 0.0, 2.0]), jnp.asarray([2.0, 0.5, 1.0, 3.0]))
    x2 = _data(k2, (500, 4), jnp.asarray([1.0, 1.0, 0.5, -2.0]), jnp.asarray([1.0, 0.5, 2.0, 1.0]))
    s = update(update(init_stats((4,)), x1, (0,)), x2, (0,))
    both = np.concatenate([np.asarray(x1), np.asarray(x2)], 0).astype(np.float64)
    # the prior (count 1e-4, mean 0, var 1) shifts the result by ~1e-4 / 800 * mean^2 < 1e-5
    np.testing.assert_allclose(s.mean, both.mean(0), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(s.var, both.var(0), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(s.count, 800 + 1e-4, rtol=1e-6)
    # the same as a single update with the concatenation
    one = update(init_stats((4,)), jnp.asarray(both, jnp.float32), (0,))
    np.testing.assert_allclose(s.mean, one.mean, atol=1e-5)
    np.testing.assert_allclose(s.var, one.var, atol=1e-5)


def test_hand_computed_update():
    # The prior is a pseudo-sample of weight c0 = 1e-4 with mean 0 and variance 1, so with
    # total t = n + c0: mean = sum(x) / t, var = (c0 * 1 + sum(x^2) - t * mean^2) / t.
    # x = (1, 3): t = 2.0001, mean = 4 / 2.0001 = 1.99990, var = (1e-4 + 10 - 2.0001 *
    # 1.9999^2) / 2.0001 = 1.00020 (the data alone: mean 2, var 1)
    s = update(init_stats((1,)), jnp.asarray([[1.0], [3.0]]), (0,))
    np.testing.assert_allclose(s.mean, [1.99990], rtol=1e-5)
    np.testing.assert_allclose(s.var, [1.00020], rtol=1e-5)
    # then (5): t = 3.0001, mean = 9 / 3.0001 = 2.99990, var = (1e-4 + 35 - 3.0001 *
    # 2.9999^2) / 3.0001 = 2.66691 (the data alone: mean 3, var 8/3 = 2.66667)
    s = update(s, jnp.asarray([[5.0]]), (0,))
    np.testing.assert_allclose(s.mean, [2.99990], rtol=1e-5)
    np.testing.assert_allclose(s.var, [2.66691], rtol=1e-5)
    np.testing.assert_allclose(s.count, 3.0001, rtol=1e-6)


def test_per_teacher_stats_over_time_and_env_axes():
    # as the trainer folds a rollout [P, T, B, obs] into per-teacher stats [P, obs]
    P, T, B = 3, 20, 8
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    x1 = _data(keys[0], (P, T, B, 2), jnp.arange(P)[:, None, None, None] * 5.0, 2.0)
    x2 = _data(keys[1], (P, T, B, 2), -3.0, 0.5)
    s = jax.jit(lambda s, x: update(s, x, (1, 2)))(init_stats((P, 2)), x1)
    s = jax.jit(lambda s, x: update(s, x, (1, 2)))(s, x2)
    chex.assert_shape([s.mean, s.var], (P, 2))
    chex.assert_shape(s.count, (P,))
    for p in range(P):
        both = np.concatenate([np.asarray(x1[p]).reshape(-1, 2), np.asarray(x2[p]).reshape(-1, 2)])
        np.testing.assert_allclose(s.mean[p], both.mean(0), atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(s.var[p], both.var(0), atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(s.count, 2 * T * B + 1e-4, rtol=1e-6)


def test_sharded_update_equals_whole_batch():
    # 4 equal shards combined over an axis name == one update on all the data
    x = _data(jax.random.PRNGKey(2), (4, 50, 3), jnp.asarray([1.0, -2.0, 4.0]), 1.5)
    s0 = init_stats((3,))
    shards = jax.vmap(lambda xs: update(s0, xs, (0,), axis_name="data"), axis_name="data")(x)
    whole = update(s0, x.reshape(200, 3), (0,))
    for leaf_s, leaf_w in zip(jax.tree.leaves(shards), jax.tree.leaves(whole)):
        # every replica holds the same statistics, equal to the whole batch's
        np.testing.assert_allclose(leaf_s, np.broadcast_to(leaf_w, leaf_s.shape), rtol=1e-5,
                                   atol=1e-5)


def test_apply_disabled_is_identity():
    s = RunningStats(jnp.asarray([1.0, 2.0]), jnp.asarray([4.0, 9.0]), jnp.asarray(10.0))
    x = jnp.asarray([[100.0, -3.0], [0.5, 2.0]])
    # no shift, no scaling, no clipping (enabled, 100 would become (100 - 1) / 2 -> clip 10)
    np.testing.assert_array_equal(apply(s, x, False), x)
    np.testing.assert_array_equal(jax.jit(apply, static_argnums=(2,))(s, x, False), x)


def test_apply_enabled_standardises_and_clips():
    s = RunningStats(jnp.asarray([1.0, 2.0]), jnp.asarray([4.0, 9.0]), jnp.asarray(10.0))
    x = jnp.asarray([[5.0, -1.0], [100.0, 2.0]])
    # (5 - 1) / 2 = 2; (-1 - 2) / 3 = -1; (100 - 1) / 2 = 49.5 -> clipped to 10; 0
    np.testing.assert_allclose(apply(s, x, True), [[2.0, -1.0], [10.0, 0.0]], rtol=1e-6)
    # per-teacher stats [P, 1, obs] broadcast over a batch [P, n, obs]
    sp = RunningStats(jnp.asarray([[0.0], [10.0]]), jnp.asarray([[1.0], [4.0]]), jnp.ones(2))
    xp = jnp.asarray([[[1.0], [2.0]], [[12.0], [6.0]]])
    sp_b = jax.tree.map(lambda a: a[:, None], sp)
    np.testing.assert_allclose(normalizer.apply(sp_b, xp, True),
                               [[[1.0], [2.0]], [[1.0], [-2.0]]], rtol=1e-6)


def test_update_is_a_pure_pytree_function():
    s = init_stats((2,))
    x = jnp.ones((5, 2))
    a = jax.jit(update, static_argnums=(2,))(s, x, (0,))
    b = update(s, x, (0,))
    chex.assert_trees_all_close(a, b, atol=1e-6)
    # the input stats are untouched
    np.testing.assert_array_equal(s.mean, 0.0)
    assert isinstance(a, RunningStats)
