"""The synthetic benchmark: a textured body in motion, rendered with ground truth and HMR noise.

``synthetic_sequence(name, seed)`` is a deterministic function of its arguments: the body
shape, clothing colours, HMR noise and (for relative or simulated monocular depth) the depth
errors all come from ``seed``. Generation steps:

1. motion: a named motion (:mod:`hsjax.data.motions`; builtin real-capture clips or the
   parametric extras), resampled to ``fps`` and cut to ``num_frames``;
2. placement: the posed body is put on the floor ``y = 0`` (parametric clips per frame,
   keeping their hops; captured clips by one constant shift) and centred horizontally;
3. cameras: the static training camera looks at the subject's centre from ``distance``
   metres in front (+z, the direction the rest body faces) at chest height, its focal length
   chosen so the standing body spans ``body_fraction`` of the image height; held-out cameras
   sit at the same distance and height at evenly spaced azimuths around the subject; with
   ``camera_orbit`` (degrees per second) the training camera slowly circles instead;
4. rendering: :func:`hsjax.data.synthetic.render.render_mesh` (independent of the Gaussian
   rasteriser) with the procedural clothing of :mod:`hsjax.data.synthetic.appearance`; images and
   masks are quantised to 8 bit like video frames (so a cached copy is bit-identical);
5. HMR estimates: :func:`hsjax.data.hmr_noise.simulate_hmr` on the training cameras;
6. novel poses: a few frames of a different motion seen by the training camera.

The world frame is SMPL's (y up, metres, floor ``y = 0``); parameters and cameras share it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from hsjax import body as body_lib
from hsjax.camera import Camera, intrinsics, look_at
from hsjax.data import depth_noise as depth_noise_lib
from hsjax.data import hmr_noise as noise_lib
from hsjax.data import io as io_lib
from hsjax.data import motions as motions_lib
from hsjax.data import sequence as seq_lib
from hsjax.data.synthetic import appearance as appearance_lib
from hsjax.data.synthetic import render as render_lib
from hsjax.motion import io as motion_io
from hsjax.motion import motion as motion_lib

# Bump when generation changes, so stale caches are not reused.
GENERATOR_VERSION = 2
# "exact" metric z-buffer depth, "relative" (affine-distorted), "none", or the name of a
# simulated monocular metric-depth error (hsjax.data.depth_noise.DEPTH_NOISE_PRESETS).
DEPTH_MODES = ("exact", "relative", "none") + tuple(depth_noise_lib.DEPTH_NOISE_PRESETS)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Settings of a synthetic sequence (every field goes into the cache key)."""

  motion: str = "dance_b"  # motion name (see hsjax.data.motions.get_motion).
  num_frames: int = 60
  fps: float = 30.0
  image_size: int = 256  # square images, pixels.
  distance: float = 3.0  # metres from the subject's centre to the cameras.
  camera_height: float = 1.2  # metres above the floor.
  body_fraction: float = 0.72  # standing body height / image height.
  camera_orbit: float = 0.0  # degrees per second of slow training-camera motion (0 = static).
  num_eval_views: int = 4  # held-out cameras around the subject.
  novel_pose_motion: str = "jumping_jacks"
  num_novel_pose: int = 8  # held-out frames with unseen poses (every 4th frame of the clip).
  depth: str = "exact"  # "exact", "relative", "none" or a DEPTH_NOISE_PRESETS key (metric).
  background: str = "plain"  # "plain" (grey) or "textured" (floor and wall).
  supersample: int = 2  # anti-aliasing sub-pixels per axis.
  betas_sigma: float = 0.6  # std of the ground-truth shape drawn from the seed.


# Named sequences. "default" is the demo's: 60 frames, 256^2, 1 training + 4 held-out views.
# The benchmark's motions are real capture (hsjax.motion.builtin_motions(), retargeted
# DeepMimic clips); the hand-made parametric motions are kept as extras under `param_*` names.
PRESETS: dict[str, SyntheticConfig] = {
    "default": SyntheticConfig(),
    **{clip: SyntheticConfig(motion=clip) for clip in (
        "walk", "run", "jump", "kick", "punch", "spin", "dance_a", "dance_b", "cartwheel")},
    "param_walk_path": SyntheticConfig(motion="walk_path"),
    "param_walk_in_place": SyntheticConfig(motion="walk_in_place"),
    "param_turn_around": SyntheticConfig(motion="turn_around"),
    "param_squats": SyntheticConfig(motion="squats"),
    "param_arm_raises": SyntheticConfig(motion="arm_raises"),
    "param_jumping_jacks": SyntheticConfig(motion="jumping_jacks", novel_pose_motion="squats"),
    "param_dance": SyntheticConfig(motion="dance"),
    "textured": SyntheticConfig(background="textured"),
    "moving_camera": SyntheticConfig(camera_orbit=6.0),
}

PLAIN_BACKGROUND = (0.5, 0.5, 0.5)


def default_cache_dir() -> str:
  """``$HSJAX_CACHE/sequences`` if set, else ``~/.cache/hsjax/sequences``."""
  root = os.environ.get("HSJAX_CACHE")
  if root:
    return os.path.join(root, "sequences")
  return os.path.join(os.path.expanduser("~"), ".cache", "hsjax", "sequences")


def _model_digest(model: body_lib.BodyModel) -> str:
  h = hashlib.sha1()
  for a in (model.v_template, model.faces, model.lbs_weights, model.J_regressor):
    h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
  return h.hexdigest()[:12]


def _quantize8(x: np.ndarray) -> np.ndarray:
  """As stored in an 8-bit PNG and read back (the cache's exact round trip)."""
  return io_lib.to_uint8(x).astype(np.float32) / 255.0


def _ground(model, betas, motion, grounded_per_frame: bool) -> np.ndarray:
  """transl [T, 3] that puts the body on the floor y = 0 and centres it horizontally."""
  transl = np.asarray(motion.transl, np.float64).copy()
  flat = transl.copy()
  flat[:, 1] = 0.0
  verts, joints = body_lib.pose_frames_host(model, body_lib.SMPLParams(
      betas=betas, body_pose=np.asarray(motion.body_pose),
      global_orient=np.asarray(motion.global_orient), transl=flat))
  lowest = verts[..., 1].min(axis=1)  # [T]
  if grounded_per_frame:  # parametric clips: feet on the floor, plus their explicit hops
    transl[:, 1] = -lowest + (transl[:, 1] - transl[:, 1].min())
  else:  # captured clips: one shift keeps their own vertical motion
    transl[:, 1] += -np.percentile(lowest + transl[:, 1], 5)
  centre = joints[:, 0].mean(axis=0)
  transl[:, 0] -= centre[0]
  transl[:, 2] -= centre[2]
  return transl.astype(np.float32)


def _cameras(cfg: SyntheticConfig, body_height: float, num_frames: int,
             azimuths_deg) -> tuple[np.ndarray, np.ndarray]:
  """K [T, 3, 3] and world_to_cam [T, 4, 4] for cameras at the given azimuths [T]."""
  size = cfg.image_size
  focal = cfg.body_fraction * size * cfg.distance / body_height
  target = np.array([0.0, body_height / 2.0, 0.0])
  k = np.repeat(intrinsics(focal, size, size)[None], num_frames, axis=0)
  w2c = []
  for az in np.broadcast_to(np.asarray(azimuths_deg, np.float64), (num_frames,)):
    a = np.deg2rad(az)
    eye = np.array([cfg.distance * np.sin(a), cfg.camera_height, cfg.distance * np.cos(a)])
    w2c.append(look_at(eye, target))
  return k.astype(np.float32), np.stack(w2c).astype(np.float32)


def _render_frames(model, vertices, cams: Camera, appearance, cfg: SyntheticConfig, seed: int):
  faces = np.asarray(model.faces)
  canonical = np.asarray(model.v_template)
  images, masks, depths = [], [], []
  for t in range(len(vertices)):
    cam = Camera(K=cams.K[t], world_to_cam=cams.world_to_cam[t], width=cams.width,
                 height=cams.height)
    if cfg.background == "textured":
      bg = appearance_lib.textured_background(cam, seed=seed)
    else:
      bg = PLAIN_BACKGROUND
    rgb, mask, depth = render_lib.render_mesh(
        vertices[t], faces, cam, texture=appearance.texture, texture_coords=canonical,
        normals=render_lib.smooth_normals(vertices[t], faces), supersample=cfg.supersample, background=bg)
    images.append(_quantize8(rgb))
    masks.append(_quantize8(mask))
    depths.append(depth)
  return np.stack(images), np.stack(masks), np.stack(depths)


