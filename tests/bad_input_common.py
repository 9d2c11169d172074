"""Shared helpers of the ``test_bad_input_*`` files: a tiny valid sequence in the hsjax layout
that each case then damages in one way."""

import os

import numpy as np

from hsjax import body as body_lib
from hsjax.camera import Camera
from hsjax.data import io as io_lib
from hsjax.data import sequence as seq_lib

SIZE = 16
NUM_FRAMES = 3


def tiny_sequence(depth: bool = False) -> seq_lib.Sequence:
  rng = np.random.default_rng(0)
  masks = np.zeros((NUM_FRAMES, SIZE, SIZE), np.float32)
  masks[:, 4:12, 6:10] = 1.0
  k = np.array([[20.0, 0, SIZE / 2], [0, 20.0, SIZE / 2], [0, 0, 1]], np.float32)
  w2c = np.eye(4, dtype=np.float32)
  w2c[2, 3] = 3.0
  zeros = lambda *s: np.zeros(s, np.float32)
  hmr = body_lib.SMPLParams(betas=zeros(10), body_pose=zeros(NUM_FRAMES, 23, 3),
                            global_orient=zeros(NUM_FRAMES, 3), transl=zeros(NUM_FRAMES, 3))
  return seq_lib.Sequence(
      name="tiny", images=rng.uniform(size=(NUM_FRAMES, SIZE, SIZE, 3)).astype(np.float32),
      masks=masks, depth=np.full((NUM_FRAMES, SIZE, SIZE), 3.0, np.float32) if depth else None,
      depth_kind="metric" if depth else None,
      cameras=Camera(K=np.repeat(k[None], NUM_FRAMES, 0),
                     world_to_cam=np.repeat(w2c[None], NUM_FRAMES, 0), width=SIZE, height=SIZE),
      hmr=hmr, fps=30.0)


def write_tiny(root, depth: bool = False) -> str:
  io_lib.save_sequence(str(root), tiny_sequence(depth))
  return str(root)


def npz_update(path, **changes) -> None:
  with np.load(path, allow_pickle=False) as f:
    arrays = {k: f[k] for k in f.files}
  for k, v in changes.items():
    if v is None:
      arrays.pop(k)
    else:
      arrays[k] = v
  np.savez(path, **arrays)


def tree_bytes(root) -> dict[str, bytes]:
  """Every file under ``root`` (relative path -> bytes), to compare a folder before and after."""
  out = {}
  for dirpath, _, files in os.walk(root):
    for f in files:
      p = os.path.join(dirpath, f)
      with open(p, "rb") as fh:
        out[os.path.relpath(p, root)] = fh.read()
  return out
