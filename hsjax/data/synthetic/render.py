"""A triangle-mesh z-buffer renderer in numpy, independent of the Gaussian rasteriser.

The synthetic benchmark must not be rendered by the renderer that fits it (an avatar would
then fit images of its own making), so this module shares no code with ``kernels/``. It is a
plain scan-converting rasteriser:

1. vertices go to the OpenCV camera frame and are projected with ``K`` scaled by the
   supersampling factor ``s`` (sub-pixel ``(i, j)`` of the ``s``-times larger image has its
   centre at ``((j + 0.5) / s, (i + 0.5) / s)`` in the original pixel coordinates, the
   3DGS / gsplat convention of :mod:`hsjax.camera`);
2. each triangle is tested against the sub-pixel centres of its bounding box. Triangles are
   grouped by bounding-box size (powers of two), so every group is one dense, vectorised
   ``[n, S*S]`` edge-function evaluation; a pixel centre is inside when all three
   barycentrics are >= 0 (shared edges may be claimed twice, never zero times);
3. the z-buffer is a sort: candidates are ordered by (pixel, depth) and the first of each
   pixel wins;
4. attributes are interpolated with perspective-correct barycentrics, and depth is the
   camera-space ``z`` (not the distance along the ray) of the visible surface;
5. the ``s x s`` sub-pixels are box-filtered: the colour is the mean over sub-pixels of the
   surface or background colour (anti-aliased edges), the mask is the covered fraction, and
   the depth is the mean ``z`` of the covered sub-pixels where at least half are covered, 0
   elsewhere. So ``depth > 0`` exactly where ``mask >= 0.5``.

Why numpy and not ``jax.jit``: the number of candidate (triangle, pixel) pairs changes with
the pose and the camera, which under ``jit`` would mean a fixed worst-case capacity (wasteful
on CPU) or a retrace per frame; numpy's sort-based z-buffer needs neither, and a 26k-triangle
body at 512 x 512 sub-pixels renders in a few tens of milliseconds.

Triangles with a vertex closer than ``near`` to the camera are dropped, not clipped (the
subject is always metres away in the synthetic benchmark).
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from hsjax import body as body_lib
from hsjax.camera import Camera

# Bounding-box size groups (sub-pixels); a box larger than the last is split off into its
# own group of exactly its size.
_BOX_SIZES = (1, 2, 4, 8, 16, 32, 64)


def _camera_arrays(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
  k = np.asarray(camera.K, np.float64)
  w2c = np.asarray(camera.world_to_cam, np.float64)
  if k.shape != (3, 3) or w2c.shape != (4, 4):
    raise ValueError(f"render_mesh: expects one camera (K [3, 3], world_to_cam [4, 4]); found "
                     f"K {k.shape}, world_to_cam {w2c.shape}")
  return k, w2c


def rasterize(vertices: np.ndarray, faces: np.ndarray, camera: Camera, *, supersample: int = 1,
              near: float = 0.05, cull_backfaces: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Visibility of a triangle mesh at the (supersampled) pixel centres.

  Args:
    vertices: [V, 3] world positions, metres.
    faces: [F, 3] vertex indices, counter-clockwise seen from outside.
    camera: one camera (``K [3, 3]``, ``world_to_cam [4, 4]``).
    supersample: sub-pixels per pixel along each axis.
    near: triangles with a vertex at camera ``z < near`` (metres) are dropped.
    cull_backfaces: skip triangles facing away from the camera (exact for closed meshes).

  Returns:
    ``(face_id [h, w] int64, -1 where empty; bary [h, w, 3] perspective-correct
    barycentrics of the visible triangle; depth [h, w] camera z in metres, 0 where empty)``
    with ``h = supersample * camera.height`` and ``w = supersample * camera.width``.
  """
  k, w2c = _camera_arrays(camera)
  s = int(supersample)
  height, width = camera.height * s, camera.width * s
  vertices = np.asarray(vertices, np.float64)
  faces = np.asarray(faces, np.int64)
  p_cam = vertices @ w2c[:3, :3].T + w2c[:3, 3]
  z = p_cam[:, 2]
  k_s = np.diag([s, s, 1.0]) @ k
  safe_z = np.where(np.abs(z) > 1e-12, z, 1e-12)
  uv = (p_cam @ k_s.T)[:, :2] / safe_z[:, None]

  tri_z = z[faces]  # [F, 3]
  keep = np.all(tri_z > near, axis=1)
  if cull_backfaces:
    a, b, c = p_cam[faces[:, 0]], p_cam[faces[:, 1]], p_cam[faces[:, 2]]
    normal = np.cross(b - a, c - a)
    keep &= np.einsum("fd,fd->f", normal, -a) > 0  # the camera is at the origin
  tri_uv = uv[faces]  # [F, 3, 2]
  lo = np.ceil(tri_uv.min(axis=1) - 0.5).astype(np.int64)  # first pixel centre inside the box
  hi = np.floor(tri_uv.max(axis=1) - 0.5).astype(np.int64)
  lo = np.maximum(lo, 0)
  hi = np.minimum(hi, [width - 1, height - 1])
  keep &= np.all(hi >= lo, axis=1)
  # Signed doubled area; degenerate (edge-on) triangles cover nothing.
  e1 = tri_uv[:, 1] - tri_uv[:, 0]
  e2 = tri_uv[:, 2] - tri_uv[:, 0]
  area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
  keep &= np.abs(area) > 1e-12
  ids = np.nonzero(keep)[0]
  box = (hi - lo + 1)[ids].max(axis=1) if ids.size else np.zeros(0, np.int64)

  cand_pix, cand_depth, cand_face, cand_bary = [], [], [], []
  groups: list[tuple[int, np.ndarray]] = []
  prev = 0
  for size in _BOX_SIZES:
    sel = ids[(box > prev) & (box <= size)]
    if sel.size:
      groups.append((size, sel))
    prev = size
  for f in ids[box > prev]:  # rare large triangles (close to the camera)
    groups.append((int(max(hi[f] - lo[f] + 1)), np.array([f])))

  for size, sel in groups:
    oy, ox = np.divmod(np.arange(size * size), size)
    px = lo[sel, 0:1] + ox[None]  # [n, S*S]
    py = lo[sel, 1:2] + oy[None]
    valid = (px <= hi[sel, 0:1]) & (py <= hi[sel, 1:2])
    cx, cy = px + 0.5, py + 0.5
    t = tri_uv[sel]  # [n, 3, 2]
    inv_area = 1.0 / area[sel][:, None]

    def edge(i, j, t=t, cx=cx, cy=cy):
      # Twice the signed area of (v_i, v_j, p): the barycentric of the opposite vertex.
      return ((t[:, j, 0:1] - t[:, i, 0:1]) * (cy - t[:, i, 1:2])
              - (t[:, j, 1:2] - t[:, i, 1:2]) * (cx - t[:, i, 0:1]))

    b0 = edge(1, 2) * inv_area
    b1 = edge(2, 0) * inv_area
    b2 = 1.0 - b0 - b1
    inside = valid & (b0 >= 0) & (b1 >= 0) & (b2 >= 0)
    rows, cols = np.nonzero(inside)
    if rows.size == 0:
      continue
    bary = np.stack([b0[rows, cols], b1[rows, cols], b2[rows, cols]], -1)
    inv_z = 1.0 / tri_z[sel[rows]]  # [m, 3]
    w = bary * inv_z
    zinv = w.sum(-1)
    cand_pix.append(py[rows, cols] * width + px[rows, cols])
    cand_depth.append(1.0 / zinv)
    cand_face.append(sel[rows])
    cand_bary.append(w / zinv[:, None])

  face_id = np.full(height * width, -1, np.int64)
  bary_img = np.zeros((height * width, 3), np.float64)
  depth = np.zeros(height * width, np.float64)
  if cand_pix:
    pix = np.concatenate(cand_pix)
    dep = np.concatenate(cand_depth)
    order = np.lexsort((dep, pix))
    pix_sorted = pix[order]
    first = np.ones(order.size, bool)
    first[1:] = pix_sorted[1:] != pix_sorted[:-1]
    win = order[first]
    target = pix[win]
    face_id[target] = np.concatenate(cand_face)[win]
    bary_img[target] = np.concatenate(cand_bary)[win]
    depth[target] = dep[win]
  return (face_id.reshape(height, width), bary_img.reshape(height, width, 3),
          depth.reshape(height, width))


