"""Retargeting that respects the trunk and the floor, on generated BVH fixtures.

Two skeletons are written as BVH files, MotionBuilder-style (``Hips, Ab, Chest, Neck``,
``LeftHip, LeftKnee, LeftAnkle, LeftToe``) and CMU-style (``LowerBack, Spine, Spine1``,
``LeftUpLeg, LeftLeg, LeftFoot, LeftToeBase``), both with a straight trunk and leg
proportions unlike SMPL's (a short thigh, a long shin, wide hips), so that a plain retarget
skates and leaves the soles off the floor. The clip: the source squats and sways with both
feet planted, steps forward with the left foot, bows so that its wrists come close to the
floor (its arms are short: SMPL's reach lower), and twists its forearms.
"""

import dataclasses

import numpy as np
import pytest

from hsjax import rotations_np
import hsjax.motion as hm
from hsjax.motion import placement
from hsjax.motion import quality
from hsjax.motion import retargeting
from hsjax.motion import skeleton

import bvh_writer

FPS = 30.0
NUM_FRAMES = 75
# Acceptance (the thresholds).
LIMB_DEG, SPINE_DEG, FLOOR_M, SKATE_RATIO = 1.0, 6.0, 0.02, 1.2


def _rx(deg):
  """[T, 3, 3] rotations about x by ``deg`` [T] degrees."""
  rad = np.radians(np.asarray(deg, float))
  return rotations_np.axis_angle_to_matrix(
      np.stack([rad, np.zeros_like(rad), np.zeros_like(rad)], -1))


def _skeleton(style):
  """[(name, parent, offset cm)] in SMPL-like axes (y up, facing +z, left +x), T-pose."""
  if style == "motionbuilder":
    n = dict(hip="{s}Hip", knee="{s}Knee", ankle="{s}Ankle", toe="{s}Toe", collar="{s}Collar",
             shoulder="{s}Shoulder", elbow="{s}Elbow", wrist="{s}Wrist")
    trunk = [("Ab", "Hips", (0, 9, 0)), ("Chest", "Ab", (0, 22, 0)),
             ("Neck", "Chest", (0, 21, 0)), ("Head", "Neck", (0, 10, 2))]
    chest = "Chest"
  else:
    n = dict(hip="{s}UpLeg", knee="{s}Leg", ankle="{s}Foot", toe="{s}ToeBase",
             collar="{s}Shoulder", shoulder="{s}Arm", elbow="{s}ForeArm", wrist="{s}Hand")
    trunk = [("LowerBack", "Hips", (0, 9, 0)), ("Spine", "LowerBack", (0, 11, 0)),
             ("Spine1", "Spine", (0, 11, 0)), ("Neck", "Spine1", (0, 21, 0)),
             ("Head", "Neck", (0, 10, 2))]
    chest = "Spine1"
  joints = [("Hips", None, (0, 0, 0))] + trunk
  for side, sign in (("Left", 1), ("Right", -1)):
    f = {k: v.format(s=side) for k, v in n.items()}
    joints += [(f["hip"], "Hips", (12 * sign, -3, 0)), (f["knee"], f["hip"], (0, -38, 0)),
               (f["ankle"], f["knee"], (0, -46, 0)), (f["toe"], f["ankle"], (0, -6, 13)),
               (f["collar"], chest, (3 * sign, 17, 0)), (f["shoulder"], f["collar"],
                                                          (14 * sign, 0, 0)),
               (f["elbow"], f["shoulder"], (22 * sign, 0, 0)),
               (f["wrist"], f["elbow"], (20 * sign, 0, 0))]
  return joints, n


