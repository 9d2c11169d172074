r"""Renders the embedded default body in its rest pose, a few SMPL poses and shapes.

  python3 experiments/plot_default_body.py --out=docs/default_body.png

Each panel is an orthographic, flat Lambert-shaded view drawn with PIL (back faces culled,
triangles painted far to near); the poses go through ``hsjax.body_forward``, so the figure
checks that SMPL axis-angle parameters articulate the model as they articulate SMPL. Top
row: front views; middle row: the same poses seen from the subject's left; bottom row:
+-2 sd of beta_0 and beta_1. A few seconds on 2 CPU cores.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
import jax
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
from scipy.spatial.transform import Rotation

import hsjax

_OUT = flags.DEFINE_string("out", "docs/default_body.png", "Output PNG path.")
_MODEL = flags.DEFINE_string("model", "default", "Body model: 'default' or an SMPL file path.")
_PANEL_SIZE = flags.DEFINE_integer("panel_size", 320, "Panel width and height, pixels.")

LIGHT = np.array([0.3, 0.5, 1.0]) / np.linalg.norm([0.3, 0.5, 1.0])  # View-space direction.
SKIN = np.array([222.0, 184.0, 160.0])
BACKGROUND = (255, 255, 255)
METRES_IN_PANEL = 2.3  # Panel height in metres; a 2 m body with raised arms fits.


def _aa(*rotations: tuple[str, float]) -> np.ndarray:
  """Axis-angle [3] of the composition of elementary rotations, the first applied last.

  E.g. ``_aa(("x", -0.4), ("z", -1.3))`` lowers a left arm (about z), then swings it forward
  (about x); angles in radians.
  """
  rot = Rotation.identity()
  for axis, angle in rotations:
    rot = rot * Rotation.from_euler(axis, angle)
  return rot.as_rotvec()


def smpl_pose(**joints: np.ndarray) -> np.ndarray:
  """body_pose [23, 3] with the named SMPL joints set (axis-angle), the rest zero."""
  pose = np.zeros((23, 3))
  for name, value in joints.items():
    pose[hsjax.body.SMPL_JOINT_NAMES.index(name) - 1] = value
  return pose


def named_poses() -> dict[str, np.ndarray]:
  """SMPL body poses [23, 3] used in the figure (SMPL sign conventions).

  Knee flexion is +x (the shin swings back), hip flexion -x (the thigh swings forward),
  left elbow flexion -y (right +y) with the arm along +-x, and a left arm is lowered by -z.
  """
  return {
      "rest (T-pose)": smpl_pose(),
      "walking": smpl_pose(
          left_hip=_aa(("x", -0.45)), right_hip=_aa(("x", 0.35)),
          left_knee=_aa(("x", 0.15)), right_knee=_aa(("x", 0.7)),
          right_ankle=_aa(("x", -0.2)),
          left_shoulder=_aa(("x", 0.35), ("z", -1.25)),
          right_shoulder=_aa(("x", -0.35), ("z", 1.25)),
          left_elbow=_aa(("y", -0.2)), right_elbow=_aa(("y", 0.6))),
      "arms raised": smpl_pose(
          left_shoulder=_aa(("z", 1.1)), right_shoulder=_aa(("z", -1.1)),
          left_elbow=_aa(("y", -0.3)), right_elbow=_aa(("y", 0.3))),
      "sitting": smpl_pose(
          left_hip=_aa(("x", -1.5)), right_hip=_aa(("x", -1.5)),
          left_knee=_aa(("x", 1.5)), right_knee=_aa(("x", 1.5)),
          left_shoulder=_aa(("z", -1.2)), right_shoulder=_aa(("z", 1.2)),
          left_elbow=_aa(("y", -1.3)), right_elbow=_aa(("y", 1.3))),
  }


def render_mesh(vertices: np.ndarray, faces: np.ndarray, *, yaw: float, size: int,
                centre: np.ndarray) -> Image.Image:
  """Orthographic flat-shaded image of a mesh.

  Args:
    vertices: [V, 3] metres, SMPL frame (y up, facing +z).
    faces: [F, 3] outward-oriented triangles.
    yaw: rotation of the body about +y before viewing from +z, radians (0 = front view,
      -pi/2 = seen from the subject's left).
    size: image width and height, pixels.
    centre: [3] world point drawn at the image centre.

  Returns:
    An RGB PIL image.
  """
  view = Rotation.from_euler("y", yaw).as_matrix()
  v = (vertices - centre) @ view.T
  tri = v[faces]  # [F, 3, 3]
  normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
  normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
  front = normals[:, 2] > 0  # Back faces of a closed outward mesh are hidden.
  tri, normals = tri[front], normals[front]
  shade = 0.25 + 0.75 * np.clip(normals @ LIGHT, 0.0, 1.0)
  order = np.argsort(tri[:, :, 2].mean(1))  # Painter's algorithm: far (low z) first.
  scale = size / METRES_IN_PANEL
  pixels = np.stack([size / 2 + scale * tri[..., 0], size / 2 - scale * tri[..., 1]], -1)
  image = Image.new("RGB", (size, size), BACKGROUND)
  draw = ImageDraw.Draw(image)
  for f in order:
    colour = tuple(int(c) for c in SKIN * shade[f])
    draw.polygon([tuple(p) for p in pixels[f]], fill=colour, outline=colour)
  return image


def label(image: Image.Image, text: str) -> Image.Image:
  """The panel with `text` written in a strip above it."""
  width, height = image.size
  header = max(14, height // 14)
  out = Image.new("RGB", (width, height + header), BACKGROUND)
  out.paste(image, (0, header))
  font = ImageFont.load_default(size=int(header * 0.7))
  ImageDraw.Draw(out).text((6, header // 8), text, fill=(0, 0, 0), font=font)
  return out


def main(argv):
  del argv
  model = hsjax.load_body_model(_MODEL.value, num_betas=10)
  faces = np.asarray(model.faces)
  size = _PANEL_SIZE.value
  forward = jax.jit(hsjax.body_forward)
  zeros3 = np.zeros(3, np.float32)
  betas0 = np.zeros(model.num_betas, np.float32)
  rest = np.asarray(forward(model, betas0, np.zeros((23, 3), np.float32), zeros3).vertices)
  # One centre for every panel, so sizes and heights compare across panels.
  centre = np.array([0.0, 0.5 * (rest[:, 1].max() + rest[:, 1].min()), 0.0])

  rows = [[], []]
  for name, pose in named_poses().items():
    verts = np.asarray(forward(model, betas0, pose.astype(np.float32), zeros3).vertices)
    rows[0].append(label(render_mesh(verts, faces, yaw=0.0, size=size, centre=centre),
                         f"{name}: front"))
    rows[1].append(label(render_mesh(verts, faces, yaw=-np.pi / 2, size=size, centre=centre),
                         f"{name}: left side"))
  shapes = []
  for k in (0, 1):
    for value in (-2.0, 2.0):
      betas = betas0.copy()
      betas[k] = value
      verts = np.asarray(forward(model, betas, np.zeros((23, 3), np.float32), zeros3).vertices)
      height = verts[:, 1].max() - verts[:, 1].min()
      shapes.append(label(render_mesh(verts, faces, yaw=0.0, size=size, centre=centre),
                          f"beta_{k} = {value:+.0f}  ({height:.2f} m)"))
  rows.append(shapes)

  width, height = rows[0][0].size
  figure = Image.new("RGB", (width * 4, height * len(rows)), BACKGROUND)
  for r, row in enumerate(rows):
    for c, panel in enumerate(row):
      figure.paste(panel, (c * width, r * height))
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  figure.save(_OUT.value)
  print(f"wrote {_OUT.value} ({figure.size[0]}x{figure.size[1]})")


if __name__ == "__main__":
  jax.config.parse_flags_with_absl()
  app.run(main)
