"""Shared helper of tests that need a real body seen by a real camera: two frames of the
default synthetic sequence and an initial avatar (to be posed with the sequence's truth)."""

import jax

from hsjax import avatar as avatar_lib
from hsjax.data import synthetic_sequence

SIZE = 64
NUM_GAUSSIANS = 1500


def two_frame_scene(body_model):
  """(sequence: 2 frames of SIZE² with exact depth, avatar: NUM_GAUSSIANS initial Gaussians)."""
  seq = synthetic_sequence("default", seed=0, num_frames=2, image_size=SIZE, num_eval_views=0,
                           num_novel_pose=0, cache_dir=False, body_model=body_model)
  return seq, avatar_lib.init_avatar(jax.random.key(0), body_model, NUM_GAUSSIANS)
