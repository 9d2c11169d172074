"""Tests of hsjax.density on constructed cases, with an optax state that contains the avatar."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hsjax import avatar as avatar_lib
from hsjax import density
from hsjax import nonrigid as nonrigid_lib
from test_avatar import uv_sphere_body  # pylint: disable=g-import-not-at-top

CONFIG = density.DensityConfig(grad_threshold=0.5, percent_dense=0.01, extent=1.0,
                               min_opacity=0.05, max_world_size=0.3, max_screen_size=50.0)
SMALL, LARGE = np.log(0.005), np.log(0.05)  # below / above percent_dense × extent


@pytest.fixture(scope="module")
def model():
  return uv_sphere_body()


def constructed_avatar(model, nonrigid=False):
  """8 slots; 0..4 active: 0 clone, 1 split, 2 prune (transparent), 3 keep, 4 prune (huge)."""
  config = nonrigid_lib.NonRigidConfig(width=8, latent_dim=2) if nonrigid else None
  av = avatar_lib.init_avatar(jax.random.key(0), model, 8, active_fraction=5 / 8,
                              nonrigid=nonrigid, nonrigid_config=config)
  log_scales = np.full((8, 3), SMALL, np.float32)
  log_scales[1] = [LARGE, LARGE, SMALL]
  log_scales[4] = np.log(0.5)
  logits = np.full(8, 2.0, np.float32)
  logits[2] = -5.0
  return av.replace(log_scales=jnp.asarray(log_scales), opacity_logits=jnp.asarray(logits),
                    means=jnp.arange(24, dtype=jnp.float32).reshape(8, 3))


def constructed_stats():
  stats = density.init_stats(8)
  grad = jnp.zeros((2, 8, 2)).at[:, 0].set([1.0, 0.0]).at[:, 1].set([0.0, 2.0])
  grad = grad.at[:, 3].set([0.1, 0.1]).at[:, 2].set([3.0, 0.0])
  visible = jnp.ones((2, 8), bool).at[1, 1].set(False)
  radii = jnp.full((2, 8), 4)
  return density.accumulate(stats, grad, visible, radii)


def optimizer_and_state(avatar, seed=0):
  """A partitioned optimiser over {avatar params, poses} with non-zero Adam moments."""
  params, _ = avatar_lib.split(avatar)
  tree = {"avatar": params, "poses": {"body_pose": jnp.ones((3, 23, 3))}}
  labels = {"avatar": jax.tree.map(lambda _: "avatar", params), "poses": {"body_pose": "poses"}}
  tx = optax.partition({"avatar": optax.adam(1e-2), "poses": optax.adam(1e-3)}, labels)
  state = tx.init(tree)
  grads = jax.tree.map(lambda x: jax.random.normal(jax.random.key(seed), x.shape), tree)
  _, state = tx.update(grads, state, tree)
  return tx, tree, state


def adam_moments(tx, state, tree):
  """The avatar group's Adam moments (mu, nu): Avatar nodes of the state holding arrays."""
  del tx, tree
  nodes = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, avatar_lib.Avatar))
  return [x for x in nodes if isinstance(x, avatar_lib.Avatar) and isinstance(x.means, jax.Array)]


def test_accumulate_counts_visible_views_only():
  stats = constructed_stats()
  np.testing.assert_allclose(stats.count[:2], [2.0, 1.0])
  np.testing.assert_allclose(stats.grad_norm_sum[:2], [2.0, 2.0])
  np.testing.assert_allclose(stats.max_radii, 4.0)
  scaled = density.accumulate(density.init_stats(8), jnp.ones((8, 2)), jnp.ones(8, bool),
                              jnp.ones(8), image_size=(64, 32))
  np.testing.assert_allclose(scaled.grad_norm_sum, np.hypot(32.0, 16.0), rtol=1e-6)


def test_clone_split_prune_on_constructed_case(model):
  av = constructed_avatar(model)
  out, _, info = density.densify_and_prune(av, None, constructed_stats(), jax.random.key(1),
                                           CONFIG)
  assert {k: int(v) for k, v in info.items()} == {
      "pruned": 2, "cloned": 1, "split": 1, "dropped": 0, "active": 5}
  active = np.asarray(out.active)
  # Pruned slots 2 and 4 are free again and reused first (lowest index): the stronger
  # candidate (slot 1, grad 2) goes to slot 2, the clone (slot 0, grad 1) to slot 4.
  np.testing.assert_array_equal(active, [1, 1, 1, 1, 1, 0, 0, 0])
  means, scales = np.asarray(out.means), np.exp(np.asarray(out.log_scales))
  np.testing.assert_array_equal(means[4], np.asarray(av.means)[0])  # clone: exact copy
  np.testing.assert_array_equal(scales[0], scales[4])
  np.testing.assert_array_equal(means[3], np.asarray(av.means)[3])  # untouched
  parent_scale = np.exp(np.asarray(av.log_scales)[1])
  for child in (1, 2):
    np.testing.assert_allclose(scales[child], parent_scale / 1.6, rtol=1e-6)
    offset = means[child] - np.asarray(av.means)[1]
    assert 0 < np.linalg.norm(offset) < 4 * parent_scale.max()
  assert not np.allclose(means[1], means[2])
  for field in ("face_ids", "barycentrics", "skin_init", "quats", "sh"):
    np.testing.assert_array_equal(getattr(out, field)[2], getattr(av, field)[1])
    np.testing.assert_array_equal(getattr(out, field)[4], getattr(av, field)[0])


