"""Tests of the BVH reader/writer and of retargeting BVH skeletons onto SMPL."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hsjax import rotations_np
import hsjax.motion as hm
from hsjax.motion import placement
from hsjax.motion import retargeting
from hsjax.motion import skeleton

import bvh_writer

LIMB_TOL_DEG = 1e-2


def _two_joint_bvh(root_rot_order: str, root_pos_order: str = "Xposition Yposition Zposition"):
  """A root and a chest 1 unit above it, an end site 1 unit above the chest; two frames:
  rest at (1, 2, 3), then root X = 90, Y = 90 (in the listed order) and chest Z = 90."""
  values0 = {"Xposition": 1, "Yposition": 2, "Zposition": 3}
  values1 = dict(values0, Xrotation=90, Yrotation=90, Zrotation=0)
  chans = root_pos_order.split() + root_rot_order.split()
  row0 = " ".join(str(values0.get(c, 0)) for c in chans) + " 0 0 0"
  row1 = " ".join(str(values1[c]) for c in chans) + " 0 90 0"
  return f"""HIERARCHY
ROOT Hips
{{
  OFFSET 0 0 0
  CHANNELS 6 {' '.join(chans)}
  JOINT Chest
  {{
    OFFSET 0 1 0
    CHANNELS 3 Xrotation Zrotation Yrotation
    End Site
    {{
      OFFSET 0 1 0
    }}
  }}
}}
MOTION
Frames: 2
Frame Time: 0.04
{row0}
{row1}
"""


# Worked by hand with Rx(90): y -> z, Ry(90): z -> x, x -> -z, Rz(90): y -> -x.
# "Y X Z": R = Ry Rx; chest = (1,2,3) + Ry Rx (0,1,0) = (1,2,3) + Ry (0,0,1) = (2,2,3);
#   end = chest + Ry Rx Rz (0,1,0) = chest + Ry Rx (-1,0,0) = chest + (0,0,1).
# "X Y Z": R = Rx Ry; chest = (1,2,3) + Rx (0,1,0) = (1,2,4);
#   end = chest + Rx Ry (-1,0,0) = chest + Rx (0,0,1) = chest + (0,-1,0).
HAND_CASES = [
    ("Yrotation Xrotation Zrotation", "Xposition Yposition Zposition", (2, 2, 3), (2, 2, 4)),
    ("Zrotation Yrotation Xrotation", "Zposition Xposition Yposition", (2, 2, 3), (2, 2, 4)),
    ("Xrotation Yrotation Zrotation", "Yposition Zposition Xposition", (1, 2, 4), (1, 1, 4)),
    ("Zrotation Xrotation Yrotation", "Xposition Yposition Zposition", (1, 2, 4), (1, 1, 4)),
]


@pytest.mark.parametrize("rot_order,pos_order,chest,end", HAND_CASES)
def test_bvh_joint_positions_known_by_hand(tmp_path, rot_order, pos_order, chest, end):
  path = tmp_path / "two.bvh"
  path.write_text(_two_joint_bvh(rot_order, pos_order))
  bvh = hm.read_bvh(str(path))
  assert bvh.names == ("Hips", "Chest", "Chest_end") and bvh.end_site == (False, False, True)
  assert bvh.fps == 25.0 and bvh.num_frames == 2
  _, pos = bvh.skeleton.forward(*bvh.local_transforms())
  np.testing.assert_allclose(pos[0], [[1, 2, 3], [1, 3, 3], [1, 4, 3]], atol=1e-9)
  np.testing.assert_allclose(pos[1], [[1, 2, 3], chest, end], atol=1e-9)


def test_bvh_unit_scale_and_detection(tmp_path):
  path = tmp_path / "cm.bvh"
  motion = hm.builtin_motion("walk").slice(0, 3)
  hm.write_bvh(str(path), motion, rest="generic", unit_scale=100.0)
  assert hm.detect_units(hm.read_bvh(str(path))) == ("cm", 0.01)
  metres = hm.read_bvh(str(path), unit_scale=0.01)
  assert hm.detect_units(metres) == ("m", 1.0)
  joints = metres.skeleton.rest_positions()[~np.asarray(metres.end_site)]
  np.testing.assert_allclose(joints, _file_order(skeleton.GENERIC_REST_JOINTS), atol=1e-6)


def _file_order(joints):
  children = {k: [c for c, p in enumerate(skeleton.SMPL_PARENTS) if p == k] for k in range(24)}
  order = []

  def walk(k):
    order.append(k)
    for c in children[k]:
      walk(c)

  walk(0)
  return np.asarray(joints)[order]


@pytest.mark.parametrize("order,unit", [("ZYX", 1.0), ("ZXY", 100.0), ("XYZ", 1.0)])
def test_smpl_bvh_export_reads_back_equal(tmp_path, order, unit):
  rng = np.random.default_rng(1)
  motion = hm.make_motion(rng.normal(0, 0.5, (6, 23, 3)), rng.normal(0, 1.0, (6, 3)),
                          rng.normal(0, 1.0, (6, 3)), 30.0, "export")
  path = str(tmp_path / "export.bvh")
  hm.write_bvh(path, motion, rest="generic", unit_scale=unit, order=order)
  back = hm.load_motion(path, rest="generic", unit_scale=1.0 / unit)
  assert back.fps == 30.0 and back.num_frames == 6 and back.name == "export"
  rel = (Rotation.from_rotvec(back.full_pose.reshape(-1, 3)).inv() *
         Rotation.from_rotvec(motion.full_pose.reshape(-1, 3)))
  assert np.degrees(rel.magnitude()).max() < 1e-3
  np.testing.assert_allclose(back.transl, motion.transl, atol=1e-5)


# ------------------------------------------------------------------------------------------
# Errors


def test_missing_channel_in_hierarchy_names_file_and_joint(tmp_path):
  text = _two_joint_bvh("Zrotation Xrotation Yrotation").replace(
      "CHANNELS 3 Xrotation Zrotation Yrotation", "CHANNELS 3 Xrotation Zrotation")
  path = tmp_path / "missing.bvh"
  path.write_text(text)
  with pytest.raises(ValueError, match=r"missing\.bvh.*joint 'Chest': CHANNELS declares 3"):
    hm.read_bvh(str(path))


def test_missing_values_in_a_frame_name_file_and_joint(tmp_path):
  lines = _two_joint_bvh("Zrotation Xrotation Yrotation").rstrip("\n").split("\n")
  lines[-1] = " ".join(lines[-1].split()[:7])  # the chest's last two values are gone
  path = tmp_path / "short.bvh"
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=r"short\.bvh: frame 1 has 7 values.*joint 'Chest'"):
    hm.read_bvh(str(path))


def test_unknown_joint_names_without_map_fail_clearly(tmp_path):
  path = tmp_path / "robot.bvh"
  path.write_text(_two_joint_bvh("Zrotation Xrotation Yrotation"))
  with pytest.raises(ValueError, match=r"robot\.bvh: no joint-map preset.*joint_map="):
    hm.load_motion(str(path))
  with pytest.raises(ValueError, match=r"robot\.bvh: joint map 'left_hip' -> 'LeftUpLeg': "
                     r"no joint 'LeftUpLeg'"):
    hm.retarget_bvh(str(path), joint_map={"pelvis": "Hips", "left_hip": "LeftUpLeg"})
  with pytest.raises(ValueError, match="'hip_l' is not an SMPL joint name"):
    hm.retarget_bvh(str(path), joint_map={"pelvis": "Hips", "hip_l": "Chest"})


def test_nan_in_bvh_names_the_joint(tmp_path):
  text = _two_joint_bvh("Zrotation Xrotation Yrotation").rstrip("\n")
  text = text[:text.rindex(" ")] + " nan\n"
  path = tmp_path / "nan.bvh"
  path.write_text(text)
  with pytest.raises(ValueError, match=r"nan\.bvh: frame 1: non-finite value for joint "
                     r"'Chest' channel Yrotation"):
    hm.read_bvh(str(path))


# ------------------------------------------------------------------------------------------
# Retargeting other skeletons

# A CMU/cgspeed-style skeleton (names and extra joints as in those files, plus a forearm twist
# joint), resting in an A-pose, in SMPL-like axes (y up, facing +z, left +x), centimetres.
_CMU = [
    ("Hips", None, (0, 95, 0)),
    ("LHipJoint", "Hips", (8, -4, 0)), ("LeftUpLeg", "LHipJoint", (2, -5, 0)),
    ("LeftLeg", "LeftUpLeg", (0, -42, 1)), ("LeftFoot", "LeftLeg", (0, -40, -2)),
    ("LeftToeBase", "LeftFoot", (0, -6, 12)),
    ("RHipJoint", "Hips", (-8, -4, 0)), ("RightUpLeg", "RHipJoint", (-2, -5, 0)),
    ("RightLeg", "RightUpLeg", (0, -42, 1)), ("RightFoot", "RightLeg", (0, -40, -2)),
    ("RightToeBase", "RightFoot", (0, -6, 12)),
    ("LowerBack", "Hips", (0, 10, -1)), ("Spine", "LowerBack", (0, 12, 0)),
    ("Spine1", "Spine", (0, 10, 1)), ("Neck", "Spine1", (0, 14, 0)),
    ("Neck1", "Neck", (0, 5, 1)), ("Head", "Neck1", (0, 6, 1)),
    ("LeftShoulder", "Spine1", (3, 11, 0)), ("LeftArm", "LeftShoulder", (14, -1, 0)),
    ("LeftForeArm", "LeftArm", (19, -19, 0)),
    # A twist joint half-way along the forearm (no SMPL counterpart: folded into the forearm).
    ("LeftForeArmRoll", "LeftForeArm", (8, -8, 0)), ("LeftHand", "LeftForeArmRoll", (9, -9, 0)),
    ("LeftFingerBase", "LeftHand", (5, -5, 0)),
    ("RightShoulder", "Spine1", (-3, 11, 0)), ("RightArm", "RightShoulder", (-14, -1, 0)),
    ("RightForeArm", "RightArm", (-19, -19, 0)), ("RightHand", "RightForeArm", (-17, -17, 0)),
    ("RightFingerBase", "RightHand", (-5, -5, 0)),
]


# File axes: z up, facing -y (SMPL-like x -> x, up y -> z, forward z -> -y).
Z_UP = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])


@pytest.mark.parametrize("axes", [np.eye(3), Z_UP], ids=["y_up", "z_up"])
def test_cmu_skeleton_retargets_with_exact_limb_directions(tmp_path, axes):
  rng = np.random.default_rng(2)
  num_frames, num_joints = 5, len(_CMU)
  angles = rng.uniform(-60, 60, (num_frames, num_joints, 3))
  orders = [("ZXY", "XYZ", "YZX")[j % 3] for j in range(num_joints)]
  root = np.stack([np.linspace(0, 50, num_frames), np.full(num_frames, 95.0),
                   np.zeros(num_frames)], -1)
  path = tmp_path / "cmu.bvh"
  bvh_writer.write_bvh(path, _CMU, axes, angles, root, orders)
  bvh = hm.read_bvh(str(path))
  motion, info = retargeting.retarget(bvh.skeleton, *bvh.local_transforms(), bvh.fps,
                                      rest="generic")
  assert info.joint_map["left_hip"] == "LeftUpLeg" and info.joint_map["spine3"] == "Spine1"
  np.testing.assert_allclose(info.axes, axes.T, atol=1e-12)  # detected from the rest pose
  errors = hm.bone_direction_errors(motion, info)
  for bone in retargeting.LIMB_BONES:
    assert errors[bone].max() < LIMB_TOL_DEG, bone
  # retarget_bvh gives the same motion.
  again = hm.retarget_bvh(bvh, rest="generic")
  np.testing.assert_allclose(again.body_pose, motion.body_pose, atol=1e-6)


def test_a_pose_rest_maps_to_arms_down_at_45_degrees(tmp_path):
  """All channels zero = the file's A-pose rest: the SMPL arms point 45° down, not T-pose."""
  path = tmp_path / "rest.bvh"
  bvh_writer.write_bvh(path, _CMU, np.eye(3), np.zeros((1, len(_CMU), 3)), [(0, 95, 0)],
                      ["ZXY"] * len(_CMU))
  motion = hm.retarget_bvh(str(path), rest="generic")
  joints = skeleton.forward_joints(skeleton.rest_joints("generic"), motion.full_pose,
                                   motion.transl)[0]
  upper = joints[18] - joints[16]
  assert abs(np.degrees(np.arctan2(-upper[1], upper[0])) - 45.0) < 1e-3
  # Hands (LeftFingerBase, no joint below it) keep the wrist's line: identity locals.
  np.testing.assert_allclose(motion.body_pose[0, [21, 22]], 0.0, atol=1e-6)
  # Knees nearly straight: only the two skeletons' different rest knee angles remain.
  assert np.degrees(np.linalg.norm(motion.body_pose[0, [3, 4]], axis=-1)).max() < 8.0


