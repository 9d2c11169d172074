"""Tests of DeepMimic import and of the generic retargeting step."""

import importlib.util
import json
import os
import zipfile

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import hsjax.motion as hm
from hsjax import rotations_np
from hsjax.motion import deepmimic
from hsjax.motion import retargeting
from hsjax.motion import skeleton

IDENTITY = [1.0, 0.0, 0.0, 0.0]


def _dm_frame(duration=1 / 30, root=(0.0, deepmimic.DM_PELVIS_HEIGHT, 0.0), root_q=IDENTITY,
              **joints):
  """One humanoid3d frame; joints default to the rest pose (identity, hinges 0)."""
  values = {"chest": IDENTITY, "neck": IDENTITY, "right_hip": IDENTITY, "right_knee": 0.0,
            "right_ankle": IDENTITY, "right_shoulder": IDENTITY, "right_elbow": 0.0,
            "left_hip": IDENTITY, "left_knee": 0.0, "left_ankle": IDENTITY,
            "left_shoulder": IDENTITY, "left_elbow": 0.0}
  values.update(joints)
  frame = [duration, *root, *root_q]
  for name in ("chest", "neck", "right_hip", "right_knee", "right_ankle", "right_shoulder",
               "right_elbow", "left_hip", "left_knee", "left_ankle", "left_shoulder",
               "left_elbow"):
    v = values[name]
    frame += list(v) if isinstance(v, (list, tuple)) else [v]
  assert len(frame) == 44
  return frame


def _write_dm(path, frames, loop="none"):
  path.write_text(json.dumps({"Loop": loop, "Frames": frames}))
  return str(path)


def _quat_wxyz(axis, deg):
  q = Rotation.from_rotvec(np.asarray(axis, float) * np.radians(deg)).as_quat()
  return [q[3], q[0], q[1], q[2]]


def _posed(motion):
  return skeleton.forward_joints(skeleton.rest_joints("generic"), motion.full_pose,
                                 motion.transl)


def test_deepmimic_rest_pose_hangs_the_arms_and_stands_on_the_ground(tmp_path):
  path = _write_dm(tmp_path / "humanoid3d_rest.txt", [_dm_frame(), _dm_frame(duration=0)])
  motion = hm.load_deepmimic(path, rest="generic")
  assert motion.name == "rest" and motion.fps == 30.0 and motion.num_frames == 2
  joints = _posed(motion)[0]
  # Arms hang straight down from the shoulders (the character's rest is not a T-pose).
  for shoulder, wrist in ((16, 20), (17, 21)):
    arm = joints[wrist] - joints[shoulder]
    assert np.degrees(np.arccos(-arm[1] / np.linalg.norm(arm))) < 1e-3
  # The root at the character's standing height puts the soles on y = 0 (to 5 mm: the
  # character's legs are vertical, SMPL's splay slightly, and the rest correction straightens
  # them).
  sole = joints[:, 1].min() - skeleton.sole_offset("generic")
  assert abs(sole) < 0.005
  np.testing.assert_allclose(motion.global_orient, 0.0, atol=1e-7)
  # The character's rigid wrists and head leave SMPL's wrists, hands and head unrotated
  # relative to their parents (SMPL joints 20-23 and 15 -> body_pose 19-22 and 14).
  np.testing.assert_allclose(motion.body_pose[:, [14, 19, 20, 21, 22]], 0.0, atol=1e-6)