def _relative_depth(depth: np.ndarray, masks: np.ndarray, rng: np.random.Generator
                    ) -> np.ndarray:
  """Affine-ambiguous depth as from a monocular network: s * z + o (+ smooth error) on the
  person, per sequence; 0 stays invalid."""
  scale = rng.uniform(0.3, 3.0)
  offset = rng.uniform(-1.0, 1.0)
  rel = scale * depth + offset
  rel = rel + 0.01 * scale * rng.normal(size=depth.shape[:1])[:, None, None]
  return np.where(masks >= 0.5, rel, 0.0).astype(np.float32)


def _monocular_depth(depth: np.ndarray, masks: np.ndarray, cams: Camera, preset: str,
                     depth_seed: list[int]) -> tuple[np.ndarray, np.ndarray, dict]:
  """Depth as from a monocular metric-depth network, its intrinsics, and metadata.

  The intrinsics [T, 3, 3] are the ones the network estimated (to unproject this depth
  with; ``Sequence.depth_K``); ``cams.K`` stays the true camera.
  """
  noisy = depth_noise_lib.degrade_depth(depth, masks, cams.K, preset, seed=depth_seed)
  depth_k = depth_noise_lib.depth_intrinsics(cams.K, preset, seed=depth_seed)
  errors = depth_noise_lib.sample_depth_errors(preset, len(depth), seed=depth_seed)
  return noisy, depth_k.astype(np.float32), {
      "depth_noise": {
          "preset": preset, "seed": list(depth_seed),
          "params": dataclasses.asdict(depth_noise_lib.DEPTH_NOISE_PRESETS[preset]),
          "scale": errors.scale.tolist(), "focal_scale": errors.focal_scale.tolist()},
  }


