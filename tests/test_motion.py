"""Tests of the motion container, its file layout, resampling, normalisation, AMASS import
and the shipped clips."""

import os

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import hsjax.motion as hm
from hsjax.motion import motion as motion_lib
from hsjax.motion import skeleton


def _rot_z(deg):
  return Rotation.from_euler("z", deg, degrees=True).as_rotvec()


def _random_motion(num_frames=12, fps=30.0, seed=0, name="rand"):
  rng = np.random.default_rng(seed)
  return hm.make_motion(rng.normal(0, 0.4, (num_frames, 23, 3)),
                        rng.normal(0, 0.8, (num_frames, 3)),
                        rng.normal(0, 1.0, (num_frames, 3)), fps, name)


def _rotations_close(a, b, atol_deg=1e-3):
  """Axis-angle arrays compared as rotations (the vectors of one rotation can differ)."""
  rel = Rotation.from_rotvec(np.reshape(a, (-1, 3))).inv() * Rotation.from_rotvec(
      np.reshape(b, (-1, 3)))
  return np.degrees(rel.magnitude()).max() < atol_deg


def test_make_motion_checks_shapes():
  with pytest.raises(ValueError, match=r"body_pose must be \[T, 23, 3\]"):
    hm.make_motion(np.zeros((4, 24, 3)), np.zeros((4, 3)), np.zeros((4, 3)), 30, "x")
  with pytest.raises(ValueError, match=r"transl must be \[T=4, 3\]"):
    hm.make_motion(np.zeros((4, 23, 3)), np.zeros((4, 3)), np.zeros((5, 3)), 30, "x")
  with pytest.raises(ValueError, match="fps must be a positive"):
    hm.make_motion(np.zeros((4, 23, 3)), np.zeros((4, 3)), np.zeros((4, 3)), 0, "x")


def test_nan_is_reported_with_file_frame_and_joint(tmp_path):
  motion = _random_motion()
  body_pose = np.array(motion.body_pose)
  body_pose[5, 15] = np.nan  # body_pose joint 15 = SMPL joint 16, left_shoulder
  path = tmp_path / "bad.npz"
  np.savez(path, format=np.array("hsjax-motion"), version=np.array(1), body_pose=body_pose,
           global_orient=motion.global_orient, transl=motion.transl, fps=np.array(30.0))
  with pytest.raises(ValueError, match=r"bad\.npz.*frame 5, joint 'left_shoulder'"):
    hm.load_motion(str(path))


def test_save_load_roundtrip(tmp_path):
  motion = _random_motion().replace(loop=True)
  path = str(tmp_path / "clip.npz")
  hm.save_motion(path, motion, meta={"source": "test"})
  back = hm.load_motion(path)
  np.testing.assert_array_equal(back.body_pose, motion.body_pose)
  np.testing.assert_array_equal(back.global_orient, motion.global_orient)
  np.testing.assert_array_equal(back.transl, motion.transl)
  assert (back.fps, back.name, back.loop) == (30.0, "rand", True)
  assert motion_lib.read_motion_meta(path) == {"source": "test"}


def test_load_motion_rejects_unknown_files(tmp_path):
  path = tmp_path / "clip.xyz"
  path.write_text("")
  with pytest.raises(ValueError, match="unknown motion file extension"):
    hm.load_motion(str(path))
  other = tmp_path / "other.npz"
  np.savez(other, foo=np.zeros(3))
  with pytest.raises(ValueError, match=r"other\.npz.*found \['foo'\]"):
    hm.load_motion(str(other))


def test_resample_slerps_rotations_and_lerps_translation():
  # Two frames one second apart: 0° and 90° about z, transl 0 -> (4, 0, 0).
  body = np.zeros((2, 23, 3))
  body[:, 3] = [_rot_z(0), _rot_z(90)]
  motion = hm.make_motion(body, np.stack([_rot_z(0), _rot_z(90)]),
                          [[0, 0, 0], [4, 0, 0]], fps=1.0, name="turn")
  up = hm.resample(motion, 4.0)
  assert up.num_frames == 5 and up.fps == 4.0
  expected = np.stack([_rot_z(a) for a in (0, 22.5, 45, 67.5, 90)])
  np.testing.assert_allclose(up.global_orient, expected, atol=1e-6)
  np.testing.assert_allclose(up.body_pose[:, 3], expected, atol=1e-6)
  np.testing.assert_allclose(up.body_pose[:, 0], 0.0, atol=1e-7)
  np.testing.assert_allclose(up.transl[:, 0], [0, 1, 2, 3, 4], atol=1e-6)


