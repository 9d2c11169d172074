"""Tests of hsjax.fit: the loop picks up user terms, multi-subject and sharded fits equal
single fits, checkpoints resume exactly, a NaN stops the fit and keeps the last good
checkpoint. Tiny fits (a few Gaussians, 32x32 images, a handful of steps); fits with equal
settings share one compiled step, which keeps this file to a few compilations."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax.io import checkpoint as ckpt_lib
from hsjax import density as density_lib
from hsjax import losses as losses_lib
from hsjax.data import synthetic_sequence

from hsjax import fit as fit_lib

# vmap / sharding reorder float reductions; parameters of tiny fits agree to this.
MULTI_TOL = 2e-5

# Density control runs at steps 2 and 4 (every candidate qualifies) and the unseen sides are
# coloured after step 5 (between checkpoints), so the equality and resume tests cover both.
CONFIG = fit_lib.FitConfig(
    steps=6, warmup_steps=2, batch_frames=2, num_gaussians=96, tile_capacity=32,
    densify_every=2, densify_from=2, densify_until=4, fill_unseen_at=5,
    density=density_lib.DensityConfig(grad_threshold=0.0), log_every=1, checkpoint_every=2,
    progress=False, lr_body_pose=1e-2, lr_global_orient=1e-2, lr_transl=1e-2)

# A cheap loss (the image terms and the priors) keeps compilation short; the loop treats
# every mapping alike.
LOSSES = {k: losses_lib.DEFAULT_LOSSES[k] for k in
          ("rgb", "mask", "depth", "pose_prior", "smooth_joints")}


@pytest.fixture(scope="module")
def body_model():
  return body_lib.load_body_model("default")


def _sequence(seed: int, num_frames: int = 6):
  return synthetic_sequence("default", seed=seed, num_frames=num_frames, image_size=32,
                            num_eval_views=0, num_novel_pose=0, supersample=1, cache_dir=False)


def two_subjects():
  """The multi-subject fits' sequences (different lengths: one is padded)."""
  return [_sequence(0), _sequence(1, num_frames=5)]


def many_keys():
  return [jax.random.key(3), jax.random.key(4)]


@pytest.fixture(scope="module")
def sequences():
  return two_subjects()


def _fit(seq, body_model, config=CONFIG, losses=None, **kw):
  return fit_lib.fit(seq, config, key=kw.pop("key", jax.random.key(0)),
                     losses=LOSSES if losses is None else losses, body_model=body_model, **kw)


def _assert_trees_close(a, b, tol):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=tol, rtol=tol)


def test_user_loss_term_is_picked_up(sequences, body_model):
  """A keypoint-reprojection term added by a user drives the poses through the unchanged loop."""
  seq = sequences[0]
  target = jnp.asarray(np.asarray(seq.gt.transl))

  def root_keypoint(render, frame, params, ctx):
    # Reprojection of the root joint into the minibatch's cameras vs the true root.
    del render, params
    cam = ctx.camera
    joints = ctx.body.joints[:, 0]  # [F, 3]
    truth = target[frame.index]

    def project(p, k, w2c):
      pc = w2c[:3, :3] @ p + w2c[:3, 3]
      uv = k @ pc
      return uv[:2] / uv[2]

    uv = jax.vmap(project)(joints, cam.K, cam.world_to_cam)
    uv_true = jax.vmap(project)(truth, cam.K, cam.world_to_cam)
    return jnp.mean(jnp.sum((uv - uv_true) ** 2, -1))

  losses = {**LOSSES, "root_keypoint": (1.0, root_keypoint)}
  result = _fit(seq, body_model, losses=losses)
  terms = result.history["terms"]
  assert "root_keypoint" in terms and len(terms["root_keypoint"]) == CONFIG.steps
  # The term was optimised: with it the fit ends with a smaller reprojection error than
  # without it (same key, same everything else).
  baseline = _fit(seq, body_model)
  final = root_keypoint(
      None, types.SimpleNamespace(index=jnp.arange(len(seq))), None,
      types.SimpleNamespace(camera=seq.cameras, body=body_lib.body_forward(
          body_model, jnp.broadcast_to(result.poses.betas, (len(seq), 10)),
          result.poses.body_pose, result.poses.global_orient, result.poses.transl)))
  final_base = root_keypoint(
      None, types.SimpleNamespace(index=jnp.arange(len(seq))), None,
      types.SimpleNamespace(camera=seq.cameras, body=body_lib.body_forward(
          body_model, jnp.broadcast_to(baseline.poses.betas, (len(seq), 10)),
          baseline.poses.body_pose, baseline.poses.global_orient, baseline.poses.transl)))
  assert float(final) < float(final_base)


