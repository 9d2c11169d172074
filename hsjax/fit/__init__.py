"""Joint avatar + pose optimisation (HumanSplatHMR's loop).

One optimisation step (:func:`hsjax.fit.step.train_step`, a single ``jax.jit``):

1. take a minibatch of F frames (an epoch-wise random permutation of the valid frames, so
   every frame is seen once per epoch; the order depends only on the fit key and the step,
   so the host reads and prepares the next step's frames while a step runs, and only those
   frames are on the device: :class:`~hsjax.fit.data.FrameSource`);
2. run the forward stages (``hsjax.forward``): pose them with SMPL, skin the canonical
   Gaussians into each frame and render them (vmapped over frames);
3. evaluate the loss mapping ``name -> (weight, term)`` (``hsjax.losses``);
4. differentiate with respect to *both* the avatar and the per-frame poses and update them
   with one Optax transformation that gives every parameter group its own learning rate,
   schedule and gradient clipping (``optax.multi_transform``).

Pose parameterisation: per frame ``global_orient [3]`` and ``body_pose [23, 3]`` in
**axis-angle**, ``transl [3]`` in metres, and one shared ``betas [B]``, all initialised from
the HMR estimates (an :class:`hsjax.body.SMPLParams`). Why axis-angle and not 6D: refinement
makes small corrections (a few degrees to tens of degrees) around the HMR pose, far from the
angle-π wrap where axis-angle is discontinuous; it is minimal (no redundant coordinates whose
norm Adam would also move), its gradient is finite at zero (``hsjax.rotations``), a learning
rate means radians per step, and the prior "stay near HMR" is a plain squared difference.
6D's advantage, continuity over all of SO(3), matters for regressing arbitrary rotations,
not for polishing a good initial guess.

Schedule: for ``warmup_steps`` only the avatar trains (the pose groups' updates are masked
with ``optax.transforms.conditionally_mask``, which also freezes their Adam moments), so the
Gaussians first explain the images at the HMR poses; then avatar and poses train jointly,
until the last step or for ``pose_steps`` steps, after which only the avatar trains. With
``rounds`` > 1 the fit is run again, from a fresh avatar, with the refined poses in place of
the HMR estimates (its start and its pose prior's anchor), so that the final avatar is not
formed on the first, wrong poses. Named configurations: :func:`preset` (``"fast"``, the
defaults; ``"quality"``: full resolution, a longer schedule in two rounds, the shape refined
too).
Density control (``hsjax.density``; off by default, see ``FitConfig.densify_every``) runs
every ``densify_every`` steps *outside* the jitted step, on fixed-capacity arrays, so it never
retraces. So does the search of each Gaussian's nearest template vertex for the CAMEL terms
(every ``camel_refresh_every`` steps). The temporal terms see the joints of every frame each
step (posing all T frames' joints is cheap), not only the minibatch's.

Checkpoints (``hsjax.io.checkpoint``) hold the complete state (parameters, optimiser state, step,
density statistics, history); every random draw is ``fold_in(key, step)``, so a fit killed
and resumed from its last checkpoint ends bit for bit where an uninterrupted fit ends.
A non-finite loss stops the fit with :class:`FitDivergedError` naming the term and the step;
no checkpoint is written for a non-finite state, so the last good one stays on disk.

Many subjects: :func:`fit_many` runs the same step under ``jax.vmap`` over a leading subject
axis S (equal capacities: Gaussians, image size; sequences of different lengths are padded to
the longest and the padding frames are never sampled nor smoothed), optionally sharded over
the ``"subject"`` axis of a ``jax.sharding.Mesh``.

Usage::

  import hsjax
  from hsjax.data import synthetic_sequence

  sequence = synthetic_sequence("default", seed=0, hmr_noise="hmr2_like")
  result = hsjax.fit(sequence, hsjax.FitConfig(), key=jax.random.key(0),
                     checkpoint_dir="runs/ckpt")
  result.poses  # refined SMPLParams; result.avatar: the trained hsjax.avatar.Avatar
  baseline = hsjax.fit(sequence, hsjax.FitConfig().avatar_only(), key=jax.random.key(0))

Modules: :mod:`~hsjax.fit.config` (:class:`FitConfig`), :mod:`~hsjax.fit.data` (the host
edge: :class:`FrameSource`, :func:`prepare_data`), :mod:`~hsjax.fit.crop` (windows around
the person, ``FitConfig.person_crop``), :mod:`~hsjax.fit.step` (the pure step) and
:mod:`~hsjax.fit.loop` (the loop, :func:`fit`, :func:`fit_many`). The package itself is
callable as :func:`fit`: ``hsjax.fit(sequence, config, key=...)`` runs a fit and
``hsjax.fit.FitConfig`` names the configuration, so the function and the package share the
name without one hiding the other.
"""

import sys
import types

from hsjax.fit.config import FORMER_POSE_WEIGHTS
from hsjax.fit.config import FitConfig
from hsjax.fit.config import PRESETS
from hsjax.fit.config import preset
from hsjax.fit.data import FitData
from hsjax.fit.data import FrameBatch
from hsjax.fit.data import FrameSource
from hsjax.fit.data import prepare_data
from hsjax.fit.loop import FitDivergedError
from hsjax.fit.loop import FitProgress
from hsjax.fit.loop import FitResult
from hsjax.fit.loop import fit
from hsjax.fit.loop import fit_many
from hsjax.fit.loop import pose_error_callback
from hsjax.fit.step import FitParams
from hsjax.fit.step import FitState
from hsjax.fit.step import init_state
from hsjax.fit.step import make_optimizer
from hsjax.fit.step import resolve_losses
from hsjax.fit.step import step_frames
from hsjax.fit.step import train_step

__all__ = [
    "FORMER_POSE_WEIGHTS",
    "FitConfig",
    "FitData",
    "FitDivergedError",
    "FitParams",
    "FitProgress",
    "FitResult",
    "FitState",
    "FrameBatch",
    "FrameSource",
    "PRESETS",
    "fit",
    "fit_many",
    "init_state",
    "make_optimizer",
    "pose_error_callback",
    "preset",
    "prepare_data",
    "resolve_losses",
    "step_frames",
    "train_step",
]


class _CallableFitModule(types.ModuleType):
  """This package, callable as :func:`hsjax.fit.fit`."""

  def __call__(self, *args, **kwargs) -> FitResult:
    return fit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableFitModule
