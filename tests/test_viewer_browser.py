"""The viewer page in a real browser: Chromium (the distribution's package) driven headless by
Playwright, WebGL2 through SwiftShader.

A small avatar (1500 Gaussians coloured by position) in two poses is written with
``hsjax.report.viewer.write_viewer``, served over HTTP, scripted through
``window.hsjaxViewer`` and screenshotted; hsjax's own rasteriser renders the same avatar, pose
and camera. The browser's alpha comes from two screenshots, on black and on white:
``alpha = 1 - (white - black)``.

Skipped with the reason when playwright or Chromium is missing; CI installs both
(``.ci/run``: ``apt-get install chromium``; ``playwright`` is in the ``test`` extra).
"""

import functools
import http.server
import io
import os
import shutil
import threading

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsjax import avatar as avatar_lib
from hsjax import body as body_lib
from hsjax import rendering
from hsjax.camera import Camera
from hsjax.camera import look_at
from hsjax.report import viewer

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[test]')")

CHROMIUM = os.environ.get("HSJAX_CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")
if CHROMIUM is None:
  pytest.skip("no Chromium on PATH (apt-get install chromium, or set HSJAX_CHROMIUM)",
              allow_module_level=True)

# Silhouettes are alpha > 0.5; the acceptance bound of the viewer.
MIN_IOU = 0.85
# Mean absolute RGB difference inside both silhouettes, on black (8-bit steps / 255).
MAX_COLOUR_DIFF = 0.03
# A silhouette against the wrong frame's render overlaps clearly less (the poses differ).
MAX_IOU_OTHER_FRAME = 0.7


def _poses(num_betas: int) -> body_lib.SMPLParams:
  """Two clearly different frames: arms down, then arms up, a leg lifted, turned, moved."""
  body_pose = np.zeros((2, 23, 3), np.float32)
  body_pose[0, 15, 2], body_pose[0, 16, 2] = -1.0, 1.0  # shoulders: arms lowered
  body_pose[1, 15, 2], body_pose[1, 16, 2] = 0.6, -0.9
  body_pose[1, 0, 0], body_pose[1, 3, 0] = -1.2, 1.2  # left hip and knee
  body_pose[1, 17, 1] = -1.2  # right elbow
  return body_lib.SMPLParams(
      betas=np.zeros(num_betas, np.float32), body_pose=body_pose,
      global_orient=np.array([[0, 0, 0], [0, 0.7, 0]], np.float32),
      transl=np.array([[0, 0, 0], [0.25, 0.05, -0.1]], np.float32))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
  """``(camera, hsjax renders, url)`` with the viewer served on 127.0.0.1.

  The renders are hsjax's ``(rgb [2, H, W, 3], alpha [2, H, W])`` of the two frames on black.
  """
  body_model = body_lib.load_body_model("default")
  avatar = avatar_lib.init_avatar(jax.random.key(0), body_model, 1500, active_fraction=1.0,
                                  scale_multiplier=0.8)
  means = np.asarray(avatar.means)
  rgb = 0.15 + 0.7 * (means - means.min(0)) / (means.max(0) - means.min(0))
  sh = np.asarray(avatar.sh).copy()
  sh[:, 0] = (rgb - 0.5) / avatar_lib.SH_C0
  avatar = avatar.replace(sh=jnp.asarray(sh))
  poses = _poses(body_model.num_betas)
  # Non-square, principal point off centre: exercises the whole OpenCV -> three.js mapping.
  k = np.array([[300.0, 0.0, 170.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]], np.float32)
  camera = Camera(K=k, world_to_cam=look_at([0.3, 0.4, 3.2], [0.0, -0.1, 0.0]), width=320,
                  height=256)
  renders = _hsjax_renders(body_model, avatar, poses, camera)
  out = str(tmp_path_factory.mktemp("viewer"))
  viewer.write_viewer(out, avatar=avatar, body_model=body_model,
                      motions={"refined": (poses, 2.0)}, camera=camera, measure=False)

  class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # quiet test output
      pass

  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                           functools.partial(Handler, directory=out))
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield camera, renders, f"http://127.0.0.1:{server.server_address[1]}/"
  server.shutdown()
  server.server_close()


