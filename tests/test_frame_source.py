"""Tests of the fit's host edge (hsjax.fit.data.FrameSource): frames prepared one at a time
equal the whole-array preparation, the cache budget bounds what is kept, lazily loaded frames
are read once to prepare and then only as steps draw them, and a fit that reads every frame
again each step equals one that keeps them all."""

import dataclasses

import jax
import numpy as np
import pytest

from hsjax import body as body_lib
from hsjax import losses as losses_lib
from hsjax.data import LazyFrames
from hsjax.data import synthetic_sequence

from hsjax import fit as fit_lib
from hsjax.fit import data as fit_data

CONFIG = fit_lib.FitConfig(steps=4, warmup_steps=1, batch_frames=2, num_gaussians=64,
                           tile_capacity=32, log_every=1, progress=False,
                           background=(0.2, 0.4, 0.6))


@pytest.fixture(scope="module")
def body_model():
  return body_lib.load_body_model("default")


@pytest.fixture(scope="module")
def sequence(body_model):
  return synthetic_sequence("default", seed=0, num_frames=5, image_size=32, num_eval_views=0,
                            num_novel_pose=0, supersample=1, cache_dir=False,
                            body_model=body_model)


class CountingLoader:
  """Frames of an array behind LazyFrames, counting every load."""

  def __init__(self, frames: np.ndarray):
    self.frames, self.loads = frames, 0

  def __call__(self, path: str) -> np.ndarray:
    self.loads += 1
    return self.frames[int(path)]


def _lazy(sequence):
  """``sequence`` with LazyFrames images / masks / depth, and their loaders."""
  loaders = {}
  fields = {}
  for field in ("images", "masks", "depth"):
    frames = np.asarray(getattr(sequence, field))
    loaders[field] = CountingLoader(frames)
    fields[field] = LazyFrames([str(t) for t in range(len(frames))], loaders[field],
                               frames.shape[1:], field=field)
  return dataclasses.replace(sequence, **fields), loaders


def test_frames_are_composited_and_area_downsampled(sequence):
  source = fit_lib.FrameSource(sequence, CONFIG)
  images = np.asarray(sequence.images, np.float64)
  masks = np.asarray(sequence.masks, np.float64)[..., None]
  composited = images * masks + np.asarray(CONFIG.background) * (1.0 - masks)
  expected = composited.reshape(5, 16, 2, 16, 2, 3).mean(axis=(2, 4))
  batch = source.batch(np.array([3, 1]))
  np.testing.assert_array_equal(batch.frames, [3, 1])
  np.testing.assert_allclose(batch.image, expected[[3, 1]], atol=1e-6)
  np.testing.assert_allclose(batch.mask, masks[..., 0].reshape(5, 16, 2, 16, 2).mean(
      axis=(2, 4))[[3, 1]], atol=1e-6)
  assert batch.image.shape == (2, 16, 16, 3) and batch.depth.shape == (2, 16, 16)
  assert (source.height, source.width) == (16, 16)


def test_max_fit_size_raises_the_factor_to_one_that_divides_the_frames(sequence, body_model):
  quality = fit_lib.FitConfig(downsample=1, max_fit_size=512)
  assert quality.fit_downsample(256, 256) == 1  # small frames: full resolution
  assert quality.fit_downsample(1080, 1920) == 4  # 1920 / 512 = 3.75 -> 4 divides both sides
  assert quality.fit_downsample(720, 1280) == 4  # 3 does not divide 1280
  assert dataclasses.replace(quality, downsample=5).fit_downsample(1080, 1920) == 5
  with pytest.raises(ValueError, match="downsample=7 must divide"):
    fit_lib.FitConfig(downsample=7).fit_downsample(256, 256)
  # The source and the intrinsics of the fit follow the factor.
  config = dataclasses.replace(CONFIG, downsample=1, max_fit_size=8)
  source = fit_lib.FrameSource(sequence, config)
  assert (source.factor, source.height, source.width) == (4, 8, 8)
  data = fit_lib.prepare_data(sequence, config, body_model=body_model, source=source)
  np.testing.assert_allclose(np.asarray(data.K[0]), np.diag([0.25, 0.25, 1.0]) @ np.asarray(
      sequence.cameras.K)[..., :3, :3].reshape(-1, 3, 3)[0], rtol=1e-6)


def test_depth_near_the_silhouette_is_dropped_when_asked(body_model):
  """depth_edge_px=1 keeps depth only where the whole 3x3 block around a pixel is the person
  (an 8-connected erosion); images, masks and the interior's depth stay as they were."""
  sequence = synthetic_sequence("default", seed=0, num_frames=2, image_size=96,
                                num_eval_views=0, num_novel_pose=0, supersample=1,
                                cache_dir=False, body_model=body_model)
  plain = fit_lib.FrameSource(sequence, dataclasses.replace(CONFIG, depth_edge_px=0)).frame(1)
  edged = fit_lib.FrameSource(sequence, dataclasses.replace(CONFIG, depth_edge_px=1)).frame(1)
  np.testing.assert_array_equal(edged[0], plain[0])
  np.testing.assert_array_equal(edged[1], plain[1])
  person = plain[1] > 0.5
  padded = np.pad(person, 1)
  inner = np.ones_like(person)
  for dy in range(3):
    for dx in range(3):
      inner &= padded[dy:dy + person.shape[0], dx:dx + person.shape[1]]
  assert 0 < inner.sum() < person.sum()
  assert np.any(plain[2][person & ~inner] > 0)  # the ring had depth, and loses it
  np.testing.assert_array_equal(edged[2], np.where(inner, plain[2], 0.0))
  np.testing.assert_array_equal(fit_data.interior(plain[1], 1), inner)
  with pytest.raises(ValueError, match="depth_edge_px must be >= 0, found -1"):
    dataclasses.replace(CONFIG, depth_edge_px=-1)