def test_poses_frozen_during_warmup_and_when_disabled(sequences, body_model):
  seq = sequences[0]
  seen = {}

  def record(progress):
    seen[progress.step] = np.asarray(progress.params.poses.transl)

  moved = _fit(seq, body_model, config=dataclasses.replace(CONFIG, eval_every=1),
               callbacks=[record])
  hmr = np.asarray(seq.hmr.transl)
  np.testing.assert_array_equal(seen[CONFIG.warmup_steps], hmr)  # warm-up: avatar only
  assert np.abs(seen[CONFIG.warmup_steps + 1] - hmr).max() > 1e-3  # then the poses move
  assert np.abs(np.asarray(moved.poses.transl) - hmr).max() > 1e-3
  # Density control ran and filled free slots.
  assert [d["step"] for d in moved.history["density"]] == [2, 4]
  assert moved.history["density"][0]["cloned"] + moved.history["density"][0]["split"] > 0
  assert int(np.sum(moved.avatar.active)) > int(0.75 * CONFIG.num_gaussians)
  frozen = _fit(seq, body_model, config=CONFIG.avatar_only())
  np.testing.assert_array_equal(frozen.poses.transl, hmr)
  np.testing.assert_array_equal(frozen.poses.body_pose, np.asarray(seq.hmr.body_pose))
  # The avatar trains all the same.
  init = fit_lib.init_state(fit_lib.prepare_data(seq, CONFIG), CONFIG, body_model,
                            jax.random.key(0))
  assert not np.array_equal(frozen.avatar.means, init.params.avatar.means)


def test_poses_stop_after_pose_steps_while_the_avatar_trains_on(sequences, body_model):
  config = dataclasses.replace(CONFIG, pose_steps=2, eval_every=1, densify_every=0)
  assert config.pose_end == 4
  seen = {}

  def record(progress):
    seen[progress.step] = (np.asarray(progress.params.poses.body_pose),
                           np.asarray(progress.params.avatar.means))

  _fit(sequences[0], body_model, config=config, callbacks=[record])
  # seen[s]: after s steps; steps 2 and 3 (counting from 0) are the pose steps.
  pose_moved = [np.abs(seen[s + 1][0] - seen[s][0]).max() > 0 for s in range(1, 6)]
  avatar_moved = [np.abs(seen[s + 1][1] - seen[s][1]).max() > 0 for s in range(1, 6)]
  assert pose_moved == [False, True, True, False, False]
  assert all(avatar_moved)


def test_unseen_sides_are_coloured_once_at_their_step(sequences, body_model):
  """After step ``fill_unseen_at`` the Gaussians the camera never faced take the seen side's
  colour (hsjax.unseen, with its view-dependent bands zeroed); nothing else differs from a fit
  without the pass until then."""
  config = dataclasses.replace(CONFIG, eval_every=1)
  seen = {}

  def record(progress):
    seen[progress.step] = np.asarray(progress.params.avatar.sh)

  result = _fit(sequences[0], body_model, config=config, callbacks=[record])
  assert result.history["unseen"]["step"] == 5
  count = result.history["unseen"]["unseen"]
  assert 0 < count < CONFIG.num_gaussians
  assert np.sum(np.all(seen[5][:, 1:] == 0.0, axis=(1, 2))) >= count

  without = {}
  _fit(sequences[0], body_model, config=dataclasses.replace(config, fill_unseen_at=0),
       callbacks=[lambda p: without.__setitem__(p.step, np.asarray(p.params.avatar.sh))])
  np.testing.assert_array_equal(seen[4], without[4])
  changed = np.any(seen[5] != without[5], axis=(1, 2))
  assert changed.sum() >= count
  # A step the fit never reaches: no pass (as density control's steps).
  beyond = _fit(sequences[0], body_model, config=dataclasses.replace(CONFIG, fill_unseen_at=7))
  assert "unseen" not in beyond.history
  with pytest.raises(ValueError, match=r"fill_unseen_at must be >= 0, found -1"):
    dataclasses.replace(CONFIG, fill_unseen_at=-1)