def test_left_stays_left(tmp_path):
  """Raising the file's left arm and bending its left knee moves SMPL's left arm and knee."""
  angles = np.zeros((1, len(_CMU), 3))
  names = [n for n, _, _ in _CMU]
  angles[0, names.index("LeftArm")] = (135, 0, 0)  # Z (first of ZXY): the arm swings up
  angles[0, names.index("LeftLeg")] = (0, 80, 0)  # X (second): the shin swings back
  path = tmp_path / "asym.bvh"
  bvh_writer.write_bvh(path, _CMU, np.eye(3), angles, [(0, 95, 0)], ["ZXY"] * len(_CMU))
  motion = hm.retarget_bvh(str(path), rest="generic")
  joints = skeleton.forward_joints(skeleton.rest_joints("generic"), motion.full_pose,
                                   motion.transl)[0]
  left_wrist, right_wrist = joints[20], joints[21]
  assert left_wrist[0] > 0 > right_wrist[0]  # SMPL's left is +x
  assert left_wrist[1] > joints[16][1] + 0.3  # raised above the shoulder
  assert right_wrist[1] < joints[17][1] - 0.3  # still hanging in the A-pose
  assert np.linalg.norm(motion.body_pose[0, 3]) > 1.0  # left_knee (joint 4) bent
  assert np.linalg.norm(motion.body_pose[0, 4]) < 0.15  # right_knee (joint 5) nearly straight
  assert joints[7][2] < joints[4][2] - 0.2  # the left ankle swung behind the knee


