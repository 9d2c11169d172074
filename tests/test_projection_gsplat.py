"""Projection and SH against gsplat 1.5.3's pure-PyTorch reference (``gsplat.cuda._torch_impl``).

Only pure-torch functions are imported; gsplat's CUDA wrappers would try to JIT-build
extensions on a machine with a CUDA toolkit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels.rasterize import projection
from kernels.rasterize import scenes
from kernels.rasterize import sh as sh_lib

torch = pytest.importorskip("torch")
gsplat_torch = pytest.importorskip("gsplat.cuda._torch_impl")

RTOL = 1e-9  # float64 on both sides
ATOL = 1e-9


def _gsplat_projection(s, antialiased):
  t = lambda x: torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=True)
  means, quats, scales, viewmat, k = t(s.means), t(s.quats), t(s.scales), t(
      s.world_to_cam), t(s.K)
  covars, _ = gsplat_torch._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
  radii, means2d, depths, conics, comp = gsplat_torch._fully_fused_projection(
      means, covars, viewmat[None], k[None], s.width, s.height, eps2d=0.3, near_plane=0.01,
      far_plane=1e10, calc_compensations=antialiased)
  return (means, quats, scales, viewmat), (radii[0], means2d[0], depths[0], conics[0],
                                           None if comp is None else comp[0])


@pytest.mark.parametrize("antialiased", [False, True])
@pytest.mark.parametrize("size", [(64, 48), (37, 53)])
def test_projection_matches_gsplat(x64, antialiased, size):
  """means2d, conics, depths, radii (and the antialias compensation) equal gsplat's."""
  del x64
  s = scenes.make_scene("random", n=400, width=size[0], height=size[1], seed=11,
                        dtype=jnp.float64)
  ones = jnp.ones_like(s.opacities)
  p = projection.project(s.means, s.quats, s.scales, ones, s.K, s.world_to_cam,
                         width=s.width, height=s.height, antialiased=antialiased,
                         tight_radius=False)
  _, (radii, means2d, depths, conics, comp) = _gsplat_projection(s, antialiased)
  np.testing.assert_array_equal(np.asarray(p.radii_xy), radii.numpy())
  vis = radii.numpy()[:, 0] > 0
  assert 50 < vis.sum() < 400  # the scene mixes visible and culled Gaussians
  np.testing.assert_allclose(p.means2d[vis], means2d.detach().numpy()[vis], rtol=RTOL,
                             atol=ATOL)
  np.testing.assert_allclose(p.depths, depths.detach().numpy(), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(p.conics[vis], conics.detach().numpy()[vis], rtol=1e-8,
                             atol=ATOL)
  if antialiased:
    np.testing.assert_allclose(p.opacities[vis], comp.detach().numpy()[vis], rtol=1e-8,
                               atol=ATOL)


def test_projection_gradients_match_gsplat_autograd(x64):
  """Autodiff of project == torch autograd of gsplat's projection (means, quats, scales,
  world_to_cam), for a random linear loss on the visible Gaussians' outputs."""
  del x64
  s = scenes.make_scene("random", n=200, width=64, height=48, seed=12, dtype=jnp.float64)
  inputs, (radii, means2d, depths, conics, _) = _gsplat_projection(s, False)
  vis = radii.detach().numpy()[:, 0] > 0
  rng = np.random.default_rng(0)
  w_m, w_c, w_d = (rng.normal(size=a.shape) * vis.reshape((-1,) + (1,) * (a.ndim - 1))
                   for a in (means2d.detach().numpy(), conics.detach().numpy(),
                             depths.detach().numpy()))
  loss_t = ((means2d * torch.tensor(w_m)).sum() + (conics * torch.tensor(w_c)).sum() +
            (depths * torch.tensor(w_d)).sum())
  loss_t.backward()

  def loss(means, quats, scales, world_to_cam):
    p = projection.project(means, quats, scales, jnp.ones_like(s.opacities), s.K,
                           world_to_cam, width=s.width, height=s.height, tight_radius=False)
    return jnp.sum(p.means2d * w_m) + jnp.sum(p.conics * w_c) + jnp.sum(p.depths * w_d)

  grads = jax.grad(loss, argnums=(0, 1, 2, 3))(s.means, s.quats, s.scales, s.world_to_cam)
  for name, g, x in zip(("means", "quats", "scales", "world_to_cam"), grads, inputs):
    expect = x.grad.numpy()
    np.testing.assert_allclose(g, expect, rtol=1e-7, atol=1e-7 * np.abs(expect).max(),
                               err_msg=name)


def test_tight_radius_is_inside_gsplat_radius_and_culls_transparent():
  """The opacity-aware box never exceeds gsplat's 3.33 sigma box and drops o < 1/255."""
  s = scenes.make_scene("random", n=300, width=64, height=48, seed=13)
  loose = projection.project(s.means, s.quats, s.scales, s.opacities, s.K, s.world_to_cam,
                             width=64, height=48, tight_radius=False)
  tight = projection.project(s.means, s.quats, s.scales, s.opacities, s.K, s.world_to_cam,
                             width=64, height=48)
  assert bool(jnp.all(tight.radii_xy <= loose.radii_xy))
  assert bool(jnp.any(tight.radii_xy < loose.radii_xy))
  assert bool(jnp.any(s.opacities < 1 / 255))
  assert not bool(jnp.any((tight.radii > 0) & (s.opacities < 1 / 255)))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_eval_sh_matches_gsplat(degree):
  """eval_sh == max(gsplat _spherical_harmonics + 0.5, 0), which is what 3DGS renders."""
  rng = np.random.default_rng(degree)
  coeffs = rng.normal(0, 2.0, (200, 16, 3)).astype(np.float32)
  dirs = rng.normal(size=(200, 3)).astype(np.float32) * 3.0
  got = sh_lib.eval_sh(degree, jnp.asarray(coeffs), jnp.asarray(dirs))
  ref = gsplat_torch._spherical_harmonics(degree, torch.tensor(dirs), torch.tensor(coeffs))
  np.testing.assert_allclose(got, np.maximum(ref.numpy() + 0.5, 0.0), rtol=1e-5, atol=1e-5)
  assert float(jnp.min(got)) == 0.0  # the clamp was exercised
