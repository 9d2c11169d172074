"""Depth terms: metric per-pixel L1, scale-and-shift-invariant L1, and the method's 3D Chamfer."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hsjax import body as body_lib
from hsjax import camel
from hsjax import rendering
from hsjax.losses.base import EPS
from hsjax.losses.base import Term
from hsjax.losses.camel import camel_nearest_vertices


def _depth_weights(render, frame) -> jax.Array:
  """[F, H, W] pixels where both depths are defined and the person is (mask > 0.5)."""
  valid = (frame.depth > 0) & (frame.mask > 0.5) & (render.alpha > 0.5)
  return valid.astype(render.depth.dtype)


def depth_l1(render, frame, params, ctx) -> jax.Array:
  """Metric depth: masked L1 between rendered and observed depth, metres.

  Averaged over the pixels inside the person mask where the observation is valid and the
  render covers the pixel (alpha > 0.5; elsewhere the expected depth of a few faint
  Gaussians is meaningless and the mask term takes over). This is the term that pins the
  root translation along the optical axis, which HMR estimates worst.
  Zero when the sequence has no depth or only relative depth.
  """
  del params, ctx
  w = _depth_weights(render, frame)
  err = jnp.sum(w * jnp.abs(render.depth - frame.depth)) / (jnp.sum(w) + EPS)
  return frame.depth_weight * frame.depth_is_metric * err


def _order_keys(x: jax.Array) -> jax.Array:
  """uint32 keys ordered as ``jnp.sort`` orders float32 ``x`` on CPU: -0 and subnormals
  equal to 0 (XLA flushes them), NaN last."""
  x = x.astype(jnp.float32)
  flushed = jnp.where(jnp.abs(x) < jnp.finfo(jnp.float32).tiny, 0.0, x)
  bits = jax.lax.bitcast_convert_type(flushed, jnp.int32)
  magnitude = bits & jnp.int32(0x7FFFFFFF)
  signed = jnp.where(bits < 0, -magnitude, magnitude)  # monotone in x
  signed = jnp.where(jnp.isnan(x), jnp.int32(0x7FFFFFFF), signed)
  return jax.lax.bitcast_convert_type(signed ^ jnp.int32(-2**31), jnp.uint32)


def _kth_smallest_index(x: jax.Array, k: jax.Array) -> jax.Array:
  """Index of ``argsort(x, stable=True)[k]`` for x [M] and 0 <= k < M, without a sort.

  A bisection over the order keys finds the k-th smallest key in 32 counting passes
  (O(32 M); XLA's CPU sort of a 16k-pixel frame costs about ten times more); among the
  entries with that key the one of rank ``k - #smaller`` in index order is the one a stable
  sort puts at position k.
  """
  keys = _order_keys(x)

  def halve(_, bounds):
    lo, hi = bounds  # the answer lies in [lo, hi]
    mid = lo + (hi - lo) // 2
    enough = jnp.sum(keys <= mid) > k
    return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

  key, _ = jax.lax.fori_loop(0, 32, halve, (jnp.uint32(0), jnp.uint32(2**32 - 1)))
  rank = k - jnp.sum(keys < key)
  tie = keys == key
  nth = tie & (jnp.cumsum(tie) == rank + 1)
  return jnp.argmax(nth)


def _masked_median(x: jax.Array, weight: jax.Array) -> jax.Array:
  """Median of ``x`` [H, W] over the pixels with ``weight > 0``; 0 when there are none.

  The lower median (the ``(count - 1) // 2``-th smallest, ties in pixel order). Differentiable
  like any order statistic: the gradient reaches the selected pixel. The pixel is found on
  values the gradient does not pass through and then picked from ``x``, so the one search is
  shared (XLA's common-subexpression pass) between the terms that differentiate the offset
  and those that stop its gradient."""
  count = jnp.sum(weight > 0)
  keys = jax.lax.stop_gradient(jnp.where(weight > 0, x, jnp.inf)).ravel()
  pick = _kth_smallest_index(keys, jnp.maximum((count - 1) // 2, 0))
  return jnp.where(count > 0, x.ravel()[pick], 0.0)


def depth_offset(render, frame) -> jax.Array:
  """[F] per-frame median of rendered minus observed depth over the person, metres.

  The part of the depth residual that a move of the whole body along the camera axis
  removes. A monocular network's metric scale error (several per cent, tens of centimetres
  at a few metres) shows up here, not in the shape of the residual.
  """
  w = _depth_weights(render, frame)
  return jax.vmap(_masked_median)(render.depth - frame.depth, w)


def depth_relative_l1(render, frame, params, ctx) -> jax.Array:
  """Metric depth with each frame's offset removed: the masked L1 of the residual minus its
  median (:func:`depth_offset`), metres.

  Exactly invariant to moving the body along the camera axis, so it constrains the depth
  *shape* of the body (a limb bent towards the camera) and leaves the distance to
  :func:`depth_root`. With the absolute L1 (:func:`depth_l1`) a biased depth scale bends
  the limbs towards the observed surface wherever the image terms hold the root back.
  Zero without metric depth.
  """
  del params, ctx
  w = _depth_weights(render, frame)
  residual = render.depth - frame.depth - depth_offset(render, frame)[:, None, None]
  err = jnp.sum(w * jnp.abs(residual)) / (jnp.sum(w) + EPS)
  return frame.depth_weight * frame.depth_is_metric * err


def skin_depth_change(render, params, ctx) -> jax.Array:
  """[F, H, W] the change of the rendered depth (metres, <= 0 where sunk centres face the
  camera) that lifting the centres under the skin onto it (:func:`_lift_onto_skin`) makes:
  each Gaussian's camera-axis lift, blended with the render's own weights (the same Gaussians
  rendered again with the lift as their one colour channel, ``ctx.render_settings``, divided
  by the alpha). 0 where nothing was hit. Not differentiated.
  """
  sg = jax.lax.stop_gradient
  points, normals = _reference_surface(params, ctx)
  change = _camera_axis_part(ctx, _lift_onto_skin(ctx.gaussians.means, points, normals))
  gaussians = jax.tree.map(sg, ctx.gaussians).replace(colors=change[..., None], sh=None)
  settings = ctx.render_settings

  def blended(g, camera):
    return rendering.render(g, camera, background=jnp.zeros((1,)), backend=settings.backend,
                            tile_capacity=settings.tile_capacity,
                            tile_overlap=settings.tile_overlap).rgb[..., 0]

  total = jax.vmap(blended)(gaussians, jax.tree.map(sg, ctx.camera))
  alpha = sg(render.alpha)
  hit = render.depth > 0  # where the render reports a depth (alpha above its threshold)
  return sg(jnp.where(hit, total / jnp.where(hit, alpha, 1.0), 0.0))


def depth_relative_skin_l1(render, frame, params, ctx) -> jax.Array:
  """:func:`depth_relative_l1` of the skin's rendered depth: the render's depth plus
  :func:`skin_depth_change` (not differentiated; the gradient reaches the centres as the
  plain term's does).

  The fit sinks the centres of thin parts deepest under the skin (feet, shins, forearms:
  6–9 mm, the torso's 0.3 mm), and the rendered depth is the centres' depth: with the offset
  (set by the torso) removed, the plain term pulls those parts that much towards the camera.
  """
  skin = render.replace(depth=render.depth + skin_depth_change(render, params, ctx))
  return depth_relative_l1(skin, frame, params, ctx)


def _root_distance(offset, render, frame, params, ctx) -> jax.Array:
  """Mean over frames of ``|offset|`` [F] (metres), its gradient reaching only the root
  translation along each frame's camera axis (a move ``δ`` along the axis changes every
  rendered depth by ``δ``, so the offset's derivative along it is 1)."""
  sg = jax.lax.stop_gradient
  axis = ctx.camera.world_to_cam[:, 2, :3]  # [F, 3] camera z axis in world coordinates
  along = jnp.sum(axis * params.poses.transl[frame.index], -1)  # [F]
  offset = sg(offset) + along - sg(along)
  has = jnp.sum(_depth_weights(render, frame), (1, 2)) > 0
  err = jnp.sum(jnp.where(has, jnp.abs(offset), 0.0)) / (jnp.sum(has) + EPS)
  return frame.depth_weight * frame.depth_is_metric * err


def depth_root(render, frame, params, ctx) -> jax.Array:
  """Metric depth for the root translation only: mean over frames of |depth offset|, metres.

  Its value is the per-frame :func:`depth_offset`; its gradient reaches only the root
  translation, along each frame's camera axis. Articulation never absorbs the observed
  depth's offset; that is :func:`depth_relative_l1`'s job, for the shape. Zero without
  metric depth.
  """
  return _root_distance(depth_offset(render, frame), render, frame, params, ctx)


def depth_root_skin(render, frame, params, ctx) -> jax.Array:
  """:func:`depth_root` with the rendered surface moved onto the skin: the offset is
  :func:`depth_offset` plus :func:`sunk_centres_depth`, metres.

  Flat Gaussians tangent to a curved limb stand out of it, so the fit sinks their centres a
  few millimetres under the skin to draw its edge. Placed by the rendered depth alone, the
  body then stands that much nearer the camera than the surface it shows, and its unseen back
  with it. Zero without metric depth.
  """
  offset = depth_offset(render, frame) + sunk_centres_depth(render, params, ctx)
  return _root_distance(offset, render, frame, params, ctx)


def align_scale_shift(pred: jax.Array, target: jax.Array, weight: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
  """Least-squares ``(scale, shift)`` with ``scale * pred + shift ≈ target`` on ``weight``.

  Args:
    pred, target, weight: [H, W] (one frame).

  Returns:
    ``(scale [], shift [])``; ``(1, 0)`` when fewer than two weighted pixels (or no depth
    variation) make the system singular.
  """
  # Normal equations of min_{s,b} sum w (s p + b - t)^2 (MiDaS, Ranftl et al. 2020, eq. 4).
  sw = jnp.sum(weight)
  sp, st = jnp.sum(weight * pred), jnp.sum(weight * target)
  spp, spt = jnp.sum(weight * pred * pred), jnp.sum(weight * pred * target)
  det = sw * spp - sp * sp
  ok = det > 1e-8 * jnp.maximum(sw * sw, 1.0)
  safe_det = jnp.where(ok, det, 1.0)
  scale = jnp.where(ok, (sw * spt - sp * st) / safe_det, 1.0)
  shift = jnp.where(ok, (spp * st - sp * spt) / safe_det, 0.0)
  return scale, shift


def depth_ssi(render, frame, params, ctx) -> jax.Array:
  """Scale-and-shift-invariant depth for monocular (relative) depth maps.

  Per frame, the rendered depth is aligned to the observation with the least-squares scale
  and shift inside the mask (:func:`align_scale_shift`), then the masked L1 is taken, in the
  observation's units. The alignment is differentiated through, so the term is exactly
  invariant to an affine change of the rendered depth: it constrains the *shape* of the
  body's depth (limb ordering, bending towards the camera), not its distance.
  """
  del params, ctx
  w = _depth_weights(render, frame)
  scale, shift = jax.vmap(align_scale_shift)(render.depth, frame.depth, w)
  aligned = scale[:, None, None] * render.depth + shift[:, None, None]
  err = jnp.sum(w * jnp.abs(aligned - frame.depth)) / (jnp.sum(w) + EPS)
  return frame.depth_weight * err


# Occlusion tolerance of the visibility test, metres (visible_gaussians).
SEEN_MARGIN = 0.03


def _reference_surface(params, ctx) -> tuple[jax.Array, jax.Array]:
  """Each Gaussian's reference vertex on the posed body (``camel_nearest_vertices``), not
  differentiated: its position and unit normal, [F, N, 3] each."""
  vertices = jax.lax.stop_gradient(ctx.body.vertices)
  normals = body_lib.vertex_normals(vertices, ctx.body_model.faces)
  nearest = camel_nearest_vertices(params, ctx)
  return vertices[:, nearest], normals[:, nearest]


def visible_gaussians(render, params, ctx, *, margin: float = SEEN_MARGIN,
                      min_facing: float = 0.0) -> jax.Array:
  """[F, N] float: 1 for the Gaussians each camera sees, 0 for the others.

  A Gaussian is seen when it projects inside the image (``render.visible``), its reference
  vertex's posed normal faces the camera (the cosine between the normal and the direction
  to the camera above ``min_facing``), and its centre is no more than ``margin`` metres
  behind the rendered depth at its pixel (self-occlusion: the torso behind an arm). The
  test uses the render itself, not the observation, so it holds under a biased depth map;
  it is a selection, not differentiated.
  """
  _, normals = _reference_surface(params, ctx)
  return _seen(render, ctx, normals, margin=margin, min_facing=min_facing)


def _seen(render, ctx, n, *, margin: float, min_facing: float) -> jax.Array:
  """:func:`visible_gaussians` given the reference normals ``n`` [F, N, 3]."""
  sg = jax.lax.stop_gradient
  camera = ctx.camera
  means = sg(ctx.gaussians.means)  # [F, N, 3]
  rot, t = camera.world_to_cam[:, :3, :3], camera.world_to_cam[:, :3, 3]
  centre = -jnp.einsum("fji,fj->fi", rot, t)  # camera centre R^T (-t), world
  to_camera = centre[:, None] - means
  # The normals are unit vectors: the cosine's threshold scales with the distance alone.
  facing = jnp.sum(n * to_camera, -1) > min_facing * jnp.linalg.norm(to_camera, axis=-1)
  z = jnp.einsum("fij,fnj->fni", rot, means)[..., 2] + t[:, None, 2]
  h, w = render.depth.shape[1:]
  px = jnp.clip(jnp.floor(sg(render.means2d)).astype(jnp.int32), 0,
                jnp.array([w - 1, h - 1]))
  rendered = jax.vmap(lambda d, p: d[p[:, 1], p[:, 0]])(sg(render.depth), px)
  covered = jax.vmap(lambda a, p: a[p[:, 1], p[:, 0]])(sg(render.alpha), px) > 0.5
  unoccluded = jnp.where(covered, z <= rendered + margin, True)
  return (render.visible & facing & unoccluded).astype(jnp.float32)


def _lift_onto_skin(means, points, normals) -> jax.Array:
  """[F, N, 3] the move along the reference normal that puts each centre ``means`` [F, N, 3]
  lying under its reference vertex's tangent plane onto it; 0 for centres on or outside the
  skin (clothing is drawn there). ``points``, ``normals``: :func:`_reference_surface`. Not
  differentiated."""
  means = jax.lax.stop_gradient(means)
  below = jax.nn.relu(-jnp.sum((means - points) * normals, -1))
  return below[..., None] * normals


def sunk_centres_depth(render, params, ctx) -> jax.Array:
  """[F] the change of depth (metres, <= 0 where the sunk centres face the camera) that lifts
  the seen centres lying under the skin onto it: per frame, the mean over the Gaussians the
  camera sees (:func:`visible_gaussians`) of the camera-axis component of the move along the
  reference normal from a centre to its reference vertex's tangent plane (0 for centres on
  or outside the skin: clothing is drawn there). Not differentiated.
  """
  points, normals = _reference_surface(params, ctx)
  return _sunk_depth(render, ctx, normals, _lift_onto_skin(ctx.gaussians.means, points, normals))


def _sunk_depth(render, ctx, normals, lift, seen=None) -> jax.Array:
  """:func:`sunk_centres_depth` given the reference normals and ``lift``
  (:func:`_lift_onto_skin`), [F, N, 3] each, and the seen set when it is already at hand
  (``_seen`` with ``SEEN_MARGIN`` and no facing threshold)."""
  if seen is None:
    seen = _seen(render, ctx, normals, margin=SEEN_MARGIN, min_facing=0.0)
  change = _camera_axis_part(ctx, lift)
  return jnp.sum(seen * change, 1) / jnp.maximum(jnp.sum(seen, 1), 1.0)


def _camera_axis_part(ctx, moves) -> jax.Array:
  """[F, N] the component of world-space ``moves`` [F, N, 3] along each frame's camera axis:
  the change of camera depth they make, metres."""
  axis = ctx.camera.world_to_cam[:, 2, :3]  # [F, 3] camera z axis in world coordinates
  return jnp.einsum("fj,fnj->fn", axis, moves)


def make_depth_chamfer(beta: float = 0.02, stride: int = 1, max_points: int = 512,
                       max_means: int = 1024, margin: float = SEEN_MARGIN,
                       remove_offset: bool = False, min_facing: float = 0.0,
                       onto_skin: bool = False, two_sided: bool = False) -> Term:
  """The method's 3D depth term: one-sided Huber Chamfer of visible centres to the depth.

  Per minibatch frame, ``hsjax.camel.depth_chamfer`` from the centres of the Gaussians the
  camera sees (:func:`visible_gaussians`) to the observed depth map inside the mask,
  unprojected with ``frame.depth_K`` (the intrinsics the depth comes with: a monocular
  network's own estimate can differ from the camera's). Only the visible side is used
  because a depth map shows nothing of the back: pulling every Gaussian to the observed
  surface would flatten the avatar onto its front. Zero without metric depth.

  Args:
    beta: Huber transition, metres.
    stride: every ``stride``-th depth row and column is unprojected.
    max_points: at most this many valid depth pixels per frame, a random subset drawn anew
      every step (``hsjax.camel.sample_valid``).
    max_means: at most this many of the visible Gaussians per frame, likewise (a third of
      the avatar faces the camera unoccluded). The search costs max_means × max_points per
      frame.
    margin: occlusion tolerance of :func:`visible_gaussians`, metres.
    remove_offset: move each frame's observed depth by its :func:`depth_offset` (not
      differentiated) first, so that the term constrains the shape of the visible surface
      and leaves the distance to :func:`depth_root`.
    min_facing: the centres pulled are those whose surface normal makes a cosine above this
      with the direction to the camera (:func:`visible_gaussians`). A depth map samples a
      surface seen at a grazing angle (a limb's sides) only at its pixel centres, inside the
      silhouette, so the one-sided Chamfer pulls the grazing centres towards the camera and
      inwards; a threshold leaves them out.
    onto_skin: the centres lying under the skin are first lifted onto it (not differentiated:
      the pull still moves the centres, through the pose), and the offset removed is the
      skin's (:func:`depth_offset` plus :func:`sunk_centres_depth`), as
      :func:`depth_root_skin` places the root. The fit sinks the centres of thin parts
      deepest (feet, shins, forearms: 6–9 mm, the torso's 0.3 mm), so pulled to the observed
      surface by their centres those parts stand nearer the camera than the torso.
    two_sided: also pull, from each observed point, the nearest seen centre
      (``hsjax.camel.depth_chamfer``'s ``two_sided``).
  """

  def depth_chamfer(render, frame, params, ctx) -> jax.Array:
    points, normals = _reference_surface(params, ctx)
    seen = _seen(render, ctx, normals, margin=margin, min_facing=min_facing)
    means, depth = ctx.gaussians.means, frame.depth
    if onto_skin:
      lift = _lift_onto_skin(means, points, normals)
      means = means + lift
    if remove_offset:
      offset = depth_offset(render, frame)
      if onto_skin:  # sunk_centres_depth, from the pieces computed above
        default_test = margin == SEEN_MARGIN and min_facing == 0.0
        offset = offset + _sunk_depth(render, ctx, normals, lift,
                                      seen if default_test else None)
      depth = jnp.where(depth > 0, depth + jax.lax.stop_gradient(offset)[:, None, None], 0.0)
    step_key = jax.random.fold_in(jax.random.key(0), ctx.step)
    keys = jax.vmap(lambda i: jax.random.fold_in(step_key, i))(frame.index)
    per_frame = jax.vmap(lambda m, d, msk, k, w2c, wt, key: camel.depth_chamfer(
        m, d, msk, k, w2c, beta=beta, means_weights=wt, stride=stride, max_points=max_points,
        max_means=max_means, key=key, two_sided=two_sided))(
            means, depth, frame.mask, frame.depth_K, ctx.camera.world_to_cam, seen, keys)
    return frame.depth_weight * frame.depth_is_metric * jnp.mean(per_frame)

  return depth_chamfer