def test_resample_takes_the_short_arc():
  """170° and 190° (= -170°) about z are 20° apart: the midpoint is 180°, not 0°."""
  orient = np.stack([_rot_z(170), _rot_z(-170)])
  motion = hm.make_motion(np.zeros((2, 23, 3)), orient, np.zeros((2, 3)), 1.0, "arc")
  mid = hm.resample(motion, 2.0).global_orient[1]
  assert abs(np.degrees(np.linalg.norm(mid)) - 180.0) < 1e-3


def test_resample_down_then_up_keeps_shared_frames():
  motion = _random_motion(num_frames=13, fps=60.0)
  down = hm.resample(motion, 20.0)
  assert down.num_frames == 5
  assert _rotations_close(down.body_pose, motion.body_pose[::3])
  np.testing.assert_allclose(down.transl, motion.transl[::3], atol=1e-6)


def test_normalize_heading_and_centre():
  # Facing +x (90° about y) and walking along +x, starting at (5, 1, -2).
  t = np.arange(10)
  orient = np.tile(Rotation.from_euler("y", 90, degrees=True).as_rotvec(), (10, 1))
  transl = np.stack([5 + 0.1 * t, np.ones(10), -2 * np.ones(10)], -1)
  motion = hm.make_motion(np.zeros((10, 23, 3)), orient, transl, 30, "sideways")
  out = hm.normalize(motion)
  np.testing.assert_allclose(hm.heading_angle(out.global_orient), 0.0, atol=1e-6)
  np.testing.assert_allclose(out.transl[:, 2], 0.1 * t, atol=1e-6)  # now walks along +z
  np.testing.assert_allclose(out.transl[:, [0]], 0.0, atol=1e-6)
  np.testing.assert_allclose(out.transl[:, 1], 1.0, atol=1e-6)


def test_normalize_heading_is_a_rigid_motion_of_the_joints():
  motion = _random_motion(num_frames=6)
  rest = skeleton.rest_joints("generic")
  before = skeleton.forward_joints(rest, motion.full_pose, motion.transl)
  after_motion = hm.normalize(motion, heading=True, center=False)
  after = skeleton.forward_joints(rest, after_motion.full_pose, after_motion.transl)
  # Same pairwise distances across all frames, same heights: a rotation about the vertical.
  flat_b, flat_a = before.reshape(-1, 3), after.reshape(-1, 3)
  db = np.linalg.norm(flat_b[:, None] - flat_b[None], axis=-1)
  da = np.linalg.norm(flat_a[:, None] - flat_a[None], axis=-1)
  np.testing.assert_allclose(da, db, atol=1e-5)
  np.testing.assert_allclose(after[..., 1], before[..., 1], atol=1e-5)


def test_normalize_ground_puts_the_soles_on_the_plane():
  motion = _random_motion(num_frames=5)
  rest = skeleton.rest_joints("generic")
  out = hm.normalize(motion, heading=False, ground=True, rest_joints=rest, sole_offset=0.03,
                     ground_height=0.5)
  joints = skeleton.forward_joints(rest, out.full_pose, out.transl)
  assert abs(joints[..., 1].min() - 0.03 - 0.5) < 1e-5


def test_forward_joints_matches_body_forward():
  """The joint-only kinematic chain agrees with the full SMPL forward pass of hsjax.body."""
  body = pytest.importorskip("hsjax.body")
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  if not os.path.exists(skeleton.default_body_path()):
    pytest.skip("default body not built")
  model = body.load_body_model("default")
  motion = _random_motion(num_frames=3)
  out = body.body_forward(model, jnp.zeros(model.num_betas), jnp.asarray(motion.body_pose),
                          jnp.asarray(motion.global_orient), jnp.asarray(motion.transl))
  ours = skeleton.forward_joints(skeleton.rest_joints("default"), motion.full_pose,
                                 motion.transl)
  np.testing.assert_allclose(ours, np.asarray(out.joints), atol=2e-5)


# ------------------------------------------------------------------------------------------
# AMASS