@pytest.fixture(scope="module")
def page(scene):
  """The viewer page, loaded and ready (the motion paused)."""
  url = scene[-1]
  with sync_api.sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
    pg = browser.new_page(viewport={"width": 900, "height": 700}, device_scale_factor=1)
    pg.goto(url + "index.html?autoplay=0")
    pg.wait_for_function("window.hsjaxViewer && (window.hsjaxViewer.ready || "
                         "window.hsjaxViewer.error)", timeout=180_000)
    error = pg.evaluate("window.hsjaxViewer.error")
    assert error is None, error
    yield pg
    browser.close()


def _browser_render(page, camera: Camera, frame: int) -> tuple[np.ndarray, np.ndarray]:
  """``(rgb on black [H, W, 3], alpha [H, W])`` of the page at ``frame`` through ``camera``."""
  cam = {**viewer.camera_to_threejs(camera.K, camera.world_to_cam, camera.width, camera.height),
         "width": camera.width, "height": camera.height}
  shots = []
  for bg in (0.0, 1.0):
    page.evaluate("([cam, t, bg]) => { const v = window.hsjaxViewer; v.setCamera(cam); "
                  "v.setFrame(t); v.setBackground([bg, bg, bg]); }", [cam, frame, bg])
    page.evaluate("window.hsjaxViewer.settle()")
    png = page.locator("#canvas").screenshot()
    shots.append(iio.imread(io.BytesIO(png))[..., :3].astype(np.float32) / 255.0)
  black, white = shots
  assert black.shape == (camera.height, camera.width, 3), black.shape
  return black, np.clip(1.0 - (white - black).mean(-1), 0.0, 1.0)


def _hsjax_renders(body_model, avatar, poses, camera):
  """hsjax's ``(rgb [T, H, W, 3], alpha [T, H, W])`` of every frame of ``poses``, on black."""

  def one(body_pose, global_orient, transl):
    gaussians = avatar_lib.deform(avatar, body_model, jnp.asarray(poses.betas), body_pose,
                                  global_orient, transl)
    out = rendering.render(gaussians, camera, background=jnp.zeros(3), backend="xla",
                           tile_capacity=256)
    return out.rgb, out.alpha

  rgb, alpha = jax.jit(jax.vmap(one))(jnp.asarray(poses.body_pose),
                                      jnp.asarray(poses.global_orient),
                                      jnp.asarray(poses.transl))
  return np.clip(np.asarray(rgb), 0.0, 1.0), np.asarray(alpha)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
  return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("frame", [0, 1])
def test_screenshot_matches_hsjax_render(scene, page, frame):
  """Silhouette IoU >= 0.85 and close colours against hsjax's render of the same frame."""
  camera, (rgb_h, alpha_h), _ = scene
  rgb_b, alpha_b = _browser_render(page, camera, frame)
  rgb_h, mask_h = rgb_h[frame], alpha_h[frame] > 0.5
  mask_b = alpha_b > 0.5
  assert mask_h.sum() > 2000  # the body fills a good part of the image
  iou = _iou(mask_b, mask_h)
  assert iou >= MIN_IOU, f"frame {frame}: silhouette IoU {iou:.3f} < {MIN_IOU}"
  both = mask_b & mask_h
  colour = float(np.abs(rgb_b - rgb_h)[both].mean())
  assert colour <= MAX_COLOUR_DIFF, f"frame {frame}: mean colour difference {colour:.4f}"


def test_scrubbing_moves_the_avatar_as_the_transforms_say(scene, page):
  """After scrubbing 0 -> 1 the page shows frame 1's pose (hsjax's frame 1), not frame 0's."""
  camera, (_, alpha_h), _ = scene
  page.evaluate("window.hsjaxViewer.setFrame(0)")
  page.evaluate("window.hsjaxViewer.settle()")
  _, alpha_b = _browser_render(page, camera, 1)
  mask_b = alpha_b > 0.5
  mask_0, mask_1 = alpha_h[0] > 0.5, alpha_h[1] > 0.5
  assert _iou(mask_b, mask_1) >= MIN_IOU
  assert _iou(mask_b, mask_0) <= MAX_IOU_OTHER_FRAME
  assert page.evaluate("document.getElementById('status').textContent") == "frame 2 / 2"


def test_page_plays_the_motion(page):
  """The page starts playing (the default) and its frame counter advances on its own."""
  page.evaluate("window.hsjaxViewer.setFrame(0); window.hsjaxViewer.play()")
  page.wait_for_function("document.getElementById('status').textContent === 'frame 2 / 2'",
                         timeout=60_000)
  assert page.evaluate("document.getElementById('play').textContent") == "pause"
  page.evaluate("window.hsjaxViewer.pause()")
