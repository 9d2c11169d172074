"""Tests of hsjax.rotations against scipy's Rotation and smplx's Rodrigues, and by gradients."""

import jax
import jax.numpy as jnp
from jax import test_util as jtu
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hsjax import rotations as rot

TOL = 1e-12  # float64 agreement with scipy


def _rotvecs(seed: int, n: int = 64) -> np.ndarray:
  """Random axis-angle vectors with angles spread over [0, π), plus the edge cases."""
  rng = np.random.default_rng(seed)
  axes = rng.normal(size=(n, 3))
  axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
  angles = rng.uniform(0.0, np.pi - 1e-3, size=(n, 1))
  special = np.array([[0.0, 0.0, 0.0], [1e-9, 0.0, 0.0], [0.0, 3e-5, -2e-5], [1e-4, 0.0, 0.0],
                      [0.0, 0.0, np.pi - 1e-6], [0.3, -0.2, 0.1]])
  return np.concatenate([axes * angles, special])


def test_axis_angle_to_matrix_matches_scipy(x64):  # pylint: disable=unused-argument
  r = _rotvecs(0)
  np.testing.assert_allclose(rot.axis_angle_to_matrix(jnp.asarray(r)),
                             Rotation.from_rotvec(r).as_matrix(), atol=TOL)


def test_axis_angle_to_matrix_matches_smplx_rodrigues():
  """smplx's batch_rodrigues (torch float64) agrees away from zero; hsjax omits its 1e-8."""
  torch = pytest.importorskip("torch")
  lbs = pytest.importorskip("smplx.lbs")
  r = _rotvecs(1)[:64]
  ref = lbs.batch_rodrigues(torch.from_numpy(r)).numpy()
  np.testing.assert_allclose(rot.axis_angle_to_matrix(jnp.asarray(r, jnp.float32)), ref,
                             atol=1e-6)


def test_quaternions_match_scipy(x64):  # pylint: disable=unused-argument
  r = _rotvecs(2)
  sc = Rotation.from_rotvec(r)
  q_ref = sc.as_quat()[:, [3, 0, 1, 2]]  # scipy is (x, y, z, w)
  q_ref *= np.where(q_ref[:, :1] < 0, -1.0, 1.0)
  np.testing.assert_allclose(rot.axis_angle_to_quat(jnp.asarray(r)), q_ref, atol=TOL)
  np.testing.assert_allclose(rot.matrix_to_quat(jnp.asarray(sc.as_matrix())), q_ref, atol=1e-9)
  np.testing.assert_allclose(rot.quat_to_matrix(jnp.asarray(q_ref)), sc.as_matrix(), atol=TOL)
  # Hamilton product = composition of the rotations.
  q1, q2 = q_ref[:32], q_ref[32:64]
  np.testing.assert_allclose(
      rot.quat_to_matrix(rot.quat_multiply(jnp.asarray(q1), jnp.asarray(q2))),
      sc[:32].as_matrix() @ sc[32:64].as_matrix(), atol=1e-9)


def test_round_trips(x64):  # pylint: disable=unused-argument
  r = jnp.asarray(_rotvecs(3))
  m = rot.axis_angle_to_matrix(r)
  np.testing.assert_allclose(rot.matrix_to_axis_angle(m), r, atol=1e-8)
  np.testing.assert_allclose(rot.quat_to_axis_angle(rot.axis_angle_to_quat(r)), r, atol=1e-9)
  np.testing.assert_allclose(rot.rot6d_to_matrix(rot.matrix_to_rot6d(m)), m, atol=1e-12)
  np.testing.assert_allclose(rot.rot6d_to_axis_angle(rot.axis_angle_to_rot6d(r)), r, atol=1e-8)
  # A quaternion and its negation are the same rotation; any norm is accepted.
  q = rot.axis_angle_to_quat(r)
  np.testing.assert_allclose(rot.quat_to_matrix(-2.5 * q), m, atol=1e-12)


def test_matrix_to_quat_handles_180_degrees(x64):  # pylint: disable=unused-argument
  """Shepperd's branch choice: exact half turns about each axis and a diagonal axis."""
  axes = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, -1.0]])
  r = np.pi * axes / np.linalg.norm(axes, axis=-1, keepdims=True)
  m = Rotation.from_rotvec(r).as_matrix()
  back = rot.quat_to_matrix(rot.matrix_to_quat(jnp.asarray(m)))
  np.testing.assert_allclose(back, m, atol=1e-12)
  angle = np.linalg.norm(rot.matrix_to_axis_angle(jnp.asarray(m)), axis=-1)
  np.testing.assert_allclose(angle, np.pi, atol=1e-9)