def test_deepmimic_left_stays_left(tmp_path):
  """The character's left (its -z side) becomes SMPL's left (+x): bending the left knee and
  lifting the left arm forward move SMPL's left leg and arm, and the right elbow's hinge
  bends SMPL's right forearm forward."""
  frame = _dm_frame(left_knee=-np.pi / 2, right_elbow=np.pi / 2,
                    left_shoulder=_quat_wxyz([0, 0, 1], 90))  # about z: arm swings to +x
  path = _write_dm(tmp_path / "asym.txt", [frame, frame])
  joints = _posed(hm.load_deepmimic(path, rest="generic"))[0]
  assert joints[1, 0] > 0 and joints[4, 0] > 0  # left hip and knee on +x
  # Left shin horizontal and pointing back (-z); right leg straight.
  shin = joints[7] - joints[4]
  assert abs(shin[1]) < 1e-6 and shin[2] < -0.3
  assert np.linalg.norm((joints[8] - joints[5])[[0, 2]]) < 0.05
  # Left arm points forward (+z); right upper arm hangs down with its forearm forward.
  left_arm = joints[20] - joints[16]
  assert left_arm[2] > 0.45 and abs(left_arm[1]) < 1e-6
  right_fore = joints[21] - joints[19]
  assert right_fore[2] > 0.2 and abs(right_fore[1]) < 1e-6
  assert (joints[19] - joints[17])[1] < -0.2


def test_deepmimic_limb_directions_match_the_character(tmp_path):
  rng = np.random.default_rng(3)

  def rand_q():
    return list(Rotation.random(random_state=rng).as_quat()[[3, 0, 1, 2]])

  def small_q(max_deg=30.0):
    axis = rng.normal(size=3)
    return _quat_wxyz(axis / np.linalg.norm(axis), rng.uniform(0, max_deg))

  frames = [_dm_frame(root=(0.1 * i, 0.8, 0.0), root_q=rand_q(), chest=small_q(), neck=rand_q(),
                      right_hip=rand_q(), left_hip=rand_q(), right_knee=-rng.uniform(0, 2),
                      left_knee=-rng.uniform(0, 2), right_shoulder=rand_q(),
                      left_shoulder=rand_q(), right_elbow=rng.uniform(0, 2),
                      left_elbow=rng.uniform(0, 2), right_ankle=rand_q(), left_ankle=rand_q())
            for i in range(6)]
  path = _write_dm(tmp_path / "random.txt", frames)
  motion, info, _ = deepmimic.retarget_deepmimic(path, rest="generic")
  errors = hm.bone_direction_errors(motion, info)
  for bone in retargeting.LIMB_BONES:
    assert errors[bone].max() < 1e-4, bone
  # Trunk segments keep SMPL's rest curvature: their error is the rest-shape difference,
  # the same in every frame.
  for bone in ("lower_spine", "upper_spine"):
    assert np.ptp(errors[bone]) < 1e-4 and errors[bone].max() < 5.0, bone
  # The trunk (pelvis to neck) differs by the two skeletons' rest shapes and by where the
  # chest bends (51 % of the way up on the character, 46 % on the generic SMPL skeleton).
  assert errors["spine"].max() < 5.0


def test_deepmimic_uneven_frames_are_resampled(tmp_path):
  frames = [_dm_frame(duration=d, root=(x, 0.88, 0.0))
            for d, x in ((1 / 60, 0.0), (1 / 30, 0.1), (1 / 60, 0.3), (0.0, 0.4))]
  motion = hm.load_deepmimic(_write_dm(tmp_path / "uneven.txt", frames), rest="generic")
  assert motion.fps == 60.0 and motion.num_frames == 5  # 0 .. 4/60 s
  # The root moves linearly between key frames: z (forward) at t = 2/60 is halfway 0.1 -> 0.3.
  ratio = skeleton.pelvis_height("generic") / deepmimic.DM_PELVIS_HEIGHT
  z = motion.transl[:, 2] + skeleton.rest_joints("generic")[0, 2]
  np.testing.assert_allclose(z / ratio, [0.0, 0.1, 0.2, 0.3, 0.4], atol=1e-6)


def test_deepmimic_loop_flag_and_target_fps(tmp_path):
  frames = [_dm_frame() for _ in range(7)]
  path = _write_dm(tmp_path / "cycle.txt", frames, loop="wrap")
  motion = hm.load_motion(path, target_fps=15, rest="generic")
  assert motion.loop and motion.fps == 15.0 and motion.num_frames == 4