def test_round_two_is_the_fit_from_round_ones_poses(sequences, body_model):
  """Round 2 equals a fresh fit of the sequence whose HMR estimates are round 1's refined
  poses (its start and its pose prior's anchor; they are depth-aligned already)."""
  seq = sequences[0]
  one = _fit(seq, body_model)
  two = _fit(seq, body_model, config=dataclasses.replace(CONFIG, rounds=2))
  assert two.history["earlier_rounds"][0]["total"] == one.history["total"]
  expected = _fit(dataclasses.replace(seq, hmr=one.poses), body_model,
                  config=dataclasses.replace(CONFIG, align_depth=False))
  _assert_trees_close(two.state.params, expected.state.params, 1e-6)
  np.testing.assert_allclose(two.history["total"], expected.history["total"], rtol=1e-6)
  assert not ckpt_lib.tree_equal(two.poses, one.poses)
  # Nothing for a second round to change when no pose group trains: it is skipped.
  frozen = _fit(seq, body_model, config=dataclasses.replace(CONFIG.avatar_only(), rounds=2))
  assert "earlier_rounds" not in frozen.history
  with pytest.raises(ValueError, match=r"rounds must be >= 1, found 0"):
    dataclasses.replace(CONFIG, rounds=0)


def test_rounds_resume_in_the_round_they_stopped(sequences, body_model, tmp_path):
  """Killed in round 2, a fit restores round 1 from its last checkpoint and round 2 from
  ``round-2/``, and ends bit for bit where an uninterrupted fit ends."""
  seq = sequences[0]
  config = dataclasses.replace(CONFIG, rounds=2, eval_every=1)
  uninterrupted = _fit(seq, body_model, config=config)
  calls = []

  def kill_in_round_2_at_5(progress):
    calls.append(progress.step)
    if len(calls) > CONFIG.steps and progress.step >= 5:  # round 1 reports steps 1..6
      raise _Kill()

  ckpt_dir = tmp_path / "ckpt"
  with pytest.raises(_Kill):
    _fit(seq, body_model, config=config, checkpoint_dir=str(ckpt_dir),
         callbacks=[kill_in_round_2_at_5])
  assert ckpt_lib.latest_checkpoint(str(ckpt_dir))[0] == CONFIG.steps
  assert ckpt_lib.latest_checkpoint(str(ckpt_dir / "round-2"))[0] == 4
  resumed = _fit(seq, body_model, config=config, checkpoint_dir=str(ckpt_dir))
  assert ckpt_lib.tree_equal(resumed.state.params, uninterrupted.state.params)
  assert ckpt_lib.tree_equal(resumed.state.opt_state, uninterrupted.state.opt_state)
  assert resumed.history["total"] == uninterrupted.history["total"]
  # The restored round 1 is not run again: its evaluation records are not repeated.
  restored_round_1 = resumed.history["earlier_rounds"][0]
  assert [r["step"] for r in restored_round_1["eval"]] == list(range(1, CONFIG.steps + 1))
  # A finished fit resumed once more returns what it restored, and calls no callback.
  again = _fit(seq, body_model, config=config, checkpoint_dir=str(ckpt_dir),
               callbacks=[kill_in_round_2_at_5])
  assert ckpt_lib.tree_equal(again.state.params, uninterrupted.state.params)
  assert [r["step"] for r in again.history["eval"]] == list(range(1, CONFIG.steps + 1))


