r"""Writes the browser viewer of a run and optionally serves it: the avatar moving, any side.

  python experiments/view.py --run_dir=outputs/demo --serve

writes ``<run_dir>/viewer/`` (``hsjax.report.viewer``): ``index.html`` with the avatar, the
refined motion (shown first), the HMR motion and the input frames beside the avatar, plus any
motion ``experiments/animate.py`` accepts (``--motions=walk,dance_a,path/to/clip.bvh``), and
the vendored JavaScript (Spark, three.js), so the folder works offline. Browsers load ES
modules over HTTP only: ``--serve`` starts a server on 127.0.0.1 and prints the address
(``--port``; Ctrl-C stops it), or serve the folder with ``python -m http.server``.

In the page: drag to orbit, wheel to zoom, right-drag to pan; play / pause (space), the frame
slider, the speed and the motion; "reset view" returns to the input camera.

Runtime (2-core machine, the demo run: 2000 Gaussians, 60 frames): about 20 s, mostly
start-up and the skinning-error measurement (``--nomeasure`` skips it).
"""

from __future__ import annotations

import functools
import http.server
import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()
_RUN_DIR = flags.DEFINE_string("run_dir", None, "Run directory of fit.py, demo.py or video.py "
                               "(a video run decodes its video again from the recorded path).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "", "Viewer folder (default <run_dir>/viewer).")
_MOTIONS = flags.DEFINE_list("motions", [], "Extra motions: built-in clip names or motion files "
                             "(.bvh, .npz, DeepMimic .txt/.json), as animate.py --motion.")
_FPS = flags.DEFINE_float("fps", 30.0, "Frame rate the extra motions are resampled to.")
_FRAMES = flags.DEFINE_bool("frames", True, "Show the input frames beside the refined motion.")
_MEASURE = flags.DEFINE_bool("measure", True, "Measure the browser skinning's error against "
                             "hsjax's deformation (stored in scene.json, printed).")
_SERVE = flags.DEFINE_bool("serve", False, "Serve the viewer on 127.0.0.1 after writing it.")
_PORT = flags.DEFINE_integer("port", 8000, "Port of --serve (0: any free port).")
flags.mark_flag_as_required("run_dir")
# Shared flags count as this script's own (listed by --help, not only --helpfull).
flags.adopt_module_key_flags(common)


def load_motions(values: list[str], fps: float):
  """``[(name, hsjax.motion.Motion)]`` of built-in clip names or motion files."""
  from hsjax import motion  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  clips = []
  for value in values:
    looks_like_path = os.path.sep in value or os.path.splitext(value)[1] != ""
    name = os.path.splitext(os.path.basename(value))[0]
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    try:
      if looks_like_path:
        if not os.path.exists(value):
          raise common.InputError(f"--motions: motion file not found: {value}")
        clips.append((name, motion.load_motion(value, target_fps=fps)))
      else:
        clips.append((name, motion.builtin_motion(value, target_fps=fps)))
    except (FileNotFoundError, ValueError, KeyError) as e:
      raise common.InputError(f"--motions={value}: {e}") from e
  names = [n for n, _ in clips]
  clash = sorted({n for n in names if names.count(n) > 1 or n in ("refined", "hmr")})
  if clash:
    raise common.InputError(f"--motions: names {clash} repeat or clash with refined / hmr")
  return clips


def serve(folder: str, port: int) -> None:
  """Serves ``folder`` on 127.0.0.1 until interrupted."""

  class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request would bury the address
      pass

  try:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(Handler, directory=folder))
  except OSError as e:
    raise common.InputError(f"--port={port}: cannot listen on 127.0.0.1 ({e}); try --port=0"
                            ) from e
  print(f"viewer at http://127.0.0.1:{server.server_address[1]}/ (serving {folder}; Ctrl-C "
        "stops)", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()


def main(argv):
  if len(argv) > 1:
    raise common.InputError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
  from hsjax.report import viewer  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  if _FPS.value <= 0:
    raise common.InputError(f"--fps must be > 0, found {_FPS.value}")
  clips = load_motions(_MOTIONS.value, _FPS.value)  # cheap checks first
  run_dir = _RUN_DIR.value
  _, body_model, sequence, avatar, poses = common.load_run(run_dir)
  out_dir = _OUTPUT_DIR.value or os.path.join(run_dir, "viewer")
  scene = viewer.write_run_viewer(run_dir, body_model=body_model, sequence=sequence,
                                  avatar=avatar, poses=poses, extra_motions=clips,
                                  with_frames=_FRAMES.value, out_dir=out_dir,
                                  measure=_MEASURE.value)
  size = viewer.folder_size(out_dir)
  print(f"{scene['num_gaussians']} Gaussians, motions "
        + ", ".join(f"{m['name']} ({m['num_frames']})" for m in scene["motions"])
        + f" -> {out_dir} ({size / 1e6:.1f} MB without lib/)")
  if "skinning_error" in scene:
    e = scene["skinning_error"]
    print(f"browser skinning vs hsjax: centres {e['mean_mm']:.2f} mm mean, {e['p99_mm']:.2f} mm "
          f"p99, {e['max_mm']:.1f} mm max; covariance {100 * e['cov_rel_mean']:.1f} % mean")
  if _SERVE.value:
    serve(out_dir, _PORT.value)
  else:
    print(f"open it: python experiments/view.py --run_dir={run_dir} --serve  (or python -m "
          f"http.server -d {out_dir})")


if __name__ == "__main__":
  common.run(main)