def _leg_angles(hip, ankle, thigh, shin):
  """Sagittal two-link IK: ``(hip angle, knee angle)`` (degrees about x) putting the ankle
  at ``ankle`` [T, 3] from the hip [T, 3] (legs hang straight at rest; knee bends forward)."""
  d = ankle - hip
  dist = np.linalg.norm(d[:, 1:], axis=-1)
  phi = np.degrees(np.arctan2(-d[:, 2], -d[:, 1]))
  beta = np.degrees(np.arccos((thigh ** 2 + dist ** 2 - shin ** 2) / (2 * thigh * dist)))
  gamma = np.degrees(np.arccos((shin ** 2 + dist ** 2 - thigh ** 2) / (2 * shin * dist)))
  return phi - beta, beta + gamma


def _clip(style, reach=False):
  """Per-joint local rotations [T, J, 3, 3] and root positions [T, 3] (cm).

  ``reach``: instead, a deep squat and a 120° bow with both feet planted, the wrists hanging
  to about 12 cm above the floor (SMPL's longer arms and hands reach below it).
  """
  joints, n = _skeleton(style)
  names = [j[0] for j in joints]
  t = np.arange(NUM_FRAMES)
  rot = np.broadcast_to(np.eye(3), (NUM_FRAMES, len(joints), 3, 3)).copy()
  wave = np.sin(np.pi * t / (NUM_FRAMES - 1)) ** 2
  root = np.stack([np.zeros(NUM_FRAMES), 88.0 - (45.0 * wave if reach else
                                                 8.0 * np.sin(np.pi * t / 25) ** 2),
                   4.0 * np.sin(2 * np.pi * t / 30)], -1)
  # The left foot steps 20 cm forward between frames 25 and 37 (10 cm lift), then stays.
  s = np.clip((t - 25) / 12.0, 0.0, 1.0) * (not reach)
  feet = {"Left": np.stack([np.full(NUM_FRAMES, 12.0), -3 - 38 - 46 + 94 + 10 * np.sin(np.pi * s),
                            20 * (3 * s ** 2 - 2 * s ** 3)], -1),
          "Right": np.tile([-12.0, 94 - 3 - 38 - 46, 0.0], (NUM_FRAMES, 1))}
  bow = (120.0 * wave if reach else
         80.0 * np.sin(np.pi * np.clip((t - 45) / 25.0, 0.0, 1.0)) ** 2)
  for side in ("Left", "Right"):
    f = {k: v.format(s=side) for k, v in n.items()}
    hip = root + np.array([12.0 if side == "Left" else -12.0, -3.0, 0.0])
    a, b = _leg_angles(hip, feet[side], 38.0, 46.0)
    rot[:, names.index(f["hip"])] = _rx(a)
    rot[:, names.index(f["knee"])] = _rx(b)
    rot[:, names.index(f["ankle"])] = _rx(-(a + b))  # the foot stays flat
    sign = 1 if side == "Left" else -1
    # Arms hang down (75° from the T-pose, 90° when reaching) in the world whatever the
    # trunk's bow below.
    rot[:, names.index(f["shoulder"])] = _rx(-bow) @ rotations_np.axis_angle_to_matrix(
        np.array([0.0, 0.0, -np.radians(90.0 if reach else 75.0) * sign]))
    rot[:, names.index(f["wrist"])] = rotations_np.axis_angle_to_matrix(
        np.stack([np.radians(70.0) * np.sin(2 * np.pi * t / 40) * sign, 0 * t, 0 * t], -1))
  # A bow over frames 45-70: the trunk bends forward by up to 80 degrees.
  bends = ("Ab", "Chest") if style == "motionbuilder" else ("LowerBack", "Spine", "Spine1")
  for name in bends:
    rot[:, names.index(name)] = _rx(bow / len(bends))
  return joints, rot, root


def _write_bvh(path, joints, rot, root):
  """A BVH of ``joints`` posed by rotation matrices ``rot`` [T, J, 3, 3] (ZXY channels)."""
  bvh_writer.write_bvh(path, joints, np.eye(3), rotations_np.matrix_to_euler("ZXY", rot), root,
                       ["ZXY"] * len(joints), frame_time=1 / FPS)


