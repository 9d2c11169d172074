"""Tests of the SMPL body model (hsjax.body) against the ``smplx`` package and by properties.

Peer oracle: ``smplx.SMPL`` (PyTorch, CPU, float64). smplx reads only plain pickles
(``pickle.load`` of a dict of numpy arrays / scipy sparse matrices; chumpy objects would need
chumpy installed, which is not possible on current numpy). So for each model the test writes:

* a plain-numpy ``.pkl`` (with a real ``scipy.sparse.csc_matrix`` J_regressor) that smplx loads;
* for the random model, also a chumpy-style ``.pkl`` (fake ``chumpy.ch.Ch`` and
  ``scipy.sparse.csc.csc_matrix`` classes, protocol 2, as in the official files) and a
  ``.npz`` with the sparse J_regressor pickled inside, which hsjax loads.

hsjax's output from each of its files is then compared with smplx's output from the plain one.
"""

import functools
import os
import pickle

import jax
import jax.numpy as jnp
from jax import test_util as jtu
import numpy as np
import pytest
import scipy.sparse

from hsjax import body
from fake_pickles import fake_pickled_class

smplx = pytest.importorskip("smplx")
torch = pytest.importorskip("torch")

TOL_M = 1e-5  # metres: acceptance tolerance of FK against smplx.

# Eager dispatch of the unrolled 24-joint chain costs seconds; every test goes through jit.
forward = jax.jit(body.body_forward)

# Rough SMPL-like T-pose joint locations (metres; y up, facing +z, the subject's left at +x),
# so that the random model articulates like a person and pose directions can be compared.
_REST_JOINTS = np.array([
    [0.0, 0.0, 0.0], [0.06, -0.09, 0.0], [-0.06, -0.09, 0.0], [0.0, 0.11, 0.0],
    [0.10, -0.47, 0.0], [-0.10, -0.47, 0.0], [0.0, 0.24, 0.0], [0.09, -0.87, -0.04],
    [-0.09, -0.87, -0.04], [0.0, 0.29, 0.02], [0.11, -0.92, 0.10], [-0.11, -0.92, 0.10],
    [0.0, 0.50, 0.0], [0.08, 0.41, 0.0], [-0.08, 0.41, 0.0], [0.0, 0.57, 0.05],
    [0.17, 0.44, 0.0], [-0.17, 0.44, 0.0], [0.43, 0.43, 0.0], [-0.43, 0.43, 0.0],
    [0.68, 0.43, 0.0], [-0.68, 0.43, 0.0], [0.76, 0.43, 0.0], [-0.76, 0.43, 0.0]])

# smplx appends 21 vertex landmarks to the 24 joints; on the tiny random model any valid
# vertex ids do (only the first 24 joints are compared).
_SMPLX_LANDMARKS = ("nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel",
                    "RBigToe", "RSmallToe", "RHeel", "lthumb", "lindex", "lmiddle", "lring",
                    "lpinky", "rthumb", "rindex", "rmiddle", "rring", "rpinky")


def random_smpl_arrays(seed: int = 0, verts_per_joint: int = 12, num_betas: int = 10) -> dict:
  """A random SMPL-format model (the keys of an SMPL ``.pkl``) with non-zero posedirs.

  Vertices are clouds around SMPL-like joints; J_regressor is sparse (a few vertices per
  joint), weights favour each vertex's own joint and its parent.
  """
  rng = np.random.default_rng(seed)
  num_joints = 24
  num_verts = num_joints * verts_per_joint
  owner = np.repeat(np.arange(num_joints), verts_per_joint)
  v_template = _REST_JOINTS[owner] + rng.normal(scale=0.03, size=(num_verts, 3))
  j_regressor = np.zeros((num_joints, num_verts))
  for j in range(num_joints):
    size = min(4, verts_per_joint)
    idx = rng.choice(np.flatnonzero(owner == j), size=size, replace=False)
    j_regressor[j, idx] = rng.dirichlet(np.ones(size))
  # Sparse like SMPL's: each vertex's own joint, its parent and two random joints.
  weights = np.zeros((num_verts, num_joints))
  for _ in range(2):
    weights[np.arange(num_verts), rng.integers(0, num_joints, num_verts)] = 0.05 * rng.random(
        num_verts)
  weights[np.arange(num_verts), owner] += 1.0
  parents = np.array(body.SMPL_PARENTS)
  weights[np.arange(num_verts), np.maximum(parents[owner], 0)] += 0.3
  weights /= weights.sum(1, keepdims=True)
  kintree = np.stack([parents, np.arange(num_joints)]).astype(np.int64)
  kintree[0, 0] = 4294967295  # as stored in the SMPL files
  return {
      "v_template": v_template,
      "shapedirs": rng.normal(scale=0.02, size=(num_verts, 3, num_betas)),
      "posedirs": rng.normal(scale=0.02, size=(num_verts, 3, body.NUM_POSE_FEATURES)),
      "J_regressor": j_regressor,
      "weights": weights,
      "kintree_table": kintree,
      "f": rng.integers(0, num_verts, size=(2 * num_verts, 3)).astype(np.uint32),
  }