def test_optimizer_state_follows_the_gaussians(model):
  """Adam moments inside optax.partition: zero for written / pruned / split rows, others and
  the poses' moments unchanged; the state still works with tx.update."""
  av = constructed_avatar(model)
  tx, tree, state = optimizer_and_state(av)
  out, new_state, _ = jax.jit(density.densify_and_prune, static_argnums=4)(
      av, state, constructed_stats(), jax.random.key(1), CONFIG)
  before = adam_moments(tx, state, tree)
  after = adam_moments(tx, new_state, tree)
  assert len(before) == len(after) == 2  # mu and nu of the avatar group
  # Slot 1 split parent, slots 2 and 4 pruned then written; clone source 0 keeps its moments.
  changed = np.array([0, 1, 1, 0, 1, 0, 0, 0], bool)
  for b, a in zip(before, after):
    for field in ("means", "log_scales", "quats", "opacity_logits", "sh"):
      old, new = np.asarray(getattr(b, field)), np.asarray(getattr(a, field))
      assert np.all(new[changed] == 0)
      np.testing.assert_array_equal(new[~changed], old[~changed])
      assert np.all(old[~changed] != 0)
  leaves = lambda s: jax.tree.leaves(s.inner_states["poses"])
  for x, y in zip(leaves(state), leaves(new_state)):
    np.testing.assert_array_equal(x, y)
  params, _ = avatar_lib.split(out)
  new_tree = {"avatar": params, "poses": tree["poses"]}
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, new_tree), new_state, new_tree)
  assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))


def test_capacity_limit_serves_strongest_and_counts_dropped(model):
  av = constructed_avatar(model)
  av = av.replace(active=jnp.ones((8,), bool).at[7].set(False),
                  opacity_logits=jnp.full((8,), 2.0), log_scales=jnp.full((8, 3), SMALL))
  grad = jnp.zeros((8, 2)).at[:, 0].set(jnp.arange(8.0))  # slot 6 strongest among active
  stats = density.accumulate(density.init_stats(8), grad, jnp.ones(8, bool), jnp.ones(8))
  out, _, info = density.densify_and_prune(av, None, stats, jax.random.key(0), CONFIG)
  assert int(info["cloned"]) == 1 and int(info["dropped"]) == 5  # slots 1..6 wanted, 1 free
  np.testing.assert_array_equal(out.means[7], av.means[6])
  assert bool(jnp.all(out.active))


def test_shapes_static_under_jit_no_retrace(model):
  av = constructed_avatar(model, nonrigid=True)
  _, _, state = optimizer_and_state(av)
  traces = []

  def step(av, state, stats, key):
    traces.append(1)
    return density.densify_and_prune(av, state, stats, key, CONFIG)

  step = jax.jit(step)
  stats = constructed_stats()
  out, state2, _ = step(av, state, stats, jax.random.key(0))
  out2, state3, _ = step(out, state2, stats, jax.random.key(1))
  assert len(traces) == 1
  assert jax.tree.structure(out2) == jax.tree.structure(av)
  assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(av), jax.tree.leaves(out2)))
  assert jax.tree.structure(state3) == jax.tree.structure(state)
  # The per-Gaussian latent code of the non-rigid model is copied like the other rows.
  np.testing.assert_array_equal(out.nonrigid["latent"][4], av.nonrigid["latent"][0])


def test_reset_opacity_caps_and_zeroes_moments(model):
  av = constructed_avatar(model)
  tx, tree, state = optimizer_and_state(av)
  out, new_state = density.reset_opacity(av, state, max_opacity=0.01)
  opacity = np.asarray(jax.nn.sigmoid(out.opacity_logits))
  np.testing.assert_allclose(opacity[np.asarray(av.opacity_logits) > -4], 0.01, rtol=1e-5)
  np.testing.assert_allclose(out.opacity_logits[2], -5.0)  # already below the cap
  for b, a in zip(adam_moments(tx, state, tree), adam_moments(tx, new_state, tree)):
    assert np.all(np.asarray(a.opacity_logits) == 0)
    np.testing.assert_array_equal(a.means, b.means)