@pytest.fixture(scope="module", params=["motionbuilder", "cmu"])
def clip(request, tmp_path_factory):
  path = tmp_path_factory.mktemp(request.param) / f"{request.param}.bvh"
  _write_bvh(path, *_clip(request.param))
  return request.param, hm.read_bvh(str(path))


@pytest.fixture(scope="module")
def body():
  if not __import__("os").path.exists(skeleton.default_body_path()):
    pytest.skip("default body not built")
  return placement.body_points("default")


def _retarget(bvh, **options):
  return retargeting.retarget(bvh.skeleton, *bvh.local_transforms(), bvh.fps, "auto",
                              rest="default", source=bvh.path, **options)


def test_fixture_source_keeps_its_feet_planted(clip):
  """The generated source itself: planted feet still, the stepping foot moving."""
  _, bvh = clip
  _, pos = bvh.skeleton.forward(*bvh.local_transforms())
  right = pos[:, bvh.names.index([n for n in bvh.names if n.startswith("Right") and
                                  n.endswith(("Ankle", "Foot"))][0])]
  assert np.ptp(right, axis=0).max() < 1e-3  # cm: the right foot never moves
  left = pos[:, bvh.names.index([n for n in bvh.names if n.startswith("Left") and
                                 n.endswith(("Ankle", "Foot"))][0])]
  assert np.ptp(left[:, 2]) > 19.0


def test_spine_goes_to_the_joints_at_its_height(clip):
  style, bvh = clip
  _, info = _retarget(bvh, placement="none")
  expected = {"motionbuilder": {"spine1": "Ab", "spine3": "Chest"},
              "cmu": {"spine1": "LowerBack", "spine2": "Spine", "spine3": "Spine1"}}[style]
  assert {k: v for k, v in info.joint_map.items() if k.startswith("spine")} == expected


def test_spine_segments_follow_the_source(clip):
  """With trunk="align" every trunk segment above the pelvis points along the source's; with
  "keep" SMPL's own rest curve shows as an error (the fixture's trunk is straight)."""
  _, bvh = clip
  errors = {}
  for trunk in ("align", "keep"):
    motion, info = _retarget(bvh, trunk=trunk, placement="none")
    segments = quality.spine_segment_errors(motion, info)
    errors[trunk] = np.mean([v.mean() for k, v in segments.items() if not k.startswith("pelvis")])
  assert errors["align"] <= SPINE_DEG
  assert errors["align"] < 0.5
  assert errors["keep"] > 2.0


def test_placement_meets_the_floor_and_skate_acceptance(clip, body):
  style, bvh = clip
  plain, plain_info = _retarget(bvh, placement="none")
  plain_floor = quality.floor_report(plain, plain_info, body)
  # The fixture could fail: without placement the soles are off the floor or the feet slide.
  assert (plain_floor["sole_height"]["max"] > FLOOR_M or
          plain_floor["skate"] > SKATE_RATIO * plain_floor["source_skate"] + 1e-3), plain_floor
  motion, info = _retarget(bvh)
  floor = quality.floor_report(motion, info, body)
  contacts = info.placement.contacts
  assert contacts[:20].all() and contacts[:, 1].all()  # planted at the start; right always
  assert not contacts[28:34, 0].any()  # the left foot in the air mid-step
  for group, pen in floor["penetration"].items():
    assert pen["max"] <= FLOOR_M, (style, group, pen)
  assert floor["sole_height"]["max"] <= FLOOR_M, floor["sole_height"]
  assert floor["skate"] <= SKATE_RATIO * floor["source_skate"] + 1e-3, floor
  assert floor["contacts_kept"] > 0.95