def _amass_fixture(path, num_frames=8, fps=120.0, width=156, seed=0):
  rng = np.random.default_rng(seed)
  poses = rng.normal(0, 0.3, (num_frames, width))
  # Joint j of the body part gets a recognisable x component: 0.01 * j.
  poses[:, 0:66:3] = 0.01 * np.arange(22)
  trans = rng.normal(0, 1, (num_frames, 3))
  np.savez(path, poses=poses, trans=trans, betas=np.zeros(16), gender=np.array("neutral"),
           mocap_framerate=np.array(fps))
  return poses, trans


@pytest.mark.parametrize("width", [156, 165, 72])
def test_amass_joint_order_and_frame_rate(tmp_path, width):
  path = str(tmp_path / "seq_poses.npz")
  poses, trans = _amass_fixture(path, width=width)
  motion = hm.load_motion(path, up="y")
  assert motion.fps == 120.0 and motion.num_frames == 8 and motion.name == "seq_poses"
  np.testing.assert_allclose(motion.global_orient, poses[:, :3], atol=1e-6)
  np.testing.assert_allclose(motion.body_pose[:, :21].reshape(8, 63), poses[:, 3:66], atol=1e-6)
  np.testing.assert_allclose(motion.body_pose[:, 0, 0], 0.01)  # left_hip is SMPL joint 1
  np.testing.assert_allclose(motion.body_pose[:, 20, 0], 0.21)  # right_wrist is joint 21
  np.testing.assert_array_equal(motion.body_pose[:, 21:], 0.0)  # hands dropped
  np.testing.assert_allclose(motion.transl, trans, atol=1e-6)


def test_amass_frame_rate_conversion(tmp_path):
  path = str(tmp_path / "seq.npz")
  poses, _ = _amass_fixture(path, num_frames=9, fps=120.0)
  motion = hm.load_amass(path, target_fps=30.0, up="y")
  assert motion.fps == 30.0 and motion.num_frames == 3
  assert _rotations_close(motion.body_pose[:, :21], poses[::4, 3:66].reshape(3, 21, 3))


def test_amass_z_up_becomes_y_up(tmp_path):
  """A subject standing upright in AMASS's z-up world (root turned +90° about x) faces +z
  with an identity pelvis in hsjax's y-up world, and its height moves from z to y."""
  path = str(tmp_path / "standing.npz")
  poses = np.zeros((2, 156))
  poses[:, :3] = Rotation.from_euler("x", 90, degrees=True).as_rotvec()
  rest = skeleton.rest_joints("generic")
  # The pelvis stands 1 m above AMASS's floor (z = 1) at x = 0.3, y = 0.2.
  pelvis_z_up = np.array([0.3, 0.2, 1.0])
  trans = np.tile(pelvis_z_up - rest[0], (2, 1))
  np.savez(path, poses=poses, trans=trans, mocap_framerate=np.array(60.0))
  motion = hm.load_amass(path, rest="generic")
  np.testing.assert_allclose(motion.global_orient, 0.0, atol=1e-6)
  pelvis = rest[0] + motion.transl[0]
  np.testing.assert_allclose(pelvis, [0.3, 1.0, -0.2], atol=1e-6)


def test_amass_missing_field_is_named(tmp_path):
  path = tmp_path / "broken.npz"
  np.savez(path, poses=np.zeros((3, 156)), mocap_framerate=np.array(30.0))
  with pytest.raises(ValueError, match=r"broken\.npz: AMASS field 'trans' missing"):
    hm.load_motion(str(path))


# ------------------------------------------------------------------------------------------
# Shipped clips


def test_builtin_clips_are_real_and_valid():
  names = hm.builtin_motions()
  assert len(names) >= 6
  for required in ("walk", "run", "jump", "kick", "punch", "cartwheel"):
    assert required in names
  for name in names:
    motion = hm.builtin_motion(name)
    assert motion.fps == 30.0 and motion.num_frames >= 20, name
    meta = motion_lib.read_motion_meta(os.path.join(hm.io.builtin_dir(), name + ".npz"))
    assert "zlib" in meta["licence"] and meta["source_file"].endswith(f"humanoid3d_{name}.txt")
  with pytest.raises(ValueError, match="unknown built-in motion 'moonwalk'; available: "):
    hm.builtin_motion("moonwalk")