@pytest.mark.parametrize("preset,names", [
    ("mixamo", ["mixamorig:Hips", "mixamorig:Spine", "mixamorig:Spine1", "mixamorig:Spine2",
                "mixamorig:Neck", "mixamorig:Head", "mixamorig:LeftShoulder",
                "mixamorig:LeftArm", "mixamorig:LeftForeArm", "mixamorig:LeftHand",
                "mixamorig:RightShoulder", "mixamorig:RightArm", "mixamorig:RightForeArm",
                "mixamorig:RightHand", "mixamorig:LeftUpLeg", "mixamorig:LeftLeg",
                "mixamorig:LeftFoot", "mixamorig:LeftToeBase", "mixamorig:RightUpLeg",
                "mixamorig:RightLeg", "mixamorig:RightFoot", "mixamorig:RightToeBase"]),
    ("motionbuilder", ["Hips", "Chest", "Chest2", "Chest3", "Neck", "Head", "LeftCollar",
                       "LeftShoulder", "LeftElbow", "LeftWrist", "RightCollar",
                       "RightShoulder", "RightElbow", "RightWrist", "LeftHip", "LeftKnee",
                       "LeftAnkle", "LeftToe", "RightHip", "RightKnee", "RightAnkle",
                       "RightToe"]),
    ("cmu", [n for n, _, _ in _CMU]),
    # Blender-style names, no hand or toe bones (read_bvh names end sites "<joint>_end").
    ("blender", ["pelvis", "spine", "spine.001", "neck", "face", "face_end", "shoulder.L",
                 "upper_arm.L", "forearm.L", "forearm.L_end", "shoulder.R", "upper_arm.R",
                 "forearm.R", "forearm.R_end", "pelvis.L", "pelvis.L_end", "pelvis.R",
                 "pelvis.R_end", "thigh.L", "shin.L", "foot.L", "foot.L_end", "thigh.R",
                 "shin.R", "foot.R", "foot.R_end"]),
])
def test_presets_are_detected(preset, names):
  found = retargeting.resolve_joint_map(tuple(names), "auto")
  expected = retargeting.resolve_joint_map(tuple(names), preset)
  assert found == expected
  assert len(found) >= (19 if preset == "blender" else 20)
  assert found["left_elbow"].endswith({"mixamo": "LeftForeArm", "motionbuilder": "LeftElbow",
                                       "cmu": "LeftForeArm", "blender": "forearm.L"}[preset])
  assert found["left_hip"] != found["right_hip"]