def test_sole_tolerance_trades_leg_ik_for_sole_height(clip, body):
  """Planted soles may sit within ``sole_tolerance`` of the floor: leg IK then moves less, so
  the legs keep the source's directions better, and no sole leaves the band."""
  _, bvh = clip
  plain, info = _retarget(bvh, placement="none")
  legs = ("left_thigh", "right_thigh", "left_shin", "right_shin")
  error, sole = {}, {}
  for tol in (0.0, 0.01):
    placed, report = placement.place(plain, info, body, sole_tolerance=tol)
    errors = retargeting.bone_direction_errors(placed, info)
    error[tol] = np.mean([errors[b].mean() for b in legs])
    floor = quality.floor_report(placed, dataclasses.replace(info, placement=report), body)
    sole[tol] = floor["sole_height"]["max"]
  assert sole[0.0] < 2e-3
  assert sole[0.01] <= 0.01 + 2e-3
  assert error[0.01] < 0.9 * error[0.0], error


def test_hands_are_kept_above_the_floor(tmp_path, body):
  """The source's wrists stay about 12 cm above its floor; SMPL's longer arms and hands would
  reach below it. Placement bends the hands up and lifts the arms; the legs stay planted."""
  path = tmp_path / "reach.bvh"
  _write_bvh(path, *_clip("motionbuilder", reach=True))
  bvh = hm.read_bvh(str(path))
  plain, plain_info = _retarget(bvh, placement="none")
  assert quality.floor_report(plain, plain_info, body)["penetration"]["hands"]["max"] > 0.05
  motion, info = _retarget(bvh)
  floor = quality.floor_report(motion, info, body)
  for group, pen in floor["penetration"].items():
    assert pen["max"] <= FLOOR_M, (group, pen)
  assert floor["sole_height"]["max"] <= FLOOR_M
  assert floor["skate"] <= SKATE_RATIO * floor["source_skate"] + 1e-3
  errors = retargeting.bone_direction_errors(motion, info)
  free = ~info.placement.ik_frames[:, 2]
  assert free.any() and errors["left_forearm"][free].max() < 1e-3


def test_placement_keeps_limb_directions_and_twist(clip):
  _, bvh = clip
  motion, info = _retarget(bvh)
  errors = retargeting.bone_direction_errors(motion, info)
  limbs = np.concatenate([errors[b] for b in retargeting.LIMB_BONES])
  assert limbs.mean() <= LIMB_DEG
  # Outside the frames where IK moved a leg, legs are exact.
  free = ~info.placement.ik_frames[:, 0]
  assert errors["left_thigh"][free].max() < 1e-3
  twist = quality.twist_errors(motion, info)
  values = np.concatenate([np.abs(v) for k, v in twist.items() if "elbow" not in k])
  assert values.mean() <= LIMB_DEG


def test_twist_moves_into_the_elbow_and_unpinches_the_wrist(clip, body):
  """Half of the wrist's twist goes into the elbow: hands and bones stay where they were, the
  wrist's skin ring collapses less."""
  _, bvh = clip
  before, _ = _retarget(bvh, twist=0.0, placement="none")
  after, info = _retarget(bvh, twist=0.5, placement="none")
  rest = info.rest
  glob_b = skeleton.global_rotations(rotations_np.axis_angle_to_matrix(before.full_pose))
  glob_a = skeleton.global_rotations(rotations_np.axis_angle_to_matrix(after.full_pose))
  np.testing.assert_allclose(glob_a[:, [20, 21]], glob_b[:, [20, 21]], atol=1e-5)
  np.testing.assert_allclose(skeleton.forward_joints(rest, after.full_pose, after.transl),
                             skeleton.forward_joints(rest, before.full_pose, before.transl),
                             atol=1e-5)
  twist = quality.twist_errors(after, info)
  assert np.abs(twist["left_elbow"]).max() > 20.0  # the elbow took a share
  pinch_b = quality.pinch(before, body, 18, 20).max()
  pinch_a = quality.pinch(after, body, 18, 20).max()
  assert pinch_b > 0.03 and pinch_a < 0.6 * pinch_b