def write_plain_pkl(path, arrays: dict) -> None:
  """The format smplx reads: numpy arrays and a scipy CSC J_regressor."""
  data = dict(arrays)
  data["J_regressor"] = scipy.sparse.csc_matrix(np.asarray(arrays["J_regressor"]))
  with open(path, "wb") as f:
    pickle.dump(data, f, protocol=2)


def write_chumpy_pkl(path, arrays: dict, monkeypatch) -> None:
  """An official-style SMPL pickle: chumpy ``Ch`` objects and a ``csc_matrix``, protocol 2."""
  ch_cls = fake_pickled_class(monkeypatch, "chumpy.ch", "Ch")
  csc_cls = fake_pickled_class(monkeypatch, "scipy.sparse.csc", "csc_matrix")

  def ch(x):
    obj = ch_cls.__new__(ch_cls)
    obj.__dict__.update(x=np.asarray(x), _dirty_vars=set())
    return obj

  sp = scipy.sparse.csc_matrix(np.asarray(arrays["J_regressor"]))
  csc = csc_cls.__new__(csc_cls)
  csc.__dict__.update(data=sp.data, indices=sp.indices, indptr=sp.indptr, _shape=sp.shape,
                      maxprint=50)
  data = dict(arrays, v_template=ch(arrays["v_template"]), shapedirs=ch(arrays["shapedirs"]),
              weights=ch(arrays["weights"]), J_regressor=csc, bs_style="lbs", bs_type="lrotmin")
  with open(path, "wb") as f:
    pickle.dump(data, f, protocol=2)


def write_npz(path, arrays: dict) -> None:
  """smplx-style npz: the sparse J_regressor pickled as a 0-d object member."""
  data = dict(arrays)
  data["J_regressor"] = np.array(scipy.sparse.csc_matrix(arrays["J_regressor"]), dtype=object)
  np.savez(path, **data)


def random_params(seed: int, batch: int, num_betas: int = 10, scale: float = 0.6):
  rng = np.random.default_rng(seed)
  return {
      "betas": rng.normal(size=(batch, num_betas)),
      "body_pose": rng.normal(scale=scale, size=(batch, 23, 3)),
      "global_orient": rng.normal(scale=1.0, size=(batch, 3)),
      "transl": rng.normal(scale=0.5, size=(batch, 3)),
  }


def smplx_forward(pkl_path, params: dict, vertex_ids=None):
  model = smplx.SMPL(model_path=str(pkl_path), num_betas=params["betas"].shape[-1],
                     vertex_ids=vertex_ids, dtype=torch.float64)
  t = {k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in params.items()}
  batch = t["betas"].shape[0]
  with torch.no_grad():
    out = model(betas=t["betas"], body_pose=t["body_pose"].reshape(batch, 69),
                global_orient=t["global_orient"], transl=t["transl"])
  return out.vertices.numpy(), out.joints.numpy()[:, :24]


def hsjax_forward(model, params: dict):
  p = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
  out = forward(model, p["betas"], p["body_pose"], p["global_orient"],
                                   p["transl"])
  return np.asarray(out.vertices), np.asarray(out.joints)