@pytest.mark.parametrize("rounds", [1, 2])
def test_fit_many_equals_single_fits(sequences, body_model, rounds):
  """vmap over 2 subjects (different lengths: one padded) == 2 separate fits, in every round."""
  keys = many_keys()
  config = dataclasses.replace(CONFIG, rounds=rounds)
  singles = [_fit(s, body_model, config=config, key=k) for s, k in zip(sequences, keys)]
  many = fit_lib.fit_many(sequences, config, keys=keys, losses=LOSSES, body_model=body_model)
  assert many.history["num_frames"] == [6, 5]
  for i, single in enumerate(singles):
    t = len(sequences[i])
    got = jax.tree_util.tree_map(lambda x, i=i: x[i], many.state.params)
    got = got.replace(poses=jax.tree_util.tree_map(lambda x: x[:t] if x.ndim > 1 else x,
                                                   got.poses))
    _assert_trees_close(got, single.state.params, MULTI_TOL)
    np.testing.assert_allclose([v[i] for v in many.history["total"]],
                               single.history["total"], rtol=MULTI_TOL)


def test_fit_many_fits_people_of_different_sizes_in_one_crop_size(sequences, body_model):
  """With person crops, subjects whose people differ in size share one window size (a step
  stacks their frames), each placed on its own person."""
  config = dataclasses.replace(CONFIG, person_crop=True, steps=3, fill_unseen_at=0,
                               densify_every=0)
  sources = [fit_lib.FrameSource(s, config) for s in sequences]
  assert len({(src.height, src.width) for src in sources}) == 2  # alone, they would differ
  many = fit_lib.fit_many(sequences, config, keys=many_keys(), losses=LOSSES,
                          body_model=body_model)
  assert np.all(np.isfinite(many.history["total"]))
  assert np.all(np.isfinite(np.asarray(many.poses.body_pose)))


def test_sharded_equals_unsharded(sequences, body_model):
  assert jax.device_count() >= 2, "conftest.py sets 2 host devices"
  keys = many_keys()
  mesh = jax.make_mesh((2,), ("subject",))
  plain = fit_lib.fit_many(sequences, CONFIG, keys=keys, losses=LOSSES, body_model=body_model)
  sharded = fit_lib.fit_many(sequences, CONFIG, keys=keys, losses=LOSSES, body_model=body_model,
                             mesh=mesh)
  leaf = jax.tree_util.tree_leaves(sharded.state.params)[0]
  assert len(leaf.sharding.device_set) == 2  # really spread over both devices
  _assert_trees_close(sharded.state.params, plain.state.params, MULTI_TOL)


class _Kill(Exception):
  pass


def test_kill_and_resume_is_exact(sequences, body_model, tmp_path):
  seq = sequences[0]
  uninterrupted = _fit(seq, body_model)

  def kill_at_5(progress):
    if progress.step >= 5:
      raise _Kill()

  ckpt_dir = str(tmp_path / "ckpt")
  config = dataclasses.replace(CONFIG, eval_every=1)
  with pytest.raises(_Kill):
    _fit(seq, body_model, config=config, checkpoint_dir=ckpt_dir, callbacks=[kill_at_5])
  assert ckpt_lib.latest_checkpoint(ckpt_dir)[0] == 4  # steps 5.. were lost with the process
  resumed = _fit(seq, body_model, config=config, checkpoint_dir=ckpt_dir)
  assert ckpt_lib.tree_equal(resumed.state.params, uninterrupted.state.params)
  assert ckpt_lib.tree_equal(resumed.state.opt_state, uninterrupted.state.opt_state)
  assert resumed.history["total"] == uninterrupted.history["total"]
  # Resuming with another key is refused, naming the file.
  with pytest.raises(ValueError, match="another key"):
    _fit(seq, body_model, config=config, checkpoint_dir=ckpt_dir, key=jax.random.key(9))