def test_unmapped_spine_joint_warns():
  """Four trunk joints and a map that names two of them: the others are reported."""
  names = ("Hips", "Ab", "Chest", "Chest2", "Chest3", "Neck", "LeftHip", "LeftKnee",
           "RightHip", "RightKnee", "LeftShoulder", "LeftElbow", "RightShoulder", "RightElbow")
  parents = (-1, 0, 1, 2, 3, 4, 0, 6, 0, 8, 4, 10, 4, 12)
  offsets = np.array([[0, 1, 0], [0, .1, 0], [0, .1, 0], [0, .1, 0], [0, .1, 0], [0, .1, 0],
                      [.1, 0, 0], [0, -.4, 0], [-.1, 0, 0], [0, -.4, 0], [.2, 0, 0],
                      [.25, 0, 0], [-.2, 0, 0], [-.25, 0, 0]], float)
  skel = retargeting.SourceSkeleton(names=names, parents=parents, offsets=offsets)
  joint_map = {"pelvis": "Hips", "spine1": "Ab", "spine3": "Chest3", "neck": "Neck"}
  with pytest.warns(UserWarning, match=r"\['Chest', 'Chest2'\] between 'Hips' and 'Neck'"):
    missing = retargeting.check_spine(skel, joint_map, "four.bvh")
  assert missing == ["Chest", "Chest2"]
  # A preset's spine is assigned by the chain: lowest, nearest spine2's height, highest.
  auto = retargeting.assign_spine(skel, joint_map, skeleton.rest_joints("generic"))
  assert (auto["spine1"], auto["spine3"]) == ("Ab", "Chest3")
  assert auto["spine2"] in ("Chest", "Chest2")


def test_two_bone_ik_reaches_and_keeps_the_end_rotation():
  """The ankle lands on a reachable target, the foot keeps its world rotation, the hip stays."""
  rng = np.random.default_rng(0)
  rest = skeleton.rest_joints("generic")
  full = rng.normal(0, 0.3, (8, 24, 3))
  local = rotations_np.axis_angle_to_matrix(full)
  glob, joints = placement.forward(rest, local, np.zeros((8, 3)))
  # Reachable targets: pulled towards the hip, then jittered.
  target = joints[:, 1] + 0.9 * (joints[:, 7] - joints[:, 1]) + rng.normal(0, 0.03, (8, 3))
  new = placement.two_bone_ik(glob.copy(), joints, (1, 4, 7), target)
  _, moved = placement.forward(rest, placement.local_rotations(new), np.zeros((8, 3)))
  np.testing.assert_allclose(moved[:, 7], target, atol=1e-6)
  np.testing.assert_allclose(new[:, 7], glob[:, 7], atol=1e-9)
  np.testing.assert_allclose(moved[:, 1], joints[:, 1], atol=1e-9)  # the hip stays


def test_placement_without_mapped_feet_grounds_the_clip(clip, body):
  """A map without ankles or toes: no contacts to keep, the feet's lowest point over the clip
  goes on the floor, and the floor report says why it cannot measure contacts."""
  _, bvh = clip
  _, full = _retarget(bvh, placement="none")
  joint_map = {k: v for k, v in full.joint_map.items() if "ankle" not in k and "foot" not in k}
  motion, info = retargeting.retarget(bvh.skeleton, *bvh.local_transforms(), bvh.fps,
                                      joint_map, rest="default", scale=full.scale,
                                      source=bvh.path)
  assert not info.placement.contacts.any()
  glob, joints = placement.forward(body.rest, rotations_np.axis_angle_to_matrix(
      motion.full_pose), motion.transl)
  feet = placement.skin(body, glob, joints)[:, body.mask((7, 8, 10, 11)), 1]
  assert abs(feet.min()) < 1e-6
  with pytest.raises(ValueError, match="maps no ankle or toe"):
    quality.floor_report(motion, info, body)


