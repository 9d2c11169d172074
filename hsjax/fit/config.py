"""What shapes a fit: :class:`FitConfig` (hashable; a static argument of the jitted step)."""

from __future__ import annotations

import dataclasses
import json

from hsjax import density as density_lib
from hsjax.forward import RenderSettings

POSE_GROUPS = ("global_orient", "body_pose", "transl", "betas")
FROZEN = "frozen"


# ------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitConfig:
  """Everything that shapes a fit (hashable; a static argument of the jitted step).

  The capacity and learning rates are tuned for the default synthetic sequence on 2 CPU
  cores (``BENCHMARKS.md``, section Fitting); the schedule (``steps``, ``warmup_steps``), the
  shape's refinement (``train_betas``, ``lr_betas``) and the depth handling (``align_depth``,
  ``depth_focal_power``, ``depth_edge_px``) on the dev split of the benchmark suite
  (``BENCHMARKS.md``, "Benchmark suite").
  """

  # --- schedule
  # Chosen on the benchmark's dev split (BENCHMARKS.md, "Dev split"): longer fits let poses
  # and avatar drift (900 steps: MPJPE -46 %, 1800: -40 %, 300: -53 %); 200 steps with the
  # lighter pose prior and smoothness and the firmer CAMEL term of DEFAULT_LOSSES gave the
  # highest novel-pose PSNR over the eight dev sequences (24.87 dB; 24.35 at 300 steps).
  steps: int = 200  # optimisation steps in total (warm-up included).
  warmup_steps: int = 33  # avatar-only steps (a sixth of the fit, as tuned at 900 / 150).
  # Steps after the warm-up during which the poses train (their cosine decay spans them);
  # afterwards only the avatar trains. 0: until the last step. (At 128², 900 steps let poses
  # and avatar drift together, see `steps`; at full resolution 600 steps with poses to the end
  # beat 600 with poses stopped after 250 on the dev split: BENCHMARKS.md, "Quality preset".)
  pose_steps: int = 0
  batch_frames: int = 4  # frames rendered per step (vmapped); <= frames in the sequence.
  # Fits run one after another on the same frames (each `steps` long, warm-up and schedules
  # included): every round after the first is the fit again with the HMR estimates replaced
  # by the poses the round before refined (its start and its pose prior's anchor), from a
  # fresh avatar. An avatar formed on the first, wrong poses bakes their errors in and the
  # poses then adapt to it; one formed on refined poses does not (BENCHMARKS.md, "Rounds").
  # A fit that refines no pose group runs one round (another would repeat it exactly).
  rounds: int = 1
  # --- avatar
  body_model: str = "default"  # body model for hsjax.body.load_body_model (name or path).
  num_gaussians: int = 2000  # avatar capacity N (static; density control works inside it).
  active_fraction: float = 0.75  # fraction of N active at start (the rest: densification room).
  sh_degree: int = 1  # SH degree of the avatar's colour (0: view-independent).
  learn_skinning: bool = False  # learn skinning weights (regularised towards SMPL's).
  nonrigid: bool = False  # pose-dependent non-rigid MLP (hsjax.nonrigid).
  background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # render/target background, RGB.
  mask_background: bool = True  # replace the image outside the person mask by `background`.
  # --- renderer
  # Integer factor by which images, masks, depth and intrinsics are reduced for fitting
  # (area averaging). 2 renders a quarter of the pixels; the avatar itself has no resolution.
  downsample: int = 2
  # Long side, pixels, that the fitted images may not exceed (0: no limit): the factor grows
  # beyond `downsample` to the smallest one that divides the image size and meets the limit
  # (fit_downsample), or with `person_crop` until the crop's long side is at most that.
  max_fit_size: int = 0
  # Fit a window around the person in each frame instead of the whole frame (hsjax.fit.crop):
  # one size for the sequence (the largest mask box widened by `person_crop_margin` of its
  # size on each side), placed per frame on the mask's box, with the principal point moved to
  # match. `downsample` and `max_fit_size` then apply to the crop: a small person in a large
  # frame is fitted at the frame's resolution for the cost of the person's pixels.
  person_crop: bool = False
  person_crop_margin: float = 0.15
  backend: str = "auto"  # rasteriser backend: auto | xla | pallas | reference.
  tile_capacity: int = 128  # Gaussians kept per 16x16 tile (overflow is counted).
  # Tiles a Gaussian is listed in: "ellipse" (those its alpha >= 1/255 ellipse reaches) or
  # "box" (its screen box, as 3DGS); the image differs only in tiles that overflow.
  tile_overlap: str = "ellipse"
  # --- which parameter groups train
  train_avatar: bool = True  # Gaussian parameters (those listed in avatar_lrs).
  train_global_orient: bool = True  # per-frame root rotation.
  train_body_pose: bool = True  # per-frame joint rotations.
  train_transl: bool = True  # per-frame root translation.
  # The shared shape, refined with the poses: HMR's betas are poor (the suite's hmr2_like
  # draws them 0.8 off per component). Chosen on the whole dev split (BENCHMARKS.md, "Dev
  # split"): at lr_betas 0.03 the mean novel-pose PSNR is the highest and MPJPE falls 54 %
  # instead of 52 %; on the headline sequences the novel-pose gain over the fixed-HMR-pose
  # avatar grows from +1.73 to +2.12 dB.
  train_betas: bool = True
  # --- learning rates (Adam)
  # Avatar group (hsjax.avatar.param_labels) -> Adam learning rate; groups not listed stay
  # fixed. 3DGS's rates, except means: 10x 3DGS's 1.6e-4, so that the avatar can follow
  # clothing; the CAMEL terms keep it from drifting off the body, which at this rate it
  # otherwise does (README, "CAMEL and depth").
  avatar_lrs: tuple[tuple[str, float], ...] = (
      ("means", 1.6e-3), ("quats", 1e-3), ("scales", 5e-3), ("opacity", 5e-2), ("sh", 2.5e-3),
      ("skinning", 1e-3), ("nonrigid", 1e-3))
  means_lr_final_fraction: float = 0.01  # means LR decays exponentially to this (3DGS).
  lr_global_orient: float = 1e-2  # radians / step (the scale of Adam's step).
  lr_body_pose: float = 1e-2  # radians / step.
  lr_transl: float = 1e-2  # metres / step.
  lr_betas: float = 0.03  # shape units / step (chosen with train_betas, above).
  pose_lr_final_fraction: float = 0.1  # pose LRs decay (cosine) to this by the last step.
  clip_norm: float = 1.0  # per-group global-norm gradient clipping (0 disables).
  # --- loss weights that override hsjax.losses.DEFAULT_LOSSES (or the `losses` argument)
  loss_weights: tuple[tuple[str, float], ...] = ()
  # --- density control (hsjax.density); 0 disables
  density: density_lib.DensityConfig = density_lib.DensityConfig()  # 3DGS thresholds.
  # Steps between densify-and-prune passes. Off by default: the default fit was tuned
  # without it (2000 Gaussians already cover a 128 px body); see BENCHMARKS.md, Fitting.
  densify_every: int = 0
  densify_from: int = 100  # first step at which density control may run.
  densify_until: int = 200  # no density control after this step (the default fit's last).
  # --- CAMEL reference vertices (hsjax.losses.camel_nearest_vertices)
  # Steps between exact searches of each Gaussian's nearest template vertex (canonical
  # space, outside the jitted step: ~70 ms a search at N = 2,000). 0: no search, the CAMEL
  # terms use each Gaussian's anchor vertex. See BENCHMARKS.md, CAMEL.
  camel_refresh_every: int = 50
  # --- unseen sides (hsjax.unseen)
  # Step after which the Gaussians the training camera never faced (frontal exposure below
  # `unseen_min_exposure` pixels of a 256² frame, scaled with the fitted frames' area) take the
  # colour of the seen side, mirrored through their body part's coronal plane; the fit then
  # goes on, so what the camera saw is fitted again. 0, or a step beyond `steps` (as with the
  # density control's steps): never. A person who never turns away otherwise shows a grey,
  # smeared back in views from behind.
  # Chosen on the dev split with the anchor tether (2026-12-05, BENCHMARKS.md, "Dev split").
  fill_unseen_at: int = 150
  unseen_min_exposure: float = 16.0  # hsjax.unseen.MIN_EXPOSURE
  # --- depth
  # Metric depth that came with intrinsics of its own (Sequence.depth_K, a monocular network's
  # estimate) is multiplied by (f_camera / f_depth) ** depth_focal_power and then unprojected
  # with the camera's K: a network's metric depth is proportional to the focal length it
  # assumed (Metric3D's canonical camera), so a known camera corrects part of its scale
  # error. 0 keeps the depth as given (with power 1 the unprojected x, y are unchanged).
  # Depth without intrinsics of its own (or with the camera's) is unaffected.
  depth_focal_power: float = 1.0
  # With metric depth, slide each frame's initial (HMR) body along the camera ray through its
  # pelvis so that its visible surface meets the observed depth (median over the person's
  # pixels; hsjax.fit.align). HMR's depth error is its largest.
  align_depth: bool = True
  # Depth within this many pixels (of the fitted frames) of the person's silhouette is dropped
  # (set invalid) for every depth term and the alignment. A monocular network smooths depth
  # across the silhouette, so there the person's depth is pulled towards the background and
  # the per-frame median that sets the root's distance is biased far (by 1.5-3 % on the dev
  # split). Chosen on dev (BENCHMARKS.md): 1 raises the mean novel-pose PSNR of the eight
  # sequences by 0.26 dB and the headline PA-MPJPE reduction from 49 to 53 %; 2 also strips
  # the thin limbs of depth.
  depth_edge_px: int = 1
  # --- frames
  # Host memory (GiB, per sequence) for prepared frames (fitted size, float32: 1.3 MB a frame
  # at 256² with depth). Frames beyond it are read and prepared again from the sequence each
  # time a step draws them (prefetched while the previous step runs); device memory holds
  # only the frames of one step either way.
  frame_cache_gb: float = 4.0
  # --- bookkeeping
  log_every: int = 10  # steps between history records / progress-bar refreshes.
  eval_every: int = 0  # steps between evaluation callbacks (0: only at the end).
  checkpoint_every: int = 200  # steps between checkpoints (when a directory is given).
  keep_checkpoints: int = 2  # checkpoints kept on disk.
  progress: bool = True  # show a tqdm progress bar.

  def __post_init__(self):
    if self.steps < 1:
      raise ValueError(f"FitConfig.steps must be >= 1, found {self.steps}")
    if not 0 <= self.warmup_steps <= self.steps:
      raise ValueError(f"FitConfig.warmup_steps must lie in [0, steps={self.steps}], found "
                       f"{self.warmup_steps}")
    if self.fill_unseen_at < 0:
      raise ValueError(f"FitConfig.fill_unseen_at must be >= 0, found {self.fill_unseen_at}")
    if self.pose_steps < 0:
      raise ValueError(f"FitConfig.pose_steps must be >= 0, found {self.pose_steps}")
    if self.rounds < 1:
      raise ValueError(f"FitConfig.rounds must be >= 1, found {self.rounds}")
    if self.batch_frames < 1:
      raise ValueError(f"FitConfig.batch_frames must be >= 1, found {self.batch_frames}")
    if self.num_gaussians < 1:
      raise ValueError(f"FitConfig.num_gaussians must be >= 1, found {self.num_gaussians}")
    if self.downsample < 1:
      raise ValueError(f"FitConfig.downsample must be an integer >= 1, found {self.downsample}")
    if self.max_fit_size < 0:
      raise ValueError(f"FitConfig.max_fit_size must be >= 0, found {self.max_fit_size}")
    if not 0.0 <= self.person_crop_margin <= 1.0:
      raise ValueError(f"FitConfig.person_crop_margin must lie in [0, 1], found "
                       f"{self.person_crop_margin}")
    if self.depth_edge_px < 0:
      raise ValueError(f"FitConfig.depth_edge_px must be >= 0, found {self.depth_edge_px}")
    if self.frame_cache_gb < 0:
      raise ValueError(f"FitConfig.frame_cache_gb must be >= 0, found {self.frame_cache_gb}")
    if len(self.background) != 3:
      raise ValueError(f"FitConfig.background must be 3 floats (RGB), found {self.background}")

  def fit_downsample(self, height: int, width: int) -> int:
    """The factor by which frames of ``height`` x ``width`` pixels are reduced for fitting:
    ``downsample``, or with ``max_fit_size`` the smallest factor >= it that divides both sides
    and leaves the long side at most ``max_fit_size``.

    Raises:
      ValueError: ``downsample`` does not divide the size, or no factor meets the limit.
    """
    if height % self.downsample or width % self.downsample:
      raise ValueError(f"FitConfig.downsample={self.downsample} must divide the image size "
                       f"{(width, height)}")
    if not self.max_fit_size:
      return self.downsample
    for factor in range(self.downsample, max(height, width) + 1):
      if not height % factor and not width % factor and max(height, width) <= (
          self.max_fit_size * factor):
        return factor
    raise ValueError(f"FitConfig.max_fit_size={self.max_fit_size}: no factor divides the image "
                     f"size {(width, height)} and reduces it that far")

  def crop_factor(self, height: int, width: int) -> int:
    """The factor by which person crops of ``height`` x ``width`` pixels are fitted:
    ``downsample``, or with ``max_fit_size`` the smallest factor >= it that leaves the long
    side at most ``max_fit_size`` (the crop's size is then rounded to a multiple of it)."""
    if not self.max_fit_size:
      return self.downsample
    return max(self.downsample, -(-max(height, width) // self.max_fit_size))

  @property
  def pose_end(self) -> int:
    """The step at which the poses stop training (``steps`` when they train to the end)."""
    if self.pose_steps == 0:
      return self.steps
    return min(self.warmup_steps + self.pose_steps, self.steps)

  @property
  def refines_poses(self) -> bool:
    """Whether any pose group trains (False: the avatar-only baseline)."""
    return (self.train_global_orient or self.train_body_pose or self.train_transl
            or self.train_betas)

  def avatar_only(self) -> FitConfig:
    """The same fit with every pose group frozen at the HMR estimates (the baseline)."""
    return dataclasses.replace(self, train_global_orient=False, train_body_pose=False,
                               train_transl=False, train_betas=False)

  @property
  def render_settings(self) -> RenderSettings:
    """How the fit renders its frames (background, backend, tile capacity)."""
    return RenderSettings(background=self.background, backend=self.backend,
                          tile_capacity=self.tile_capacity, tile_overlap=self.tile_overlap)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)


# Fields that may differ between a checkpoint and the fit resuming from it (none changes a
# step; `rounds`: a finished fit resumed with more rounds goes on with the next one).
RESUMABLE_FIELDS = ("frame_cache_gb", "progress", "log_every", "eval_every",
                    "checkpoint_every", "keep_checkpoints", "rounds")


# ------------------------------------------------------------------------------------------
# Presets


# The pose and CAMEL weights of DEFAULT_LOSSES before the dev split chose lighter pose terms
# and a firmer CAMEL term for the 200-step fast fit (2026-12-05): the quality preset and the
# video fit were chosen with these and keep them.
FORMER_POSE_WEIGHTS = (("pose_prior", 1.0), ("smooth_joints", 10.0),
                       ("camel_point_to_mesh", 10.0))


def _quality() -> FitConfig:
  """The quality preset, chosen on the dev split (BENCHMARKS.md, "Quality preset")."""
  # The shape is refined at the fast preset's rate (0.03): on the same dev sequences it beat
  # the 0.001 the preset was first chosen with on every image and pose number. The warm-up and
  # the pose and CAMEL weights are those it was chosen with (the fast preset's until
  # 2026-12-05). With them, the anchor tether of DEFAULT_LOSSES and the unseen sides coloured
  # 100 steps before the end (three dev sequences, 2026-12-05: novel pose +1.3 dB, novel view
  # +0.6 dB, MPJPE -6 mm; BENCHMARKS.md, "The anchor tether and the unseen sides"). The
  # colour has no view-dependent part (SH degree 0): one camera that rarely sees a body part
  # from more than one side cannot fit one, and what it fits shows as wrong colour in other
  # views (three dev sequences: novel view +0.54 dB, novel pose +0.07 dB; BENCHMARKS.md,
  # "View-independent colour and person crops"). Two rounds: the second fits a fresh avatar
  # from the poses the first refined (three dev sequences: novel pose +1.13 dB, novel view
  # +0.12 dB, MPJPE -4.0 mm; BENCHMARKS.md, "Rounds"). The root is placed for the skin under
  # the centres the avatar sinks below it (depth_root_skin in place of depth_root; three dev
  # sequences: novel view +0.09 dB, novel pose +0.04 dB, MPJPE unchanged; BENCHMARKS.md, "The
  # avatar under the skin"). The 3D depth term pulls the skin, not the sunk centres, to the
  # observed surface (as DEFAULT_LOSSES' since 2026-12-06; three dev sequences with exact depth:
  # novel view +0.23 dB, novel pose +0.25 dB, MPJPE -1.8 mm; with their monocular depth
  # unchanged), and two-sided: the observed points also pull their nearest seen centres
  # (depth_3d_relative_skin_two_sided; the same sequences: novel view +0.21 dB, novel pose
  # +0.11 dB, MPJPE -2.0 mm; BENCHMARKS.md, "The skin to the observed surface"). Eight frames a
  # step instead of four: each frame's pose is drawn, and refined, twice as often (the same
  # sequences: novel view +0.37 dB, novel pose +0.17 dB, MPJPE -0.6 mm, in 1.4x the fit time;
  # BENCHMARKS.md, "Eight frames a step").
  return FitConfig(downsample=1, max_fit_size=512, steps=600, warmup_steps=50,
                   batch_frames=8, train_betas=True, fill_unseen_at=500, sh_degree=0, rounds=2,
                   loss_weights=(*FORMER_POSE_WEIGHTS, ("depth_root", 0.0),
                                 ("depth_root_skin", 0.5), ("depth_3d_relative_skin", 0.0),
                                 ("depth_3d_relative_skin_two_sided", 1.0)))


# Named configurations. "fast" is FitConfig's defaults (the demo's). "quality" fits at the
# sequence's full resolution (long side up to 512 px), twice as long, and refines the shape
# too: on the dev split, the avatar's detail is limited by the refined poses, not by its
# number of Gaussians (more Gaussians, density control growing the avatar to ~9,000 and longer
# avatar training did not raise novel-view or novel-pose PSNR there; on the true poses they
# would), so the preset spends its time on resolution and on the poses.
PRESETS = {"fast": FitConfig, "quality": _quality}


def preset(name: str, **overrides) -> FitConfig:
  """The named configuration (``"fast"`` or ``"quality"``) with ``overrides`` applied.

  Raises:
    ValueError: an unknown name, or overrides the configuration rejects.
  """
  if name not in PRESETS:
    raise ValueError(f"unknown fit preset {name!r}; valid: {sorted(PRESETS)}")
  return dataclasses.replace(PRESETS[name](), **overrides)