def test_load_motion_normalises_heading_and_ground(tmp_path):
  """A clip facing -x and floating 1 m up comes back facing +z with its soles on y = 0."""
  motion = hm.builtin_motion("walk").slice(0, 10)
  turned = hm.normalize(motion, heading=False, center=False)
  orient = (Rotation.from_euler("y", -90, degrees=True) *
            Rotation.from_rotvec(turned.global_orient)).as_rotvec()
  moved = turned.replace(global_orient=orient.astype(np.float32),
                         transl=turned.transl + np.float32([3.0, 1.0, 2.0]))
  path = str(tmp_path / "turned.bvh")
  hm.write_bvh(path, moved, rest="generic")
  back = hm.load_motion(path, rest="generic", heading=True, ground=True)
  assert abs(hm.heading_angle(back.global_orient[0])) < 1e-4
  np.testing.assert_allclose(back.transl[0, [0, 2]], 0.0, atol=1e-5)
  body = placement.body_points("generic")
  glob, joints = placement.forward(body.rest, rotations_np.axis_angle_to_matrix(back.full_pose),
                                   back.transl)
  feet = placement.skin(body, glob, joints)[:, body.mask((7, 8, 10, 11))]
  assert abs(feet[..., 1].min()) < 1e-5  # the feet's soles, not the lowest joint