def test_foot_anchors_agree_where_both_feet_are_planted():
  """A foot planted over the whole clip and one planted over its second half, the root
  drifting: the anchors and the root's shift put both feet on their anchors in every contact
  frame (one anchor per run, held still as the source's feet are), which one round of
  averaging does not."""
  t = np.arange(60)
  left = np.stack([0.004 * t, 0.0 * t, 0.001 * t], -1)  # the body drifts over the floor
  right = left + np.array([0.3, 0.0, 0.1])
  right[:30] += np.array([0.0, 0.2, 0.05])  # swinging before it lands
  feet = np.stack([left, right], 1)
  contacts = np.stack([np.ones(60, bool), t >= 30], 1)
  anchors, shift = placement.foot_anchors(feet, np.zeros_like(feet), contacts)
  residual = np.where(contacts[..., None], feet + shift[:, None] - anchors, 0.0)
  np.testing.assert_allclose(residual[..., [0, 2]], 0.0, atol=1e-4)
  for side in range(2):  # one still anchor per contact run
    assert np.ptp(anchors[contacts[:, side], side], axis=0).max() < 1e-12
  once, shift_once = placement.foot_anchors(feet, np.zeros_like(feet), contacts, max_rounds=1)
  residual = np.where(contacts[..., None], feet + shift_once[:, None] - once, 0.0)
  assert np.abs(residual[..., [0, 2]]).max() > 0.01


def test_root_search_turns_the_planted_legs_less(clip, body):
  """Moving the root where leg IK bends the planted legs least keeps the legs closer to the
  source's directions, with the soles still on the floor."""
  _, bvh = clip
  plain, info = _retarget(bvh, placement="none")
  legs = ("left_thigh", "right_thigh", "left_shin", "right_shin")
  error = {}
  for search in (False, True):
    placed, report = placement.place(plain, info, body, sole_tolerance=0.0, root_search=search)
    errors = retargeting.bone_direction_errors(placed, info)
    error[search] = np.mean([errors[b].mean() for b in legs])
    floor = quality.floor_report(placed, dataclasses.replace(info, placement=report), body)
    assert floor["sole_height"]["max"] < 2e-3
    assert floor["penetration"]["feet"]["max"] < 2e-3
  assert error[True] < 0.9 * error[False], error


def test_root_shift_lowers_the_root_onto_a_straight_leg():
  """A lunge: the left leg straight and swung back, its sole 14 cm above the floor, the right
  knee bent over a planted foot. A straight leg cannot reach further down, a bent one
  bends a little more at small cost: the search lowers the root until the straight leg's sole
  touches the floor."""
  rest = skeleton.rest_joints("generic")
  full = np.zeros((1, 24, 3))
  full[0, 1, 0] = 0.9  # left hip extended, knee straight
  full[0, 2, 0], full[0, 5, 0] = -1.0, 1.0  # right thigh forward, shin vertical
  _, joints = placement.forward(rest, rotations_np.axis_angle_to_matrix(full), np.zeros((1, 3)))
  soles = joints[:, [7, 8], 1] - 0.08  # sole points under the ankles
  joints = joints - np.array([0.0, soles[0, 1], 0.0])  # the right sole on the floor
  soles = soles - soles[0, 1]
  assert soles[0, 0] > 0.1
  best = placement.root_shift(joints, soles, joints[:, [7, 8]], np.ones((1, 2), bool), (7, 8),
                              0.0, np.linspace(-0.2, 0.05, 101), axis=1)
  assert abs(best[0] + soles[0, 0]) < 0.005, (best, soles)