def test_rot6d_gram_schmidt_projects_onto_so3(x64):  # pylint: disable=unused-argument
  x = jax.random.normal(jax.random.key(0), (16, 6), jnp.float64)
  m = rot.rot6d_to_matrix(x)
  np.testing.assert_allclose(jnp.swapaxes(m, -1, -2) @ m, np.broadcast_to(np.eye(3), m.shape),
                             atol=1e-12)
  np.testing.assert_allclose(jnp.linalg.det(m), 1.0, atol=1e-12)


@pytest.mark.parametrize("point", ["zero", "small", "generic", "near_pi"])
def test_axis_angle_gradients_match_finite_differences(x64, point):  # pylint: disable=W0613
  r = {"zero": [0.0, 0.0, 0.0], "small": [2e-5, -1e-5, 3e-5], "generic": [0.4, -1.1, 0.7],
       "near_pi": [0.0, np.pi - 1e-2, 0.0]}[point]
  r = jnp.asarray(r, jnp.float64)
  jtu.check_grads(jax.jit(rot.axis_angle_to_matrix), (r,), order=1, modes=("fwd", "rev"),
                  atol=1e-6, rtol=1e-6)
  jtu.check_grads(jax.jit(rot.axis_angle_to_quat), (r,), order=1, modes=("fwd", "rev"),
                  atol=1e-6, rtol=1e-6)
  m = rot.axis_angle_to_matrix(r)
  jtu.check_grads(jax.jit(rot.matrix_to_axis_angle), (m,), order=1, modes=("rev",), atol=1e-5,
                  rtol=1e-5)
  jtu.check_grads(jax.jit(rot.rot6d_to_matrix), (rot.matrix_to_rot6d(m),), order=1,
                  modes=("rev",), atol=1e-6, rtol=1e-6)


def test_jacobian_at_zero_is_the_skew_basis(x64):  # pylint: disable=unused-argument
  """dR/dr at r = 0 is exactly skew(e_k): the Taylor branch has the right derivative."""
  jac = jax.jacfwd(rot.axis_angle_to_matrix)(jnp.zeros(3, jnp.float64))  # [3, 3, 3]
  for k in range(3):
    np.testing.assert_allclose(jac[..., k], rot.skew(jnp.eye(3, dtype=jnp.float64)[k]),
                               atol=1e-15)


@pytest.mark.parametrize("angle", [0.0, 1e-7, np.pi - 1e-3])
def test_gradients_finite_float32(angle):
  """Default float32: every conversion has finite gradients at 0 and near π."""
  r = jnp.asarray([angle, 0.0, 0.0], jnp.float32)
  fns = {
      "axis_angle_to_matrix": rot.axis_angle_to_matrix,
      "axis_angle_to_quat": rot.axis_angle_to_quat,
      "aa->matrix->aa": lambda v: rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(v)),
      "aa->quat->aa": lambda v: rot.quat_to_axis_angle(rot.axis_angle_to_quat(v)),
      "aa->6d->aa": lambda v: rot.rot6d_to_axis_angle(rot.axis_angle_to_rot6d(v)),
      "geodesic": lambda v: rot.geodesic_angle(jnp.eye(3), rot.axis_angle_to_matrix(v)),
  }

  @jax.jit
  def grads(v):
    return {name: jax.grad(lambda x, fn=fn: jnp.sum(jnp.sin(fn(x))))(v)
            for name, fn in fns.items()}

  for name, g in grads(r).items():
    assert bool(jnp.all(jnp.isfinite(g))), (name, g)


def test_geodesic_angle(x64):  # pylint: disable=unused-argument
  a = Rotation.from_rotvec(_rotvecs(4)[:32])
  b = Rotation.from_rotvec(_rotvecs(5)[:32])
  ref = (a.inv() * b).magnitude()
  np.testing.assert_allclose(rot.geodesic_angle(jnp.asarray(a.as_matrix()),
                                                jnp.asarray(b.as_matrix())), ref, atol=1e-8)


def test_quat_to_matrix_zero_quaternion_is_identity_with_finite_gradient():
  """A learned quaternion can reach zero: the rotation is then the identity, not NaN."""
  np.testing.assert_allclose(rot.quat_to_matrix(jnp.zeros(4)), np.eye(3))
  grad = jax.grad(lambda q: jnp.sum(rot.quat_to_matrix(q)))(jnp.zeros(4))
  assert np.all(np.isfinite(np.asarray(grad)))
  q = jnp.asarray([0.3, -0.2, 0.5, 0.1])  # any other norm: the normalised rotation
  np.testing.assert_allclose(rot.quat_to_matrix(q),
                             rot.quat_to_matrix(q / jnp.linalg.norm(q)), atol=1e-6)