def test_deepmimic_bad_frame_is_named(tmp_path):
  frames = [_dm_frame(), _dm_frame()[:40]]
  path = _write_dm(tmp_path / "cut.txt", frames)
  with pytest.raises(ValueError, match=r"cut\.txt: frame 1 has 40 values"):
    hm.load_deepmimic(path)
  bad = _dm_frame()
  bad[35] = float("nan")
  path = _write_dm(tmp_path / "nan.txt", [bad, bad])
  with pytest.raises(ValueError, match=r"nan\.txt: non-finite value in frame 0, column 35 "
                     r"\(joint 'left_ankle'\)"):
    hm.load_deepmimic(path)


def test_deepmimic_chest_goes_to_the_spine_joint_at_its_height():
  assert deepmimic.chest_joint(skeleton.rest_joints("generic")) == "spine2"
  raised = skeleton.rest_joints("generic").copy()
  raised[6, 1] = 0.05  # spine2 now low: spine3 (0.30 of 0.52) is nearer the chest's 51 %
  raised[9, 1] = 0.27
  assert deepmimic.chest_joint(raised) == "spine3"


# ------------------------------------------------------------------------------------------
# Generic retargeting pieces


def test_rotation_between_is_minimal_and_handles_antiparallel():
  a = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.3, -0.2, 0.9]])
  b = np.array([[0, 1.0, 0], [0, -1.0, 0], [-0.3, 0.2, -0.9]])
  rot = rotations_np.rotation_between(a, b)
  np.testing.assert_allclose(np.einsum("nij,nj->ni", rot, a),
                             b / np.linalg.norm(b, axis=-1, keepdims=True)
                             * np.linalg.norm(a, axis=-1, keepdims=True), atol=1e-12)
  angles = np.degrees(Rotation.from_matrix(rot).magnitude())
  np.testing.assert_allclose(angles, [90, 180, 180], atol=1e-9)


def test_spine_chain_shares_a_single_chest_rotation():
  """A source with one chest joint above the pelvis: mapped to spine3 with spreading, spine1,
  spine2 and spine3 each take a third of the bend."""
  skel = retargeting.SourceSkeleton(
      names=("root", "chest", "neck", "lhip", "lknee", "lankle", "rhip", "rknee", "rankle",
             "lsho", "lelb", "rsho", "relb"),
      parents=(-1, 0, 1, 0, 3, 4, 0, 6, 7, 1, 9, 1, 11),
      offsets=np.array([[0, 1, 0], [0, .3, 0], [0, .2, 0], [.1, 0, 0], [0, -.4, 0],
                        [0, -.4, 0], [-.1, 0, 0], [0, -.4, 0], [0, -.4, 0], [.2, .15, 0],
                        [.25, 0, 0], [-.2, .15, 0], [-.25, 0, 0]], float))
  joint_map = {"pelvis": "root", "spine3": "chest", "neck": "neck", "left_hip": "lhip",
               "left_knee": "lknee", "left_ankle": "lankle", "right_hip": "rhip",
               "right_knee": "rknee", "right_ankle": "rankle", "left_shoulder": "lsho",
               "left_elbow": "lelb", "right_shoulder": "rsho", "right_elbow": "relb"}
  local_rot = np.broadcast_to(np.eye(3), (1, 13, 3, 3)).copy()
  local_rot[0, 1] = Rotation.from_euler("x", 60, degrees=True).as_matrix()
  local_trans = skel.offsets[None].copy()
  rest = skeleton.rest_joints("generic").copy()
  rest[[3, 6, 9, 12], 0] = 0.0
  rest[[3, 6, 9, 12], 2] = 0.0  # a straight SMPL spine, so that no rest correction interferes
  motion, _ = retargeting.retarget(skel, local_rot, local_trans, 30.0, joint_map, rest=rest)
  for k in (3, 6, 9):  # body_pose index k - 1
    np.testing.assert_allclose(np.degrees(motion.body_pose[0, k - 1]), [20, 0, 0], atol=1e-6)
  flat, _ = retargeting.retarget(skel, local_rot, local_trans, 30.0, joint_map, rest=rest,
                                 spread=False)
  np.testing.assert_allclose(np.degrees(flat.body_pose[0, [2, 5]]), 0.0, atol=1e-6)
  np.testing.assert_allclose(np.degrees(flat.body_pose[0, 8]), [60, 0, 0], atol=1e-6)