def test_axes_come_from_the_motion_when_the_rest_pose_does_not_stand(tmp_path):
  """Some exporters write a rest skeleton whose bones all lie along their joint's x axis (the
  trunk and the legs both along +x), the motion's rotations making it stand. The same motion
  written that way retargets as the standing file does: its axes come from the posed frames."""
  joints, rot, root = _clip("cmu")
  parent = {name: p for name, p, _ in joints}
  trunk = ("Hips", "LowerBack", "Spine", "Spine1", "Neck")
  legs = ("LeftUpLeg", "LeftLeg", "RightUpLeg", "RightLeg")
  turn = {name: rotations_np.axis_angle_to_matrix(np.array(
      [0.0, 0.0, np.pi / 2 if name in trunk else -np.pi / 2 if name in legs else 0.0]))
          for name, _, _ in joints}  # per-joint rest change Q: x -> up (trunk), x -> down (legs)
  moved_joints, moved_rot = [], rot.copy()
  for j, (name, p, off) in enumerate(joints):
    q_parent = turn[p] if p is not None else np.eye(3)
    moved_joints.append((name, p, q_parent.T @ np.asarray(off, float)))
    moved_rot[:, j] = q_parent.T @ rot[:, j] @ turn[name]  # world rotations G_j Q_j: same joints
  standing, lying = tmp_path / "standing.bvh", tmp_path / "lying.bvh"
  _write_bvh(standing, joints, rot, root)
  _write_bvh(lying, moved_joints, moved_rot, root)
  results = []
  for path in (standing, lying):
    bvh = hm.read_bvh(str(path))
    results.append(_retarget(bvh, placement="none"))
  rest = hm.read_bvh(str(lying)).skeleton.rest_positions()
  index = results[1][1].index
  assert not np.allclose(retargeting.axes_from_rest(rest, index), np.eye(3))  # the old reading
  np.testing.assert_array_equal(results[1][1].axes, np.eye(3))
  pos = [skeleton.forward_joints(info.rest, motion.full_pose, motion.transl)
         for motion, info in results]
  np.testing.assert_allclose(pos[1][:, :3], pos[0][:, :3], atol=1e-6)  # pelvis and hips
  # Elsewhere within millimetres: a trunk segment's rest correction is the smallest rotation
  # onto the source's rest bone, whose twist depends a little on where that bone points.
  np.testing.assert_allclose(pos[1], pos[0], atol=5e-3)
  errors = retargeting.bone_direction_errors(*results[1])
  assert max(errors[b].max() for b in retargeting.LIMB_BONES) < 1e-3


def test_reach_drop_is_what_a_straight_leg_lacks():
  """A straight left leg whose planted sole is 3 cm above the floor: the root goes down until
  the hip is exactly the leg's length from the foot's target on the floor; a bent right leg
  in the same place needs nothing."""
  rest = skeleton.rest_joints("generic")
  full = np.zeros((1, 24, 3))
  full[0, 2, 0], full[0, 5, 0] = -0.5, 1.0  # right hip flexed, knee bent
  _, joints = placement.forward(rest, rotations_np.axis_angle_to_matrix(full), np.zeros((1, 3)))
  soles = np.array([[0.03, 0.03]])  # both soles 3 cm above the floor
  anchors = joints[:, [7, 8]]
  need = placement.reach_drop(joints, soles, anchors, np.array([[True, False]]), (7, 8), 0.0)
  hip, knee, ankle = joints[0, 1], joints[0, 4], joints[0, 7]
  length = np.linalg.norm(knee - hip) + np.linalg.norm(ankle - knee)
  target = ankle - np.array([0.0, 0.03, 0.0])
  assert 0.02 < need[0] <= 0.03
  np.testing.assert_allclose(np.linalg.norm(target - (hip - [0.0, need[0], 0.0])), length,
                             atol=1e-6)
  need = placement.reach_drop(joints, soles, anchors, np.array([[False, True]]), (7, 8), 0.0)
  np.testing.assert_array_equal(need, [0.0])


def test_lowest_heights_in_chunks_equal_the_whole_clip_skinned(body):
  rng = np.random.default_rng(1)
  local = rotations_np.axis_angle_to_matrix(rng.normal(0, 0.4, (20, 24, 3)))
  glob, joints = placement.forward(body.rest, local, rng.normal(0, 0.1, (20, 3)))
  masks = [body.mask(placement.LEFT_FOOT_PARTS), body.part == 15, slice(None)]
  whole = placement.skin(body, glob, joints)[..., 1]
  expected = np.stack([whole[:, m].min(1) for m in masks], 1)
  np.testing.assert_array_equal(placement.lowest_heights(body, glob, joints, masks, chunk=7),
                                expected)
