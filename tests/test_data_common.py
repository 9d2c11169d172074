"""Shared helpers for the ``hsjax.data`` tests: a small procedural SMPL-format body.

The body is a set of closed ellipsoids, one per bone, rigidly skinned to the bone's joint,
placed on SMPL's neutral rest skeleton (approximate joint positions, metres). It has ~5k
triangles, so renders and forward passes in the tests stay fast, and it does not depend on
the embedded default body.
"""

import numpy as np
import pytest

from hsjax import body as body_lib

# Approximate SMPL neutral rest joints (T-pose, y up, facing +z, the subject's left at +x).
REST_JOINTS = np.array([
    [0.000, -0.223, 0.028], [0.058, -0.318, 0.010], [-0.060, -0.314, 0.010],
    [0.004, -0.112, -0.004], [0.104, -0.694, 0.005], [-0.108, -0.699, 0.008],
    [0.008, 0.025, 0.020], [0.089, -1.119, -0.038], [-0.092, -1.121, -0.035],
    [0.006, 0.080, 0.024], [0.114, -1.175, 0.086], [-0.117, -1.177, 0.089],
    [-0.011, 0.290, -0.018], [0.076, 0.192, -0.005], [-0.077, 0.192, -0.010],
    [0.000, 0.358, 0.032], [0.199, 0.237, -0.015], [-0.191, 0.237, -0.021],
    [0.454, 0.221, -0.041], [-0.454, 0.221, -0.040], [0.716, 0.234, -0.046],
    [-0.718, 0.231, -0.049], [0.801, 0.224, -0.063], [-0.803, 0.222, -0.062]])

# (skinning joint, start point, end point, radius): one ellipsoid per bone.
_J = REST_JOINTS
_SEGMENTS = [
    (0, _J[1], _J[2], 0.10), (0, _J[0], _J[3], 0.14), (3, _J[3], _J[6], 0.14),
    (6, _J[6], _J[9], 0.15), (9, _J[9], _J[12], 0.14), (12, _J[12], _J[15], 0.05),
    (15, _J[15], _J[15] + [0, 0.2, 0], 0.10), (1, _J[1], _J[4], 0.075), (2, _J[2], _J[5], 0.075),
    (4, _J[4], _J[7], 0.055), (5, _J[5], _J[8], 0.055), (7, _J[7], _J[10] + [0, 0, 0.05], 0.045),
    (8, _J[8], _J[11] + [0, 0, 0.05], 0.045), (13, _J[9], _J[16], 0.06),
    (14, _J[9], _J[17], 0.06), (16, _J[16], _J[18], 0.05), (17, _J[17], _J[19], 0.05),
    (18, _J[18], _J[20], 0.042), (19, _J[19], _J[21], 0.042), (20, _J[20], _J[22] + [0.05, 0, 0],
                                                              0.035),
    (21, _J[21], _J[23] - [0.05, 0, 0], 0.035)]


def _ellipsoid(a, b, radius, n_u=16, n_v=10):
  """Closed ellipsoid around segment a-b: vertices [n, 3] and outward faces."""
  a, b = np.asarray(a, float), np.asarray(b, float)
  axis = b - a
  length = np.linalg.norm(axis)
  axis /= length
  helper = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
  e1 = np.cross(axis, helper)
  e1 /= np.linalg.norm(e1)
  e2 = np.cross(axis, e1)
  center = (a + b) / 2
  half = length / 2 * 1.15 + radius * 0.3
  verts = [center - axis * half]
  for i in range(1, n_v):
    th = np.pi * i / n_v
    for j in range(n_u):
      ph = 2 * np.pi * j / n_u
      verts.append(center - np.cos(th) * half * axis
                   + np.sin(th) * radius * (np.cos(ph) * e1 + np.sin(ph) * e2))
  verts.append(center + axis * half)
  verts = np.array(verts)
  faces = []
  ring = lambda i, j: 1 + (i - 1) * n_u + j % n_u
  for j in range(n_u):
    faces.append([0, ring(1, j + 1), ring(1, j)])
    last = len(verts) - 1
    faces.append([last, ring(n_v - 1, j), ring(n_v - 1, j + 1)])
  for i in range(1, n_v - 1):
    for j in range(n_u):
      faces.append([ring(i, j), ring(i, j + 1), ring(i + 1, j)])
      faces.append([ring(i, j + 1), ring(i + 1, j + 1), ring(i + 1, j)])
  faces = np.array(faces)
  # Orient outward (the construction's winding depends on the frame's handedness).
  n = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
  if np.mean(np.einsum("fd,fd->f", n, verts[faces].mean(1) - center)) < 0:
    faces = faces[:, ::-1]
  return verts, faces


def capsule_body(num_betas: int = 10, seed: int = 0) -> body_lib.BodyModel:
  """A procedural SMPL-layout body (ellipsoid per bone; joints regressed exactly)."""
  verts, faces, weights = [], [], []
  offset = 0
  for joint, a, b, radius in _SEGMENTS:
    v, f = _ellipsoid(a, b, radius)
    w = np.zeros((len(v), 24))
    w[:, joint] = 1.0
    verts.append(v)
    faces.append(f + offset)
    weights.append(w)
    offset += len(v)
  # One unreferenced vertex per joint so the regressor reproduces the rest joints exactly.
  verts.append(REST_JOINTS)
  weights.append(np.eye(24))
  verts = np.concatenate(verts)
  weights = np.concatenate(weights)
  j_reg = np.zeros((24, len(verts)))
  j_reg[np.arange(24), offset + np.arange(24)] = 1.0
  rng = np.random.default_rng(seed)
  shapedirs = np.zeros((len(verts), 3, num_betas))
  shapedirs[:, :, 0] = 0.04 * verts  # beta 0: overall size
  for k in range(1, num_betas):  # smooth, small random deformations
    freq = rng.normal(size=(3, 3)) * 2.0
    shapedirs[:, :, k] = 0.01 * np.sin(verts @ freq)
  kintree = np.array([[4294967295] + list(body_lib.SMPL_PARENTS[1:]), list(range(24))])
  return body_lib.body_model_from_arrays(
      {"v_template": verts, "shapedirs": shapedirs, "J_regressor": j_reg, "weights": weights,
       "kintree_table": kintree, "f": np.concatenate(faces)}, num_betas=num_betas,
      source="capsule_body")


@pytest.fixture(scope="session")
def small_body():
  return capsule_body()


def test_capsule_body_regresses_rest_joints(small_body):
  joints = np.asarray(small_body.J_regressor @ small_body.v_template)
  np.testing.assert_allclose(joints, REST_JOINTS, atol=1e-6)