def test_fit_many_checkpoints_per_subject_and_resumes_exactly(sequences, body_model, tmp_path):
  """fit_many writes one checkpoint directory per subject; killed after step 4's and resumed,
  it ends bit for bit where an uninterrupted fit_many ends."""
  keys = many_keys()
  config = dataclasses.replace(CONFIG, eval_every=1)

  def run(**kw):
    return fit_lib.fit_many(sequences, config, keys=keys, losses=LOSSES, body_model=body_model,
                            **kw)

  def kill_at_5(progress):
    if progress.step >= 5:
      raise _Kill()

  uninterrupted = run()
  ckpt_dir = tmp_path / "many"
  with pytest.raises(_Kill):
    run(checkpoint_dir=str(ckpt_dir), callbacks=[kill_at_5])
  assert sorted(p.name for p in ckpt_dir.iterdir()) == ["subject-000", "subject-001"]
  for s in range(2):
    assert ckpt_lib.latest_checkpoint(str(ckpt_dir / f"subject-{s:03d}"))[0] == 4
  resumed = run(checkpoint_dir=str(ckpt_dir))
  assert ckpt_lib.tree_equal(resumed.state.params, uninterrupted.state.params)
  assert ckpt_lib.tree_equal(resumed.state.opt_state, uninterrupted.state.opt_state)
  assert resumed.history["total"] == uninterrupted.history["total"]


def test_nan_stops_with_term_and_step_and_keeps_last_good_checkpoint(sequences, body_model,
                                                                    tmp_path):
  def explodes_at_3(render, frame, params, ctx):
    del render, frame, params
    return jnp.where(ctx.step >= 3, jnp.nan, 0.0)

  losses = {**LOSSES, "explodes": (1.0, explodes_at_3)}
  ckpt_dir = str(tmp_path / "nan")
  with pytest.raises(fit_lib.FitDivergedError,
                     match=r"step 3: term\(s\) \['explodes'\].*ckpt_00000002") as info:
    _fit(sequences[0], body_model, losses=losses, checkpoint_dir=ckpt_dir)
  assert info.value.step == 3 and info.value.terms == ["explodes"]
  assert [s for s, _ in ckpt_lib.list_checkpoints(ckpt_dir)] == [2]
  assert int(info.value.state.step) == 3  # the last good state (3 steps done) is returned
  assert all(np.all(np.isfinite(np.asarray(x)))
             for x in jax.tree_util.tree_leaves(info.value.state.params))


def test_bad_input_errors_name_the_field(sequences, body_model):
  seq = sequences[0]
  bad = dataclasses.replace(seq, masks=np.asarray(seq.masks)[:, :16])
  with pytest.raises(ValueError, match=r"sequence\.masks: expected \(6, 32, 32\)"):
    fit_lib.prepare_data(bad, CONFIG)
  with pytest.raises(ValueError, match="unknown loss term 'nope'"):
    fit_lib.resolve_losses(dataclasses.replace(CONFIG, loss_weights=(("nope", 1.0),)))
  with pytest.raises(ValueError, match="warmup_steps"):
    fit_lib.FitConfig(steps=5, warmup_steps=6)


def test_camel_reference_vertices_are_the_exact_nearest_or_the_anchors(sequences, body_model):
  data = fit_lib.prepare_data(sequences[0], CONFIG)
  state = fit_lib.init_state(data, CONFIG, body_model, jax.random.key(0))
  means = np.asarray(state.params.avatar.means, np.float64)
  template = np.asarray(body_model.v_template, np.float64)
  brute = np.argmin(((means[:, None] - template[None]) ** 2).sum(-1), axis=1)
  np.testing.assert_array_equal(state.camel_nearest, brute)
  # A refresh searches again for the moved centres (here: shifted 5 cm sideways).
  moved = state.replace(params=state.params.replace(avatar=state.params.avatar.replace(
      means=state.params.avatar.means + jnp.array([0.05, 0.0, 0.0]))))
  refreshed = fit_lib.loop._refresh_camel_nearest(moved, body_model, CONFIG, batched=False)
  brute = np.argmin(((means[:, None] + [0.05, 0, 0] - template[None]) ** 2).sum(-1), axis=1)
  np.testing.assert_array_equal(refreshed.camel_nearest, brute)
  no_search = dataclasses.replace(CONFIG, camel_refresh_every=0)
  state = fit_lib.init_state(data, no_search, body_model, jax.random.key(0))
  avatar = avatar_lib.combine(state.params.avatar, state.buffers)
  np.testing.assert_array_equal(state.camel_nearest,
                                avatar_lib.anchor_vertex_ids(avatar, body_model))


