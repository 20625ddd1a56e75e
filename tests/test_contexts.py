"""Context spaces, the sampler rho, and the three partitioners (kmeans / grid / tasks)."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillax.contexts import (
    ContextSpace,
    Partition,
    assign,
    kmeans,
    make_partition,
    sample_in_cell,
)
from distillax.envs import cartpole, pendulum

CARTPOLE = cartpole.SPACE  # (length, masspole, gain_abs, gain_sign in {-1, +1})
PENDULUM = pendulum.SPACE  # (mass, length, gravity), all continuous
SIGN = 3  # index of gain_sign in the cartpole context
TASKS = ContextSpace(names=("goal_x", "goal_y"), low=(-1.0, -1.0), high=(1.0, 1.0),
                     tasks=((-1.0, 0.0), (1.0, 0.0), (0.0, 1.0)))


@pytest.fixture(scope="module")
def kmeans_partition():
    return make_partition(jax.random.PRNGKey(0), CARTPOLE, "kmeans", 4)


# --- ContextSpace --------------------------------------------------------------------------


def test_space_validation():
    with pytest.raises(ValueError, match="finite low < high"):
        ContextSpace(names=("a",), low=(1.0,), high=(1.0,))
    with pytest.raises(ValueError, match="need 2 entries"):
        ContextSpace(names=("a", "b"), low=(0.0,), high=(1.0, 1.0))
    with pytest.raises(ValueError, match="every task needs 2 values"):
        ContextSpace(names=("a", "b"), low=(0.0, 0.0), high=(1.0, 1.0), tasks=((0.0,),))
    assert CARTPOLE.dim == 4 and PENDULUM.values == (None, None, None)


def test_sample_in_bounds_and_discrete_values():
    c = jax.jit(lambda k: CARTPOLE.sample(k, (20_000,)))(jax.random.PRNGKey(1))
    chex.assert_shape(c, (20_000, 4))
    low, high = np.asarray(CARTPOLE.low), np.asarray(CARTPOLE.high)
    assert np.all(c >= low) and np.all(c <= high)
    # the sign takes only its two values, each with probability 1/2:
    # std of the fraction = sqrt(0.25 / 20000) = 0.0035, so 0.02 is ~6 sigma.
    sign = np.asarray(c[:, SIGN])
    assert set(np.unique(sign).tolist()) == {-1.0, 1.0}
    assert abs(np.mean(sign == 1.0) - 0.5) < 0.02
    # continuous dims are uniform: mean of U[0.25, 1.0] = 0.625, of U[0.05, 0.5] = 0.275,
    # of U[0.5, 1.5] = 1.0 (std of the mean < 0.003).
    np.testing.assert_allclose(np.mean(c[:, :3], 0), [0.625, 0.275, 1.0], atol=0.01)
    # and genuinely continuous (not a handful of values)
    assert len(np.unique(np.asarray(c[:, 0]))) > 19_000


def test_sample_shapes_and_determinism():
    k = jax.random.PRNGKey(3)
    chex.assert_shape(PENDULUM.sample(k), (3,))
    chex.assert_shape(PENDULUM.sample(k, (2, 5)), (2, 5, 3))
    np.testing.assert_array_equal(PENDULUM.sample(k, (7,)), PENDULUM.sample(k, (7,)))
    other = PENDULUM.sample(jax.random.PRNGKey(4), (7,))
    assert not np.array_equal(PENDULUM.sample(k, (7,)), other)


def test_scale_and_features_map_bounds():
    low, high = jnp.asarray(CARTPOLE.low), jnp.asarray(CARTPOLE.high)
    mid = (low + high) / 2  # (0.625, 0.275, 1.0, 0.0)
    np.testing.assert_allclose(CARTPOLE.scale(low), [0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(CARTPOLE.scale(high), [1, 1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(CARTPOLE.scale(mid), [0.5] * 4, atol=1e-6)
    np.testing.assert_allclose(CARTPOLE.features(low), [-1, -1, -1, -1], atol=1e-6)
    np.testing.assert_allclose(CARTPOLE.features(high), [1, 1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(CARTPOLE.features(mid), [0, 0, 0, 0], atol=1e-6)
    # pendulum mass 1.0 on [0.5, 1.5]: 0.5 -> feature 0; length 0.7: (0.7 - 0.5) / 1 = 0.2
    # -> feature 2 * 0.2 - 1 = -0.6; gravity 12.5 on [5, 15]: 0.75 -> 0.5.
    c = jnp.asarray([[1.0, 0.7, 12.5]])
    np.testing.assert_allclose(PENDULUM.scale(c), [[0.5, 0.2, 0.75]], atol=1e-6)
    np.testing.assert_allclose(PENDULUM.features(c), [[0.0, -0.6, 0.5]], atol=1e-6)


def test_a_cyclic_dimension_is_a_point_on_the_circle():
    """pointgoal's goal angle: 0 and 2 pi are one goal, so one input (a line put them at -1
    and 1); a linear dimension beside it keeps its one feature."""
    from distillax.envs.pointgoal import SPACE as RING

    assert RING.feature_dim == 2
    angles = jnp.asarray([[0.0], [np.pi / 2], [np.pi], [2 * np.pi]])
    np.testing.assert_allclose(RING.features(angles), [[1, 0], [0, 1], [-1, 0], [1, 0]],
                               atol=1e-6)
    mixed = ContextSpace(names=("a", "angle"), low=(0.0, -1.0), high=(2.0, 1.0),
                         cyclic=(False, True))
    # a = 1.5 on [0, 2] -> 0.5; the angle -0.5 on a period of 2 -> phase pi / 2
    np.testing.assert_allclose(mixed.features(jnp.asarray([1.5, -0.5])), [0.5, 0.0, 1.0],
                               atol=1e-6)
    assert mixed.feature_dim == 3


def test_spread_is_a_latin_hypercube_over_continuous_dims():
    n = 37
    out = CARTPOLE.spread(n, jax.random.PRNGKey(5))
    assert out.shape == (n, 4) and out.dtype == np.float32
    for k in range(3):
        u = (out[:, k] - CARTPOLE.low[k]) / (CARTPOLE.high[k] - CARTPOLE.low[k])
        strata = np.floor(u * n).astype(int)
        # exactly one point in each of the n equal strata
        np.testing.assert_array_equal(np.sort(strata), np.arange(n))
    # the single discrete dim cycles through its values in order: -1, +1, -1, ...
    np.testing.assert_array_equal(out[:, SIGN], [(-1.0, 1.0)[i % 2] for i in range(n)])
    # deterministic for a key, different for another
    np.testing.assert_array_equal(out, CARTPOLE.spread(n, jax.random.PRNGKey(5)))
    assert not np.array_equal(out, CARTPOLE.spread(n, jax.random.PRNGKey(6)))


def test_spread_cycles_discrete_combinations():
    space = ContextSpace(names=("a", "x", "b"), low=(0.0, 0.0, 5.0), high=(1.0, 2.0, 7.0),
                         values=((0.0, 1.0), None, (5.0, 6.0, 7.0)))
    out = space.spread(14, jax.random.PRNGKey(0))
    combos = list(itertools.product((0.0, 1.0), (5.0, 6.0, 7.0)))  # 6 combinations
    # rows 0..5 are the 6 combinations in product order, then they repeat: row 13 = combo 1
    for i in range(14):
        assert (out[i, 0], out[i, 2]) == combos[i % 6]
    strata = np.floor(out[:, 1] / 2.0 * 14).astype(int)
    np.testing.assert_array_equal(np.sort(strata), np.arange(14))


def test_spread_task_set_cycles_tasks():
    out = TASKS.spread(5, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(out, [[-1, 0], [1, 0], [0, 1], [-1, 0], [1, 0]])


def test_task_set_sampling():
    c = np.asarray(TASKS.sample(jax.random.PRNGKey(2), (3000,)))
    chex.assert_shape(c, (3000, 2))
    rows, counts = np.unique(c, axis=0, return_counts=True)
    np.testing.assert_array_equal(rows, [[-1, 0], [0, 1], [1, 0]])
    # each task w.p. 1/3 (std of a fraction = 0.0086)
    np.testing.assert_allclose(counts / 3000, [1 / 3] * 3, atol=0.04)


# --- kmeans --------------------------------------------------------------------------------


def test_kmeans_finds_blob_centres():
    true = jnp.asarray([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0], [5.0, -5.0]])
    key_lab, key_noise, key_km = jax.random.split(jax.random.PRNGKey(0), 3)
    labels = jax.random.randint(key_lab, (800,), 0, 4)
    z = true[labels] + 0.1 * jax.random.normal(key_noise, (800, 2))
    run = jax.jit(kmeans, static_argnums=(2,))
    centres = run(key_km, z, 4)
    chex.assert_shape(centres, (4, 2))
    # each true centre has a found centre within 0.05 (sd of a blob mean ~ 0.1/sqrt(200))
    d = np.linalg.norm(np.asarray(centres)[:, None] - np.asarray(true)[None], axis=-1)
    assert sorted(np.argmin(d, axis=0).tolist()) == [0, 1, 2, 3]  # a bijection
    assert np.all(np.min(d, axis=0) < 0.05)
    # deterministic for a key
    np.testing.assert_array_equal(centres, run(key_km, z, 4))


def test_kmeans_partition_deterministic(kmeans_partition):
    again = make_partition(jax.random.PRNGKey(0), CARTPOLE, "kmeans", 4)
    chex.assert_trees_all_equal(kmeans_partition, again)
    other = make_partition(jax.random.PRNGKey(1), CARTPOLE, "kmeans", 4)
    assert not np.array_equal(kmeans_partition.pool, other.pool)


def test_kmeans_partition_weights_and_nonempty(kmeans_partition):
    p = kmeans_partition
    assert p.size == 4
    chex.assert_shape(p.centres, (4, 4))
    chex.assert_shape(p.weights, (4,))
    chex.assert_shape(p.pool, (4, 64, 4))
    np.testing.assert_allclose(np.sum(p.weights), 1.0, atol=1e-6)
    # every cell holds a real share of rho (the sign splits the mass in halves, and each
    # half into two cells; anything below 5% would be a degenerate cell)
    assert np.all(np.asarray(p.weights) > 0.05)
    # the pool holds members of its own cell
    cells = assign(p, CARTPOLE, p.pool)
    np.testing.assert_array_equal(cells, np.broadcast_to(np.arange(4)[:, None], (4, 64)))
    # the weights are the mass of rho in each cell (independent sample; sd < 0.005)
    c = CARTPOLE.sample(jax.random.PRNGKey(9), (20_000,))
    frac = np.bincount(np.asarray(assign(p, CARTPOLE, c)), minlength=4) / 20_000
    np.testing.assert_allclose(frac, p.weights, atol=0.03)


def test_kmeans_cells_are_sign_pure(kmeans_partition):
    """The gain sign must separate the cells, or no teacher can balance its own cell.

    In the scaled space the sign is 0 or 1, so the two sign halves are a distance 1 apart,
    while within a half the continuous part has variance 3/12; splitting on the sign first
    more than halves the inertia (0.1875 vs 0.375 per point), so k-means with 4 cells puts
    two centres on each side, with the sign coordinate exactly 0 or 1.
    """
    p = kmeans_partition
    centre_sign = np.asarray(p.centres[:, SIGN])
    np.testing.assert_allclose(np.sort(centre_sign), [0, 0, 1, 1], atol=1e-6)
    # every member of the pool has its cell's sign
    pool_sign = np.asarray(CARTPOLE.scale(p.pool)[..., SIGN])
    np.testing.assert_allclose(pool_sign, np.broadcast_to(centre_sign[:, None], (4, 64)),
                               atol=1e-6)
    # and every fresh sample of rho is assigned to a cell of its own sign
    c = CARTPOLE.sample(jax.random.PRNGKey(11), (20_000,))
    cell = np.asarray(assign(p, CARTPOLE, c))
    np.testing.assert_allclose(CARTPOLE.scale(c)[:, SIGN], centre_sign[cell], atol=1e-6)
    # each sign holds half the mass
    np.testing.assert_allclose(np.sum(np.asarray(p.weights)[centre_sign > 0.5]), 0.5,
                               atol=0.03)


def _draws(partition, space, candidates, n=2000, seed=0):
    """`n` draws in every cell, jitted and vmapped over keys and cells -> [P, n, d]."""
    P = partition.size

    @jax.jit
    def draw(keys):
        return jax.vmap(lambda ks, cell: jax.vmap(
            lambda k: sample_in_cell(k, partition, space, cell, candidates))(ks)
        )(keys, jnp.arange(P))

    keys = jax.random.split(jax.random.PRNGKey(seed), P * n).reshape(P, n, -1)
    return draw(keys)


def test_sample_in_cell_stays_in_cell(kmeans_partition):
    p = kmeans_partition
    c = _draws(p, CARTPOLE, candidates=16, n=1000)
    chex.assert_shape(c, (4, 1000, 4))
    np.testing.assert_array_equal(assign(p, CARTPOLE, c),
                                  np.broadcast_to(np.arange(4)[:, None], (4, 1000)))
    # it is rho restricted to the cell, not the pool: the mean inside each cell matches the
    # mean of rho's samples that fall there (sd of a mean of U-type data over 1000 < 0.015)
    ref = CARTPOLE.sample(jax.random.PRNGKey(12), (40_000,))
    ref_cell = np.asarray(assign(p, CARTPOLE, ref))
    for i in range(4):
        z_ref = np.asarray(CARTPOLE.scale(ref[ref_cell == i])).mean(0)
        z = np.asarray(CARTPOLE.scale(c[i])).mean(0)
        np.testing.assert_allclose(z, z_ref, atol=0.05)
    # fresh draws, not a few recycled pool members
    assert len(np.unique(np.asarray(c[0, :, 0]))) > 950


def test_sample_in_cell_pool_fallback():
    """With one candidate a small cell is usually missed; the draw then comes from the pool."""
    # a 3 x 2 x 2 grid on pendulum: 12 cells of mass 1/12 each
    p = make_partition(jax.random.PRNGKey(1), PENDULUM, "grid", 12, grid_shape=(3, 2, 2),
                       pool_size=16)
    c = _draws(p, PENDULUM, candidates=1, n=600)
    np.testing.assert_array_equal(assign(p, PENDULUM, c),
                                  np.broadcast_to(np.arange(12)[:, None], (12, 600)))
    # a candidate lands w.p. 1/12, so ~11/12 of the draws are pool members
    pool = np.asarray(p.pool)
    for i in range(12):
        is_pool = np.any(np.all(np.asarray(c[i])[:, None] == pool[i][None], -1), -1)
        assert 0.8 < is_pool.mean() < 0.99, (i, is_pool.mean())


# --- grid ----------------------------------------------------------------------------------


def test_grid_partition_box_cells_and_volume_weights():
    shape = (3, 2, 1)  # cells ordered as itertools.product: index = 2 * i_mass + i_length
    p = make_partition(jax.random.PRNGKey(2), PENDULUM, "grid", 6, samples=20_000,
                       grid_shape=shape)
    # centres: mass in {1/6, 1/2, 5/6}, length in {1/4, 3/4}, gravity 1/2
    np.testing.assert_allclose(p.centres, [[1 / 6, 0.25, 0.5], [1 / 6, 0.75, 0.5],
                                           [0.5, 0.25, 0.5], [0.5, 0.75, 0.5],
                                           [5 / 6, 0.25, 0.5], [5 / 6, 0.75, 0.5]], atol=1e-6)
    # box cells: the cell is the product of per-dim strata of the scaled context
    c = PENDULUM.sample(jax.random.PRNGKey(3), (5000,))
    z = np.asarray(PENDULUM.scale(c))
    box = np.floor(z[:, 0] * 3).astype(int) * 2 + np.floor(z[:, 1] * 2).astype(int)
    np.testing.assert_array_equal(assign(p, PENDULUM, c), box)
    # rho is uniform, so each weight is the volume fraction 1/6 (sd = sqrt(5/36/20000) =
    # 0.0026; 0.015 is ~6 sd)
    np.testing.assert_allclose(p.weights, [1 / 6] * 6, atol=0.015)
    np.testing.assert_allclose(np.sum(p.weights), 1.0, atol=1e-6)


def test_grid_partition_unequal_volumes():
    space = ContextSpace(names=("a", "b"), low=(0.0, 0.0), high=(1.0, 1.0),
                         values=((0.0, 0.25, 1.0), None))
    # 2 x 2 grid: a in {0, 0.25} goes left (2/3 of the mass), a = 1 goes right (1/3);
    # b splits each in halves -> weights (1/3, 1/3, 1/6, 1/6)
    p = make_partition(jax.random.PRNGKey(0), space, "grid", 4, samples=20_000,
                       grid_shape=(2, 2))
    np.testing.assert_allclose(p.weights, [1 / 3, 1 / 3, 1 / 6, 1 / 6], atol=0.02)


def test_partition_errors():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="has 4 cells, not 6"):
        make_partition(key, PENDULUM, "grid", 6, grid_shape=(2, 2, 1))
    with pytest.raises(ValueError, match="unknown partitioner"):
        make_partition(key, PENDULUM, "voronoi", 2)
    with pytest.raises(ValueError, match="3 tasks but 2 partitions"):
        make_partition(key, TASKS, "tasks", 2)
    # sign scaled to {0, 1}: with 3 cells on that axis the middle one (centre 1/2) is empty
    with pytest.raises(ValueError, match=r"cells \[1\] hold none"):
        make_partition(key, CARTPOLE, "grid", 3, grid_shape=(1, 1, 1, 3))


# --- tasks ---------------------------------------------------------------------------------


def test_tasks_partition_one_cell_per_task():
    p = make_partition(jax.random.PRNGKey(0), TASKS, "tasks", 3, pool_size=8)
    assert p.size == 3
    np.testing.assert_allclose(p.weights, [1 / 3] * 3, atol=1e-7)
    tasks = jnp.asarray(TASKS.tasks)
    np.testing.assert_array_equal(assign(p, TASKS, tasks), [0, 1, 2])
    chex.assert_shape(p.pool, (3, 8, 2))
    for candidates in (1, 8):
        c = _draws(p, TASKS, candidates=candidates, n=200)
        # every draw in cell i is exactly task i
        np.testing.assert_array_equal(c, np.broadcast_to(np.asarray(tasks)[:, None], (3, 200, 2)))


def test_partition_is_a_pytree():
    p = make_partition(jax.random.PRNGKey(0), TASKS, "tasks", 3)
    leaves = jax.tree.leaves(p)
    assert len(leaves) == 3
    doubled = jax.tree.map(lambda x: 2 * x, p)
    assert isinstance(doubled, Partition)
    np.testing.assert_allclose(doubled.weights, [2 / 3] * 3, atol=1e-6)