def test_depth_blocks_average_their_valid_pixels(sequence):
  depth = np.asarray(sequence.depth, np.float32).copy()
  depth[0, :2, :2] = [[2.0, 0.0], [np.nan, 4.0]]  # one valid pair of four, one NaN
  depth[0, :2, 2:4] = [[2.0, 3.0], [0.0, 4.0]]  # three valid
  # Every pixel's depth, inside the silhouette or not (no ring dropped).
  source = fit_lib.FrameSource(dataclasses.replace(sequence, depth=depth),
                               dataclasses.replace(CONFIG, depth_edge_px=0))
  _, _, prepared = source.frame(0)
  assert prepared[0, 0] == pytest.approx(3.0)  # half the block valid: their mean
  assert prepared[0, 1] == pytest.approx(3.0)


def test_cache_budget_bounds_the_frames_kept(sequence):
  full = fit_lib.FrameSource(sequence, CONFIG)
  for t in range(5):
    full.frame(t)
  assert full.cached_frames == 5
  frame_bytes = sum(x.nbytes for x in full.frame(0))
  two = fit_lib.FrameSource(sequence, dataclasses.replace(
      CONFIG, frame_cache_gb=2.5 * frame_bytes / 2**30))
  for t in range(5):
    two.frame(t)
  assert two.cached_frames == 2
  none = fit_lib.FrameSource(sequence, dataclasses.replace(CONFIG, frame_cache_gb=0.0))
  np.testing.assert_array_equal(none.frame(4)[0], full.frame(4)[0])
  assert none.cached_frames == 0


def test_lazy_frames_are_read_once_to_prepare_then_only_when_drawn(sequence, body_model):
  lazy, loaders = _lazy(sequence)
  no_cache = dataclasses.replace(CONFIG, frame_cache_gb=0.0)
  source = fit_lib.FrameSource(lazy, no_cache)
  assert all(l.loads == 0 for l in loaders.values())  # shapes are known without loading
  fit_lib.prepare_data(lazy, no_cache, body_model, source=source)
  assert [l.loads for l in loaders.values()] == [5, 5, 5]
  source.batch(np.array([0, 2]))
  assert [l.loads for l in loaders.values()] == [7, 7, 7]
  cached = fit_lib.FrameSource(lazy, CONFIG)
  fit_lib.prepare_data(lazy, CONFIG, body_model, source=cached)
  cached.batch(np.array([0, 2]))
  assert [l.loads for l in loaders.values()] == [12, 12, 12]  # the pass only


def test_fit_reading_frames_every_step_equals_fit_keeping_them(sequence, body_model):
  losses = {k: losses_lib.DEFAULT_LOSSES[k] for k in ("rgb", "mask", "depth", "pose_prior")}
  lazy, loaders = _lazy(sequence)
  kept = fit_lib.fit(sequence, CONFIG, key=jax.random.key(1), losses=losses,
                     body_model=body_model)
  streamed = fit_lib.fit(lazy, dataclasses.replace(CONFIG, frame_cache_gb=0.0),
                         key=jax.random.key(1), losses=losses, body_model=body_model)
  # One pass to prepare, then the 2 frames of each of the 4 steps.
  assert loaders["images"].loads == 5 + 4 * 2
  for a, b in zip(jax.tree_util.tree_leaves((kept.avatar, kept.poses)),
                  jax.tree_util.tree_leaves((streamed.avatar, streamed.poses))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fit_data_holds_no_frames(sequence, body_model):
  data = fit_lib.prepare_data(sequence, CONFIG, body_model)
  assert all(np.size(x) < 5 * 16 * 16 for x in jax.tree_util.tree_leaves(data))
  frames = fit_lib.FrameSource(sequence, CONFIG).batch(np.arange(5))
  person = np.asarray(frames.mask, np.float64)[..., None]
  np.testing.assert_allclose(data.mean_color, (frames.image * person).sum((0, 1, 2))
                             / person.sum(), rtol=1e-5)


def test_bad_frames_are_named(sequence):
  images = np.asarray(sequence.images).copy()
  images[3, 0, 0] = 255.0
  source = fit_lib.FrameSource(dataclasses.replace(sequence, images=images), CONFIG)
  with pytest.raises(ValueError, match=r"sequence\.images: expected floats in \[0, 1\], "
                     r"found max 255.0 in frame 3"):
    fit_lib.prepare_data(dataclasses.replace(sequence, images=images), CONFIG, source=source)
  masks = np.asarray(sequence.masks).copy()
  masks[2, 5, 5] = np.nan
  with pytest.raises(ValueError, match=r"sequence\.masks: expected finite values, found NaN "
                     r"or inf in frame 2"):
    fit_lib.FrameSource(dataclasses.replace(sequence, masks=masks), CONFIG).frame(2)
  with pytest.raises(ValueError, match=r"sequence\.depth: expected \(5, 32, 32\)"):
    fit_lib.FrameSource(dataclasses.replace(sequence, depth=np.zeros((5, 32, 31))), CONFIG)
  with pytest.raises(ValueError, match="frame_cache_gb"):
    dataclasses.replace(CONFIG, frame_cache_gb=-1.0)