@pytest.fixture(scope="module")
def random_arrays():
  return random_smpl_arrays(seed=0)


def test_random_model_matches_smplx(tmp_path, monkeypatch, random_arrays):
  """FK matches smplx ≤ 1e-5 m (vertices, 24 joints) with non-zero posedirs and a sparse
  J_regressor, from the chumpy-style .pkl and from the .npz (smplx reads the plain .pkl)."""
  plain = tmp_path / "SMPL_NEUTRAL.pkl"
  write_plain_pkl(plain, random_arrays)
  chumpy_pkl = tmp_path / "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl"
  write_chumpy_pkl(chumpy_pkl, random_arrays, monkeypatch)
  npz = tmp_path / "model.npz"
  write_npz(npz, random_arrays)
  monkeypatch.undo()  # the fake chumpy / scipy modules must not outlive writing the file

  params = random_params(1, batch=5)
  params["body_pose"][0] = 0.0  # the rest pose and a zero global rotation
  params["global_orient"][0] = 0.0
  ids = {name: i for i, name in enumerate(_SMPLX_LANDMARKS)}
  ref_v, ref_j = smplx_forward(plain, params, vertex_ids=ids)
  for path in (chumpy_pkl, npz):
    model = body.load_body_model(str(path))
    assert model.has_posedirs and model.num_vertices == 24 * 12
    verts, joints = hsjax_forward(model, params)
    np.testing.assert_allclose(verts, ref_v, atol=TOL_M, rtol=0, err_msg=str(path))
    np.testing.assert_allclose(joints, ref_j, atol=TOL_M, rtol=0, err_msg=str(path))


def test_posedirs_change_the_output(random_arrays):
  """Guards the smplx comparison: with these posedirs the pose correctives are large."""
  params = random_params(2, batch=2)
  with_pd = body.body_model_from_arrays(random_arrays)
  without = body.body_model_from_arrays(dict(random_arrays, posedirs=None))
  assert not without.has_posedirs
  diff = hsjax_forward(with_pd, params)[0] - hsjax_forward(without, params)[0]
  assert np.abs(diff).max() > 100 * TOL_M


def test_loaded_fields_match_source(tmp_path, monkeypatch, random_arrays):
  """Every loader yields the same model; parents are fixed up from 4294967295."""
  chumpy_pkl = tmp_path / "m.pkl"
  write_chumpy_pkl(chumpy_pkl, random_arrays, monkeypatch)
  npz = tmp_path / "m.npz"
  write_npz(npz, random_arrays)
  monkeypatch.undo()
  ref = body.body_model_from_arrays(random_arrays)
  assert ref.parents == body.SMPL_PARENTS
  for path in (chumpy_pkl, npz):
    model = body.load_body_model(str(path))
    for field in ("v_template", "shapedirs", "posedirs", "J_regressor", "lbs_weights", "faces"):
      np.testing.assert_array_equal(getattr(model, field), getattr(ref, field), err_msg=field)
    assert model.parents == ref.parents
  # Directory form, as smplx's model folders: SMPL_NEUTRAL.pkl is picked.
  os.rename(chumpy_pkl, tmp_path / "SMPL_NEUTRAL.pkl")
  model = body.load_body_model(str(tmp_path))
  np.testing.assert_array_equal(model.posedirs, ref.posedirs)


def _default_body_or_skip():
  if not os.path.exists(body.default_body_path()):
    pytest.skip(f"embedded default body not built yet: {body.default_body_path()}")
  return body.load_body_model("default")


def test_default_model_matches_smplx(tmp_path):
  """The embedded default body, written as a plain .pkl for smplx, matches ≤ 1e-5 m."""
  model = _default_body_or_skip()
  arrays = body.read_body_file(body.default_body_path())
  plain = tmp_path / "default.pkl"
  keys = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
  write_plain_pkl(plain, {k: arrays[k] for k in keys if k in arrays})
  params = random_params(3, batch=3, num_betas=model.num_betas)
  ref_v, ref_j = smplx_forward(plain, params)
  verts, joints = hsjax_forward(model, params)
  np.testing.assert_allclose(verts, ref_v, atol=TOL_M, rtol=0)
  np.testing.assert_allclose(joints, ref_j, atol=TOL_M, rtol=0)