def test_joint_map_must_follow_the_tree():
  skel = retargeting.SourceSkeleton(names=("a", "b", "c"), parents=(-1, 0, 0),
                                    offsets=np.array([[0, 1, 0], [0.1, -0.1, 0], [0, -0.5, 0]]))
  with pytest.raises(ValueError, match=r"SMPL 'left_knee' on 'c', which is not below 'b'"):
    retargeting.retarget(skel, np.broadcast_to(np.eye(3), (1, 3, 3, 3)), skel.offsets[None],
                         30.0, {"pelvis": "a", "left_hip": "b", "left_knee": "c"},
                         axes=np.eye(3), scale=1.0, source="tree.bvh")


def _fake_pybullet_wheel(path, clip_frames):
  """A zip laid out like the pybullet wheel: the humanoid URDF and one motion clip."""
  joints = []
  for j, name in enumerate(deepmimic.DM_NAMES):
    if name in ("root", "head_end"):
      continue
    xyz = " ".join(f"{v / 0.25:.6f}" for v in deepmimic.DM_OFFSETS[j])
    joints.append(f'<joint name="{name}" type="spherical" >\n<parent link="x" />\n'
                  f'<origin rpy = "0 0 0" xyz = "{xyz}" />\n</joint>')
  urdf = "<robot>\n" + "\n".join(joints) + "\n</robot>\n\0trailing bytes"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("pybullet_data/humanoid/humanoid.urdf", urdf)
    zf.writestr("pybullet_data/data/motions/humanoid3d_walk.txt",
                json.dumps({"Loop": "wrap", "Frames": clip_frames}))


def test_build_script_writes_clips_readme_and_checks_the_urdf(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  spec = importlib.util.spec_from_file_location(
      "build_motions", os.path.join(root, "tools", "build_motions.py"))
  build = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(build)
  frames = [_dm_frame(root=(0.05 * i, deepmimic.DM_PELVIS_HEIGHT, 0.0),
                      left_knee=-0.3 * i) for i in range(5)]
  wheel = tmp_path / "pybullet-0-py3-none-any.whl"
  _fake_pybullet_wheel(wheel, frames)
  out = tmp_path / "motions"
  build.main(["--wheel", str(wheel), "--out", str(out), "--rest", "generic", "--preview", ""])
  motion = hm.load_motion(str(out / "walk.npz"))
  assert motion.fps == 30.0 and motion.num_frames == 5 and motion.loop
  with open(out / "README.md") as f:
    readme = f.read()
  assert "| walk | 5 | yes | 0.00 | 0.00 | 0.00 | 0.00 |" in readme
  # A URDF that disagrees with the importer's offsets stops the build.
  with zipfile.ZipFile(wheel) as zf:
    urdf = zf.read("pybullet_data/humanoid/humanoid.urdf").decode()
  with zipfile.ZipFile(wheel, "w") as zf:
    zf.writestr("pybullet_data/humanoid/humanoid.urdf",
                urdf.replace("-1.686184", "-1.5", 1))
  with pytest.raises(ValueError, match="joint 'right_knee' origin"):
    build.main(["--wheel", str(wheel), "--out", str(out), "--rest", "generic",
                "--preview", ""])