def _downsample(x: np.ndarray, s: int) -> np.ndarray:
  """Box filter: [h*s, w*s, ...] -> [h, w, ...] mean over s x s blocks."""
  if s == 1:
    return x
  # Strided slices: much faster than a mean over the non-contiguous axes of a reshape.
  total = sum(x[i::s, j::s] for i in range(s) for j in range(s))
  return total / (s * s)


def _background_image(background, height: int, width: int) -> np.ndarray:
  bg = np.asarray(background, np.float64)
  if bg.shape == (3,):
    return np.broadcast_to(bg, (height, width, 3))
  if bg.shape != (height, width, 3):
    raise ValueError(f"render_mesh: background must be an RGB triple or [H={height}, "
                     f"W={width}, 3], found {bg.shape}")
  return bg


def render_mesh(vertices, faces, camera: Camera, *, vertex_colors=None,
                texture: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                texture_coords=None, normals=None, supersample: int = 2,
                background=(1.0, 1.0, 1.0), ambient: float = 0.65,
                light_dir=(0.3, -0.5, -1.0), cull_backfaces: bool = True
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Renders a shaded, anti-aliased triangle mesh: RGB, coverage mask and metric depth.

  The surface colour comes from ``vertex_colors`` (interpolated) or from ``texture``, a
  function evaluated per sub-pixel on the interpolated ``texture_coords`` (e.g. the
  canonical rest-pose position, so that a procedural pattern sticks to the body) and the
  index of the nearest triangle corner (e.g. to look up a body part). Shading is mild
  Lambert + ambient: ``colour * (ambient + (1 - ambient) * max(0, n . l))`` with the light
  direction ``l`` given in the camera frame (default: from above-right of the camera).

  Args:
    vertices: [V, 3] world positions, metres.
    faces: [F, 3] vertex indices, counter-clockwise seen from outside.
    camera: one camera (``K [3, 3]``, ``world_to_cam [4, 4]``).
    vertex_colors: [V, 3] RGB in [0, 1].
    texture: ``texture(coords [N, C], nearest_vertex [N] int) -> rgb [N, 3]``.
    texture_coords: [V, C] per-vertex attribute handed (interpolated) to ``texture``.
    normals: [V, 3] unit vertex normals (world frame) for shading; None = unshaded.
    supersample: sub-pixels per pixel along each axis (anti-aliasing).
    background: RGB triple or [H, W, 3] image in [0, 1].
    ambient: ambient fraction of the light (1 = flat colours).
    light_dir: [3] direction the light travels, camera frame.
    cull_backfaces: skip back-facing triangles (exact for closed meshes).

  Returns:
    ``(rgb [H, W, 3], mask [H, W], depth [H, W])`` float32 numpy arrays: colour in [0, 1],
    covered fraction in [0, 1], camera-space z in metres of the visible surface (0 where
    less than half of the pixel is covered).
  """
  if (vertex_colors is None) == (texture is None):
    raise ValueError("render_mesh: give exactly one of vertex_colors or texture")
  if texture is not None and texture_coords is None:
    raise ValueError("render_mesh: texture needs texture_coords [V, C]")
  faces = np.asarray(faces, np.int64)
  vertices = np.asarray(vertices, np.float64)
  if vertices.ndim != 2 or vertices.shape[1] != 3:
    raise ValueError(f"render_mesh: vertices must be [V, 3], found {vertices.shape}")
  if faces.ndim != 2 or faces.shape[1] != 3:
    raise ValueError(f"render_mesh: faces must be [F, 3], found {faces.shape}")
  s = int(supersample)
  face_id, bary, depth = rasterize(vertices, faces, camera, supersample=s,
                                   cull_backfaces=cull_backfaces)
  height, width = face_id.shape
  covered = face_id >= 0
  fid = face_id[covered]
  bw = bary[covered]  # [N, 3]
  corners = faces[fid]  # [N, 3]

  def interp(attr):
    attr = np.asarray(attr, np.float64)
    return np.einsum("nk,nkc->nc", bw, attr[corners])

  if texture is not None:
    nearest = corners[np.arange(len(fid)), np.argmax(bw, axis=1)]
    color = np.asarray(texture(interp(texture_coords), nearest), np.float64)
  else:
    color = interp(vertex_colors)
  if normals is not None:
    _, w2c = _camera_arrays(camera)
    n = interp(normals) @ w2c[:3, :3].T
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    light = -np.asarray(light_dir, np.float64)
    light /= np.linalg.norm(light)
    lambert = np.clip(n @ light, 0.0, 1.0)
    color = color * (ambient + (1.0 - ambient) * lambert)[:, None]

  bg = _background_image(background, camera.height, camera.width)
  rgb_ss = np.repeat(np.repeat(bg, s, axis=0), s, axis=1).copy()
  rgb_ss[covered] = np.clip(color, 0.0, 1.0)
  rgb = _downsample(rgb_ss, s)
  mask = _downsample(covered.astype(np.float64), s)
  depth_sum = _downsample(depth, s)
  # Mean z over the covered sub-pixels; valid where at least half the pixel is covered.
  depth_out = np.where(mask >= 0.5, depth_sum / np.maximum(mask, 1e-12), 0.0)
  return rgb.astype(np.float32), mask.astype(np.float32), depth_out.astype(np.float32)


# hsjax.body.vertex_normals compiled once: the renderer's callers shade every frame.
_vertex_normals = jax.jit(body_lib.vertex_normals)


def smooth_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
  """Area-weighted unit vertex normals for shading: [V, 3], faces [F, 3] -> [V, 3] numpy."""
  return np.asarray(_vertex_normals(np.asarray(vertices, np.float32), np.asarray(faces)))