# Joint, axis-angle, observed joint, coordinate, sign of the expected displacement.
_POSE_DIRECTIONS = [
    ("left_shoulder", (0.0, 0.0, 1.0), "left_hand", 1, +1),  # abduction raises the hand
    ("right_shoulder", (0.0, 0.0, -1.0), "right_hand", 1, +1),
    ("left_elbow", (0.0, -1.2, 0.0), "left_hand", 2, +1),  # flexion brings the hand forward
    ("left_knee", (1.2, 0.0, 0.0), "left_ankle", 2, -1),  # flexion moves the shin back
    ("left_hip", (-1.2, 0.0, 0.0), "left_ankle", 2, +1),  # hip flexion lifts the leg forward
    ("spine1", (0.8, 0.0, 0.0), "head", 2, +1),  # bending forward
]


@pytest.mark.parametrize("joint,rotvec,observed,axis,sign", _POSE_DIRECTIONS)
def test_default_model_articulates_like_smpl_format_model(random_arrays, joint, rotvec,
                                                          observed, axis, sign):
  """The same SMPL pose moves the same limb the same way on both models."""
  default = _default_body_or_skip()
  for model in (default, body.body_model_from_arrays(random_arrays)):
    pose = np.zeros((23, 3), np.float32)
    pose[body.SMPL_JOINT_NAMES.index(joint) - 1] = rotvec
    rest = forward(model, jnp.zeros(model.num_betas), jnp.zeros((23, 3)),
                             jnp.zeros(3))
    posed = forward(model, jnp.zeros(model.num_betas), jnp.asarray(pose),
                              jnp.zeros(3))
    j = body.SMPL_JOINT_NAMES.index(observed)
    move = float(posed.joints[j, axis] - rest.joints[j, axis])
    assert np.sign(move) == sign and abs(move) > 0.02, (model.name, move)


# ------------------------------------------------------------------------------------------
# Gradients, vmap, jit


@jax.jit
def _probe_loss(model, probe, betas, body_pose, global_orient, transl):
  """A scalar that depends on every output vertex and joint."""
  out = body.body_forward(model, betas, body_pose, global_orient, transl)
  return jnp.sum(jnp.concatenate([out.vertices, out.joints]) * probe)


def test_gradients_match_finite_differences(x64):  # pylint: disable=unused-argument
  """d(vertices, joints)/d(betas, body_pose, global_orient, transl) match central finite
  differences in float64 (``check_grads``, reverse mode as the fitting uses it), at a generic
  pose and at exactly zero rotation (the Rodrigues singularity)."""
  model = body.body_model_from_arrays(random_smpl_arrays(seed=4, verts_per_joint=2),
                                      dtype=np.float64)
  assert model.v_template.dtype == jnp.float64
  probe = jax.random.normal(jax.random.key(0), (model.num_vertices + 24, 3), jnp.float64)
  loss = functools.partial(_probe_loss, model, probe)  # one compilation for both points
  for zero_pose in (False, True):
    params = random_params(5, batch=1, scale=0.0 if zero_pose else 0.7)
    if zero_pose:
      params["global_orient"][:] = 0.0
    args = tuple(jnp.asarray(params[k][0], jnp.float64)
                 for k in ("betas", "body_pose", "global_orient", "transl"))
    jtu.check_grads(loss, args, order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
    _, vjp = jax.vjp(loss, *args)  # reuses check_grads' compilations
    grads = vjp(jnp.ones((), jnp.float64))
    for name, g in zip(("betas", "body_pose", "global_orient", "transl"), grads):
      assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0, (name, zero_pose)


def test_vmap_equals_loop_and_jit(random_arrays):
  model = body.body_model_from_arrays(random_arrays)
  p = {k: jnp.asarray(v, jnp.float32) for k, v in random_params(6, batch=4).items()}
  in_axes = (None, 0, 0, 0, 0)
  batched = jax.jit(jax.vmap(body.body_forward, in_axes=in_axes))(
      model, p["betas"], p["body_pose"], p["global_orient"], p["transl"])
  leading = forward(model, p["betas"], p["body_pose"], p["global_orient"], p["transl"])
  for i in range(4):
    single = forward(model, p["betas"][i], p["body_pose"][i], p["global_orient"][i],
                               p["transl"][i])
    for field in ("vertices", "joints", "transforms", "rotmats"):
      ref = np.asarray(getattr(single, field))
      np.testing.assert_allclose(np.asarray(getattr(batched, field))[i], ref, atol=2e-6,
                                 err_msg=field)
      np.testing.assert_allclose(np.asarray(getattr(leading, field))[i], ref, atol=2e-6,
                                 err_msg=field)


def test_shared_betas_broadcast(random_arrays):
  """Shared shape [B] with per-frame poses [T, 23, 3] (the fitting's layout)."""
  model = body.body_model_from_arrays(random_arrays)
  p = {k: jnp.asarray(v, jnp.float32) for k, v in random_params(7, batch=3).items()}
  out = forward(model, p["betas"][0], p["body_pose"], p["global_orient"], p["transl"])
  assert out.vertices.shape == (3, model.num_vertices, 3)
  one = forward(model, p["betas"][0], p["body_pose"][2], p["global_orient"][2],
                          p["transl"][2])
  np.testing.assert_allclose(out.vertices[2], one.vertices, atol=2e-6)


def test_transforms_skin_joints_and_vertices(random_arrays):
  """``transforms`` are what LBS applies: a vertex skinned with weights w is
  Σ w_j T_j v_posed, and rest joints map onto posed joints."""
  model = body.body_model_from_arrays(dict(random_arrays, posedirs=None))
  p = {k: jnp.asarray(v[0], jnp.float32) for k, v in random_params(8, batch=1).items()}
  out = forward(model, p["betas"], p["body_pose"], p["global_orient"], p["transl"])
  v_shaped = body.shape_blend(model, p["betas"])
  rest_joints = body.regress_joints(model, v_shaped)
  t = np.asarray(out.transforms)
  np.testing.assert_allclose(np.einsum("jab,jb->ja", t[:, :3, :3], rest_joints) + t[:, :3, 3],
                             out.joints, atol=1e-5)
  manual = np.einsum("vj,jab,vb->va", np.asarray(model.lbs_weights), t[:, :3, :3],
                     np.asarray(v_shaped)) + np.asarray(model.lbs_weights) @ t[:, :3, 3]
  np.testing.assert_allclose(out.vertices, manual, atol=1e-5)


def test_sparse_and_dense_skinning_agree(random_arrays):
  """The gathered-support LBS equals dense blending, batched or not, and gradients w.r.t.
  the weights agree on their support."""
  model = body.body_model_from_arrays(random_arrays)
  assert model.lbs_indices is not None and model.lbs_indices.shape[1] <= 4
  support = np.zeros(model.lbs_weights.shape, bool)
  np.put_along_axis(support, np.asarray(model.lbs_indices), True, axis=1)
  assert np.all(support | (np.asarray(model.lbs_weights) == 0))
  p = {k: jnp.asarray(v, jnp.float32) for k, v in random_params(10, batch=3).items()}
  transforms = forward(model, p["betas"], p["body_pose"], p["global_orient"], p["transl"]
                       ).transforms
  points = model.v_template + 0.01
  reference = body.apply_transforms(body.skinning_transforms(model.lbs_weights, transforms),
                                    points)
  lbs = jax.jit(body.linear_blend_skinning)
  np.testing.assert_allclose(lbs(model.lbs_weights, transforms, points), reference, atol=2e-6)
  np.testing.assert_allclose(lbs(model.lbs_weights, transforms, points, model.lbs_indices),
                             reference, atol=2e-6)
  batched_w = jnp.broadcast_to(model.lbs_weights, (3, *model.lbs_weights.shape))
  np.testing.assert_allclose(lbs(batched_w, transforms, points, model.lbs_indices), reference,
                             atol=2e-6)
  grad = jax.jit(jax.grad(lambda w, idx: jnp.sum(jnp.sin(lbs(w, transforms, points, idx)))))
  g_dense, g_sparse = grad(model.lbs_weights, None), grad(model.lbs_weights, model.lbs_indices)
  np.testing.assert_allclose(np.where(support, g_sparse, 0.0), np.where(support, g_dense, 0.0),
                             atol=1e-4)


def test_joint_transforms_agree_with_body_forward(random_arrays):
  model = body.body_model_from_arrays(random_arrays)
  p = {k: jnp.asarray(v, jnp.float32) for k, v in random_params(9, batch=2).items()}
  out = forward(model, p["betas"], p["body_pose"], p["global_orient"], p["transl"])
  rot = body.full_pose_rotmats(p["body_pose"], p["global_orient"])
  joints, transforms = jax.jit(body.joint_transforms)(model, p["betas"], rot, p["transl"])
  np.testing.assert_allclose(joints, out.joints, atol=1e-6)
  np.testing.assert_allclose(transforms, out.transforms, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Bad input


def test_missing_and_unknown_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.pkl"):
    body.load_body_model(str(tmp_path / "nope.pkl"))
  with pytest.raises(FileNotFoundError, match="SMPL_NEUTRAL"):
    body.load_body_model(str(tmp_path))
  other = tmp_path / "model.obj"
  other.write_text("v 0 0 0\n")
  with pytest.raises(ValueError, match=r"model\.obj.*\.pkl or \.npz"):
    body.load_body_model(str(other))


@pytest.mark.parametrize("field,value,message", [
    ("shapedirs", np.zeros((5, 3, 10)), r"shapedirs must be \[288, 3, B\], found \(5, 3, 10\)"),
    ("posedirs", np.zeros((288, 3, 200)), r"posedirs must be \[288, 3, 207\]"),
    ("J_regressor", np.zeros((23, 288)), r"J_regressor must be \[24, 288\], found \(23, 288\)"),
    ("weights", np.zeros((288, 23)), r"weights must be \[288, 24\]"),
    ("kintree_table", np.zeros((2, 23), np.int64), r"kintree_table must be \[2, 24\]"),
    ("f", np.zeros((4, 4), np.int32), r"f \(faces\) must be \[F, 3\]"),
    ("f", np.full((4, 3), 288), r"f \(faces\) indices must lie in \[0, 288\)"),
    ("v_template", "nan", r"field 'v_template' contains 1 NaN"),
    ("v_template", None, r"missing SMPL field\(s\) \['v_template'\]"),
])
def test_bad_fields_are_named(tmp_path, random_arrays, field, value, message):
  arrays = dict(random_arrays)
  if value is None:
    del arrays[field]
  elif isinstance(value, str):
    arrays[field] = arrays[field].copy()
    arrays[field][3, 1] = np.nan
  else:
    arrays[field] = value
  path = tmp_path / "broken.npz"
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=message) as info:
    body.load_body_model(str(path))
  assert "broken.npz" in str(info.value)


def test_too_many_betas_requested(tmp_path, random_arrays):
  path = tmp_path / "m.npz"
  np.savez(path, **random_arrays)
  with pytest.raises(ValueError, match="num_betas=16 requested but shapedirs has only 10"):
    body.load_body_model(str(path), num_betas=16)
  assert body.load_body_model(str(path), num_betas=4).num_betas == 4


def test_bad_parameter_shapes(random_arrays):
  model = body.body_model_from_arrays(random_arrays)
  with pytest.raises(ValueError, match="betas has 8 components; the model has 10"):
    body.body_forward(model, jnp.zeros(8), jnp.zeros((23, 3)), jnp.zeros(3))
  with pytest.raises(ValueError, match=r"body_pose must be \[..., 23, 3\]"):
    body.body_forward(model, jnp.zeros(10), jnp.zeros((69,)), jnp.zeros(3))
  with pytest.raises(ValueError, match=r"global_orient must be \[..., 3\]"):
    body.body_forward(model, jnp.zeros(10), jnp.zeros((23, 3)), jnp.zeros(4))
  with pytest.raises(ValueError, match=r"transl must be \[..., 3\]"):
    body.body_forward(model, jnp.zeros(10), jnp.zeros((23, 3)), jnp.zeros(3), jnp.zeros(2))