def _generate(name: str, cfg: SyntheticConfig, seed: int, noise: noise_lib.HMRNoise,
              model: body_lib.BodyModel, clip: motion_lib.Motion | None = None
              ) -> seq_lib.Sequence:
  """One sequence; ``clip`` (a user's motion) replaces the named ``cfg.motion``."""
  rng = np.random.default_rng([seed, 1])
  betas = (cfg.betas_sigma * rng.normal(size=model.num_betas)).astype(np.float32)
  if clip is None:
    motion = motions_lib.get_motion(cfg.motion, cfg.num_frames, cfg.fps)
  else:
    motion = motions_lib.prepare_clip(clip, cfg.num_frames, cfg.fps)
  parametric = clip is None and cfg.motion in motions_lib.PARAMETRIC_MOTIONS
  transl = _ground(model, betas, motion, parametric)
  gt = body_lib.SMPLParams(betas=betas, body_pose=np.asarray(motion.body_pose, np.float32),
                           global_orient=np.asarray(motion.global_orient, np.float32),
                           transl=transl)
  rest = np.asarray(model.v_template) + np.asarray(model.shapedirs) @ betas
  body_height = float(rest[:, 1].max() - rest[:, 1].min())
  num_frames = cfg.num_frames
  appearance = appearance_lib.make_appearance(model, seed)

  def posed(params):
    return body_lib.pose_frames_host(model, params)[0]

  verts = posed(gt)
  size = cfg.image_size
  train_az = cfg.camera_orbit * np.arange(num_frames) / cfg.fps
  k, w2c = _cameras(cfg, body_height, num_frames, train_az)
  train_cams = Camera(K=k, world_to_cam=w2c, width=size, height=size)

  def make(cams, vertices, params, hmr, view_name, depth_seed):
    images, masks, depth = _render_frames(model, vertices, cams, appearance, cfg, seed)
    depth_kind, depth_k, metadata = "metric", None, {}
    if cfg.depth == "none":
      depth, depth_kind = None, None
    elif cfg.depth == "relative":
      depth_kind = "relative"
      depth = _relative_depth(depth, masks, np.random.default_rng(depth_seed))
    elif cfg.depth in depth_noise_lib.DEPTH_NOISE_PRESETS:
      depth, depth_k, metadata = _monocular_depth(depth, masks, cams, cfg.depth, depth_seed)
    return seq_lib.Sequence(name=view_name, images=images, masks=masks, depth=depth,
                            depth_kind=depth_kind, depth_K=depth_k, cameras=cams, hmr=hmr, gt=params,
                            fps=cfg.fps, metadata=metadata)

  hmr = noise_lib.simulate_hmr(gt, train_cams, noise, seed=seed, fps=cfg.fps, model=model)
  seq = make(train_cams, verts, gt, hmr, name, [seed, 2])

  for i in range(cfg.num_eval_views):
    az = 360.0 * (i + 1) / (cfg.num_eval_views + 1)
    k_v, w2c_v = _cameras(cfg, body_height, num_frames, train_az + az)
    cams = Camera(K=k_v, world_to_cam=w2c_v, width=size, height=size)
    view = make(cams, verts, gt, hmr, f"{name}/view{i:02d}", [seed, 3, i])
    view.metadata["azimuth_deg"] = az
    seq.eval_views.append(view)

  if cfg.num_novel_pose > 0:
    stride = 4
    clip = motions_lib.get_motion(cfg.novel_pose_motion, cfg.num_novel_pose * stride, cfg.fps)
    clip = clip.slice(0, None, stride)
    transl_np = _ground(model, betas, clip,
                        cfg.novel_pose_motion in motions_lib.PARAMETRIC_MOTIONS)
    gt_np = body_lib.SMPLParams(betas=betas, body_pose=np.asarray(clip.body_pose, np.float32),
                                global_orient=np.asarray(clip.global_orient, np.float32),
                                transl=transl_np)
    n = cfg.num_novel_pose
    cams_np = Camera(K=k[:1].repeat(n, 0), world_to_cam=w2c[:1].repeat(n, 0), width=size,
                     height=size)
    hmr_np = noise_lib.simulate_hmr(gt_np, cams_np, noise, seed=seed + 1, fps=clip.fps,
                                    model=model)
    seq.novel_pose = make(cams_np, posed(gt_np), gt_np, hmr_np, f"{name}/novel_pose",
                          [seed, 4])
    seq.novel_pose.fps = clip.fps
    seq.novel_pose.metadata.update(motion=cfg.novel_pose_motion, frame_stride=stride)

  seq.metadata = {
      **seq.metadata, "generator": "hsjax.data.synthetic", "generator_version": GENERATOR_VERSION,
      "name": name, "seed": seed, "config": dataclasses.asdict(cfg),
      "hmr_noise": dataclasses.asdict(noise), "body_model": model.name,
      "body_model_digest": _model_digest(model), "motion": motion.name,
      "background": (list(PLAIN_BACKGROUND) if cfg.background == "plain" else "textured"),
      "floor_height": 0.0, "world_frame": "SMPL (y up, metres), floor y = 0",
      "appearance": {"base_colors": appearance.base_colors.tolist(),
                     "regions": list(appearance_lib.REGIONS)},
  }
  return seq


def _user_clip(motion) -> motion_lib.Motion | None:
  """The clip of a ``motion`` argument that is a Motion or a file; None for a name."""
  if isinstance(motion, motion_lib.Motion):
    return motion_lib.validate_motion(motion, "synthetic_sequence(motion=...)")
  if isinstance(motion, os.PathLike) or (isinstance(motion, str) and (
      os.sep in motion or os.path.splitext(motion)[1].lower() in (".bvh", ".npz", ".txt",
                                                                   ".json"))):
    if not os.path.exists(motion):
      raise FileNotFoundError(f"synthetic_sequence: motion file not found: {motion}")
    return motion_io.load_motion(os.fspath(motion))
  return None