def test_builtin_walk_moves_forward_on_the_ground():
  """The walk starts facing +z at x = z = 0, advances along +z, and its feet reach the
  ground plane y = 0 in every stance (the README's convention)."""
  motion = hm.builtin_motion("walk")
  assert abs(hm.heading_angle(motion.global_orient[0])) < 1e-5
  np.testing.assert_allclose(motion.transl[0, [0, 2]], 0.0, atol=1e-6)
  assert motion.transl[-1, 2] > 0.8 and abs(motion.transl[-1, 0]) < 0.2
  name = skeleton.skeleton_name("auto")
  joints = skeleton.forward_joints(skeleton.rest_joints(name), motion.full_pose, motion.transl)
  feet = joints[:, [7, 8, 10, 11], 1].min(-1) - skeleton.sole_offset(name)
  assert -0.03 < feet.min() < 0.03
  assert np.mean(feet < 0.05) > 0.5  # a foot is on the ground for most of a gait cycle


def test_builtin_readme_documents_provenance_and_quality():
  with open(os.path.join(hm.io.builtin_dir(), "README.md")) as f:
    text = f.read()
  assert "zlib" in text and "pybullet" in text and "y = 0" in text
  for name in hm.builtin_motions():
    assert f"| {name} |" in text and f"| `{name}` |" in text


def test_motion_is_a_pytree():
  import jax  # pylint: disable=g-import-not-at-top

  motion = _random_motion(num_frames=2)
  leaves, treedef = jax.tree_util.tree_flatten(motion)
  assert len(leaves) == 3
  back = jax.tree_util.tree_unflatten(treedef, leaves)
  assert back.fps == motion.fps and back.name == motion.name


def test_builtin_clips_match_the_current_default_body():
  """The shipped clips' transl is placed for the default body's rest pelvis; if that body is
  rebuilt with another pelvis, tools/build_motions.py must be run again."""
  if not os.path.exists(skeleton.default_body_path()):
    pytest.skip("default body not built")
  pelvis = skeleton.rest_joints("default")[0]
  height = skeleton.pelvis_height("default")
  for name in hm.builtin_motions():
    meta = motion_lib.read_motion_meta(os.path.join(hm.io.builtin_dir(), name + ".npz"))
    assert meta["rest_skeleton"] == "default"
    np.testing.assert_allclose(meta["rest_pelvis"], pelvis, atol=2e-3, err_msg=name)
    assert abs(meta["rest_pelvis_height"] - height) < 2e-3, name


def test_loop_motion_extends_an_exact_cycle_exactly():
  """A cycle that closes exactly (periodic joints, steady forward speed) is continued as the
  analytic motion would be."""
  period, total = 12, 40
  t = np.arange(total + 1)
  axis = np.zeros((23, 3))
  axis[:, 0] = np.linspace(0.1, 0.6, 23)
  body = np.sin(2 * np.pi * t / period)[:, None, None] * axis
  transl = np.stack([np.zeros_like(t, float), 1.0 + 0.05 * np.cos(2 * np.pi * t / period),
                     0.04 * t], -1)
  orient = np.zeros((total + 1, 3))
  truth = hm.make_motion(body, orient, transl, 30.0, "cycle")
  looped = hm.loop_motion(truth.slice(0, period + 1), total + 1)
  np.testing.assert_allclose(looped.body_pose, truth.body_pose, atol=1e-5)
  np.testing.assert_allclose(looped.transl, truth.transl, atol=1e-5)


def test_loop_motion_has_no_seam():
  """The captured walk does not close exactly; looped, no joint jumps at the seams more
  than the fastest joint moves between two frames of the clip itself."""
  motion = hm.builtin_motion("walk")
  looped = hm.loop_motion(motion, 3 * motion.num_frames)
  rest = skeleton.rest_joints("generic")

  def max_step(m):
    joints = skeleton.forward_joints(rest, m.full_pose, m.transl)
    return np.linalg.norm(np.diff(joints, axis=0), axis=-1).max(-1)

  steps, original = max_step(looped), max_step(motion)
  assert steps.max() <= original.max() * 1.02
  seam = motion.num_frames - 2  # step from the cycle's last frame into the next cycle
  assert steps[seam] <= 1.5 * max(original[-1], original[0])
  # It keeps walking forward (+z) in a straight line.
  assert looped.transl[-1, 2] > 3 * motion.transl[-1, 2] - 0.2
  assert abs(looped.transl[-1, 0]) < 0.1