def test_prepare_data_takes_the_depth_intrinsics_of_the_sequence(body_model):
  seq = synthetic_sequence("default", seed=0, num_frames=3, image_size=32, num_eval_views=0,
                           num_novel_pose=0, supersample=1, cache_dir=False,
                           depth="unidepth_like", body_model=body_model)
  # As given (depth_focal_power=0): unprojected with the network's own intrinsics.
  as_given = dataclasses.replace(CONFIG, batch_frames=2, depth_focal_power=0.0)
  data = fit_lib.prepare_data(seq, as_given)
  depth_k = np.asarray(seq.depth_K, np.float32)
  expected = np.diag([0.5, 0.5, 1.0]).astype(np.float32) @ depth_k  # downsample 2
  np.testing.assert_allclose(data.depth_K, expected, rtol=1e-6)
  assert not np.allclose(data.depth_K, data.K)  # the network's focal length is off
  # The default (power 1): rescaled by f_camera / f_depth, then unprojected with the camera's K.
  config = dataclasses.replace(CONFIG, batch_frames=2)
  assert config.depth_focal_power == 1.0
  rescaled = fit_lib.prepare_data(seq, config)
  np.testing.assert_array_equal(rescaled.depth_K, rescaled.K)
  ratio = np.asarray(data.K[:, 0, 0] / data.depth_K[:, 0, 0])
  depth = fit_lib.FrameSource(seq, as_given).batch(np.arange(3)).depth
  rescaled_depth = fit_lib.FrameSource(seq, config).batch(np.arange(3)).depth
  valid = depth > 0
  np.testing.assert_allclose(rescaled_depth[valid], (depth * ratio[:, None, None])[valid],
                             rtol=1e-5)
  exact = fit_lib.prepare_data(_sequence(0, num_frames=3), config)
  np.testing.assert_array_equal(exact.depth_K, exact.K)


def test_sample_frames_covers_each_valid_frame_once_per_epoch():
  key = jax.random.key(0)
  valid = jnp.asarray([True] * 7 + [False] * 3)
  seen = np.concatenate([np.asarray(fit_lib.step.sample_frames(key, jnp.int32(s), valid, 2))
                         for s in range(3)])  # 7 // 2 = 3 steps per epoch
  assert len(set(seen.tolist())) == 6 and seen.max() < 7
  again = fit_lib.step.sample_frames(key, jnp.int32(1), valid, 2)
  np.testing.assert_array_equal(again, seen[2:4])  # a pure function of (key, step)


@pytest.mark.slow
def test_default_fit_meets_acceptance():
  """The default fit on the default sequence: >= 30 % lower MPJPE, PA-MPJPE and root error
  than HMR, and better held-out-view PSNR than the avatar-only fit (several minutes)."""
  from hsjax import evaluation  # pylint: disable=g-import-not-at-top
  seq = synthetic_sequence("default", seed=0, hmr_noise="hmr2_like")
  model = body_lib.load_body_model("default")
  config = dataclasses.replace(fit_lib.FitConfig(), progress=False)
  joint = fit_lib.fit(seq, config, key=jax.random.key(0), body_model=model)
  base = fit_lib.fit(seq, config.avatar_only(), key=jax.random.key(0), body_model=model)
  ev_joint = evaluation.evaluate_run(model, seq, joint.avatar, joint.poses, use_lpips=False,
                                     train_view=False)
  ev_base = evaluation.evaluate_run(model, seq, base.avatar, base.poses, use_lpips=False,
                                    train_view=False)
  gain = ev_joint["pose"]["improvement_pct"]
  for name in ("mpjpe", "pa_mpjpe", "root_error"):
    assert gain[name] >= 30.0, (name, ev_joint["pose"])
  assert ev_joint["novel_view"]["psnr"] > ev_base["novel_view"]["psnr"]