def synthetic_sequence(name: str = "default", seed: int = 0, hmr_noise="hmr2_like", *,
                       motion: str | os.PathLike | motion_lib.Motion | None = None,
                       num_frames: int | None = None,
                       image_size: int | None = None, depth: str | None = None,
                       cache_dir: str | None | bool = None,
                       body_model: body_lib.BodyModel | None = None,
                       **overrides) -> seq_lib.Sequence:
  """A synthetic monocular sequence with ground truth, simulated HMR and held-out views.

  Args:
    name: a key of :data:`PRESETS` (``"default"``: 60 frames of the captured ``dance_b`` clip
      at 30 fps, 256 x 256,
      one static training view, 4 held-out views, 8 novel-pose frames, metric depth).
    seed: seeds the body shape, clothing, HMR noise and depth distortion.
    hmr_noise: a key of :data:`hsjax.data.HMR_NOISE_PRESETS` or an ``HMRNoise``.
    motion: overrides the preset's motion: a name (see :func:`hsjax.data.motions.get_motion`),
      a :class:`hsjax.motion.Motion`, or the path of a file
      :func:`hsjax.motion.load_motion` reads (BVH, AMASS ``.npz``, DeepMimic, hsjax). A clip
      is resampled, turned to face the training camera and cut or extended like the
      builtin ones; the cache knows it by its content (``<name>@<hash>``).
    num_frames: overrides the number of frames.
    image_size: overrides the (square) image size, pixels.
    depth: ``"exact"`` (metric z-buffer), ``"relative"`` (affine-distorted, flagged),
      ``"none"``, or a key of :data:`hsjax.data.DEPTH_NOISE_PRESETS` (e.g.
      ``"unidepth_like"``): metric depth degraded like a monocular metric-depth network
      (:func:`hsjax.data.depth_noise.degrade_depth`); the network's estimated intrinsics are
      in ``depth_K`` [T, 3, 3] of each (sub)sequence, the cameras stay true.
    cache_dir: where generated sequences are kept (default :func:`default_cache_dir`);
      ``False`` disables caching (arrays are then in memory).
    body_model: the body (default: the embedded default body, ``load_body_model()``).
    **overrides: any other :class:`SyntheticConfig` field.

  Returns:
    The :class:`~hsjax.data.Sequence` (from the cache: lazily loaded frames, bit-identical
    to a fresh generation).
  """
  if name not in PRESETS:
    raise ValueError(f"unknown synthetic sequence '{name}'; valid: {sorted(PRESETS)}")
  changes = dict(overrides)
  clip = _user_clip(motion)
  if clip is not None:
    motion = f"{clip.name or 'motion'}@{motions_lib.motion_digest(clip)}"
  for field, value in (("motion", motion), ("num_frames", num_frames),
                       ("image_size", image_size), ("depth", depth)):
    if value is not None:
      changes[field] = value
  unknown = set(changes) - {f.name for f in dataclasses.fields(SyntheticConfig)}
  if unknown:
    raise ValueError(f"synthetic_sequence: unknown setting(s) {sorted(unknown)}; valid: "
                     f"{[f.name for f in dataclasses.fields(SyntheticConfig)]}")
  cfg = dataclasses.replace(PRESETS[name], **changes)
  if cfg.depth not in DEPTH_MODES:
    raise ValueError(f"synthetic_sequence: depth must be one of {DEPTH_MODES}, found "
                     f"{cfg.depth!r}")
  if cfg.background not in ("plain", "textured"):
    raise ValueError(f"synthetic_sequence: background must be 'plain' or 'textured', found "
                     f"{cfg.background!r}")
  noise = noise_lib._as_noise(hmr_noise)
  model = body_model if body_model is not None else body_lib.load_body_model("default")

  if cache_dir is False:
    return _generate(name, cfg, seed, noise, model, clip)
  settings = {"v": GENERATOR_VERSION, "cfg": dataclasses.asdict(cfg),
              "noise": dataclasses.asdict(noise), "model": _model_digest(model), "seed": seed}
  if cfg.depth in depth_noise_lib.DEPTH_NOISE_PRESETS:
    # The preset's values, not only its name, so retuning a preset never reuses a stale
    # cache (other depth modes keep their earlier keys).
    settings["depth_noise"] = dataclasses.asdict(depth_noise_lib.DEPTH_NOISE_PRESETS[cfg.depth])
  key = json.dumps(settings, sort_keys=True)
  digest = hashlib.sha1(key.encode()).hexdigest()[:12]
  root = cache_dir if cache_dir else default_cache_dir()
  path = os.path.join(root, f"{name}-{seed}-{digest}")
  if not os.path.exists(os.path.join(path, "sequence.npz")):
    seq = _generate(name, cfg, seed, noise, model, clip)
    os.makedirs(root, exist_ok=True)
    # Write to a temporary sibling and rename: concurrent users never see a partial cache.
    tmp = tempfile.mkdtemp(prefix=f".{name}-{seed}-", dir=root)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like any other
    try:
      io_lib.save_sequence(tmp, seq)
      try:
        os.rename(tmp, path)
      except OSError:  # another process finished first; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
      shutil.rmtree(tmp, ignore_errors=True)
      raise
  return io_lib.load_hsjax(path)
