"""Tests of hsjax.ply: the 3DGS .ply layout and lossless round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsjax import avatar as avatar_lib
from hsjax import nonrigid as nonrigid_lib
from hsjax.io import ply
from hsjax.gaussians import Gaussians


def official_3dgs_properties(sh_degree: int) -> list[str]:
  """Attribute order of 3DGS ``GaussianModel.construct_list_of_attributes``."""
  rest = 3 * ((sh_degree + 1) ** 2 - 1)
  return (["x", "y", "z", "nx", "ny", "nz"] + [f"f_dc_{i}" for i in range(3)]
          + [f"f_rest_{i}" for i in range(rest)] + ["opacity"]
          + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])


def random_gaussians(key, n, degree):
  k = jax.random.split(key, 5)
  return Gaussians(means=jax.random.normal(k[0], (n, 3)),
                   quats=jax.random.normal(k[1], (n, 4)),
                   scales=jnp.exp(jax.random.normal(k[2], (n, 3)) - 3.0),
                   opacities=jax.random.uniform(k[3], (n,), minval=0.01, maxval=0.99),
                   sh=jax.random.normal(k[4], (n, (degree + 1) ** 2, 3)))


def header(path):
  with open(path, "rb") as f:
    data = f.read()
  end = data.index(b"end_header\n") + len(b"end_header\n")
  return data[:end].decode("ascii").splitlines(), data[end:]


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_gaussians_round_trip_and_3dgs_layout(tmp_path, degree):
  g = random_gaussians(jax.random.key(degree), 50, degree)
  path = str(tmp_path / "g.ply")
  ply.save_ply(path, g)
  lines, body = header(path)
  assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
  assert "element vertex 50" in lines
  props = [l.split() for l in lines if l.startswith("property")]
  assert all(p[1] == "float" for p in props)
  assert [p[2] for p in props] == official_3dgs_properties(degree)
  # Independent decoding of the body: rows of float32 in that order.
  table = np.frombuffer(body, "<f4").reshape(50, len(props))
  np.testing.assert_array_equal(table[:, :3], np.asarray(g.means))
  sh = np.asarray(g.sh)
  np.testing.assert_array_equal(table[:, 6:9], sh[:, 0])
  if degree:  # f_rest channel-major: coefficient k of channel c at c (K − 1) + k − 1
    num = (degree + 1) ** 2 - 1
    assert table[0, 9 + 1 * num + 2] == sh[0, 3, 1]
  back = ply.load_ply(path)
  np.testing.assert_array_equal(back.means, g.means)
  # Written as unit quaternions (viewers use rot_* as stored): same rotation, norm 1.
  q = np.asarray(g.quats, np.float64)
  np.testing.assert_allclose(back.quats, q / np.linalg.norm(q, axis=1, keepdims=True), atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(table[:, -4:], axis=1), 1.0, atol=1e-6)
  np.testing.assert_array_equal(back.sh, g.sh)
  np.testing.assert_allclose(back.scales, g.scales, rtol=1e-6)
  np.testing.assert_allclose(back.opacities, g.opacities, rtol=1e-6)


def test_colors_written_as_sh_dc_and_transparent_slots_skipped(tmp_path):
  g = random_gaussians(jax.random.key(9), 10, 0)
  colors = jax.random.uniform(jax.random.key(1), (10, 3))
  g = g.replace(sh=None, colors=colors, opacities=g.opacities.at[:3].set(0.0))
  path = str(tmp_path / "c.ply")
  ply.save_ply(path, g)
  back = ply.load_ply(path)
  assert back.means.shape == (7, 3)
  np.testing.assert_allclose(0.5 + ply.SH_C0 * back.sh[:, 0], colors[3:], atol=1e-6)
  with pytest.raises(ValueError, match="opacities must lie in"):
    ply.save_ply(path, g, skip_transparent=False)


def test_avatar_round_trip_is_bit_exact(tmp_path):
  from test_avatar import uv_sphere_body  # pylint: disable=g-import-not-at-top

  model = uv_sphere_body()
  config = nonrigid_lib.NonRigidConfig(width=16, latent_dim=4)
  av = avatar_lib.init_avatar(jax.random.key(0), model, 300, sh_degree=2, learn_skinning=True,
                              nonrigid=True, nonrigid_config=config)
  av = av.replace(sh=jax.random.normal(jax.random.key(1), av.sh.shape))
  path = str(tmp_path / "avatar.ply")
  ply.save_avatar_ply(path, av)
  back = ply.load_avatar_ply(path)
  assert jax.tree.structure(back) == jax.tree.structure(av)
  for a, b in zip(jax.tree.leaves(av), jax.tree.leaves(back)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  # Viewers read the 3DGS columns only: inactive slots are hidden there.
  gaussians = ply.load_ply(path)
  hidden = np.asarray(gaussians.opacities)[~np.asarray(av.active)]
  assert hidden.size and np.all(hidden < 1e-10)


def test_bad_files_raise_clear_errors(tmp_path):
  path = tmp_path / "bad.ply"
  path.write_bytes(b"not a ply\n")
  with pytest.raises(ValueError, match="not a PLY file"):
    ply.load_ply(str(path))
  cols = {"x": np.zeros(2, np.float32), "y": np.zeros(2, np.float32)}
  ply.write_vertex_ply(str(path), cols)
  with pytest.raises(ValueError, match="missing PLY properties"):
    ply.load_ply(str(path))
  with pytest.raises(ValueError, match="not an avatar file|missing PLY properties"):
    ply.load_avatar_ply(str(path))
  with pytest.raises(FileNotFoundError):
    ply.load_ply(str(tmp_path / "absent.ply"))


def test_reads_ascii_and_big_endian(tmp_path):
  g = random_gaussians(jax.random.key(3), 4, 0)
  path = str(tmp_path / "g.ply")
  ply.save_ply(path, g)
  lines, body = header(path)
  props = [l.split()[2] for l in lines if l.startswith("property")]
  table = np.frombuffer(body, "<f4").reshape(4, len(props))
  big = tmp_path / "big.ply"
  big.write_bytes(("\n".join(lines).replace("binary_little_endian", "binary_big_endian") + "\n")
                  .encode() + table.astype(">f4").tobytes())
  text = tmp_path / "ascii.ply"
  text.write_text("\n".join(lines).replace("binary_little_endian", "ascii") + "\n"
                  + "\n".join(" ".join(repr(float(v)) for v in row) for row in table) + "\n")
  for p in (big, text):
    back = ply.load_ply(str(p))
    np.testing.assert_array_equal(back.means, g.means)
    np.testing.assert_array_equal(back.sh, g.sh)
