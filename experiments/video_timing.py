r"""Time per stage of ``experiments/video.py`` on a 10 s, 30 fps, 720p clip at stride 2.

  python experiments/video_timing.py --output_dir=runs/video_timing

``--source=synthetic`` (default): the default synthetic sequence's 60 rendered frames (256²,
the person ~190 px tall) played forwards and backwards to 300 frames (10 s at 30 fps),
upscaled to 720 x 720 (bicubic) and centred on a 1280 x 720 canvas of the render's grey
background, written as H.264. ``--source=real``: the real clip in the test data
(``tests/data/real_video/balance.mp4``, 1.7 s; no longer real clip with a licence that allows
shipping it was found) at 30 fps, played forwards and backwards to 300 frames, upscaled to
720 x 1280 (portrait 720p). The
command then runs exactly as a user runs it (a subprocess, its default flags: ``--stride=2``,
``--max_frames=150``, ``--long_side=512``), and its ``timing.json`` gives the stages. The
issue's budget on 2 CPU cores: observation <= 100 ms a frame, initialisation <= 60 s, the
whole command <= 15 minutes with the default fit (``hsjax.video.VIDEO_SCHEDULE``).

``--steps`` below the default shortens the fit to measure the other stages quickly; the table
then also gives the fit's time per step and, marked as extrapolated, the default fit's total.
Prints a table and writes ``timing.json`` (and the clip) in ``--output_dir``; ``--reuse``
redoes the table from a previous run.

Measured with the default 600 steps on 2 CPU cores (the video fit at full resolution): decode
0.9 s, observe 19 ms/frame (150 frames of 512 x 288), initialise 5.7 s, fit 191 s (18 s of
compilation + 288 ms/step), evaluation + outputs + overlay 24 s; the whole command 236 s
(budget 900 s). With ``--source=real``: decode 1.2 s, observe 19 ms/frame, initialise 6.0 s,
fit 201 s, evaluation + outputs + overlay 24 s, the whole command 248 s. About 5 minutes to
run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position  # experiments/common.py

common.init_jax()

_STEPS = flags.DEFINE_integer("steps", -1, "Joint-fit steps of the timed command (-1: the "
                              "video fit's, hsjax.video.VIDEO_SCHEDULE); fewer are extrapolated "
                              "linearly to the video fit's in the table.")
_REUSE = flags.DEFINE_bool("reuse", False, "Only redo the table from a previous run in "
                            "--output_dir.")
_SECONDS = flags.DEFINE_float("seconds", 10.0, "Clip length, seconds (at 30 fps).")
_SOURCE = flags.DEFINE_enum("source", "synthetic", ["synthetic", "real"], "Frames of the clip: "
                            "the default synthetic sequence upscaled onto a 1280 x 720 canvas, "
                            "or the real clip tests/data/real_video/balance.mp4 at 720 x 1280 "
                            "(portrait 720p).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/video_timing",
                                  "Where the clip, the command's run directory and timing.json go.")
FPS = 30


REAL_CLIP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
                         "real_video", "balance.mp4")


def _write_ping_pong(path: str, frames, seconds: float, place) -> int:
  """Writes ``frames`` played forwards and backwards for ``seconds`` at 30 fps, each frame
  drawn by ``place(frame) -> [H, W, 3] uint8``; returns the number of frames written."""
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  loop = np.concatenate([frames, frames[::-1]])
  n = int(round(seconds * FPS))
  writer = imageio.get_writer(path, format="FFMPEG", fps=FPS, codec="libx264", quality=8,
                              macro_block_size=1, ffmpeg_log_level="error")
  for i in np.arange(n) % len(loop):
    writer.append_data(place(loop[i]))
  writer.close()
  return n


def make_real_clip(path: str, seconds: float) -> dict:
  """Writes the real clip at 720 x 1280, 30 fps (every 2nd of its 60 fps frames), played
  forwards and backwards to ``seconds``; returns its description."""
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from PIL import Image  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import video  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  frames = video.read_video(REAL_CLIP, stride=2).frames  # 60 fps -> 30 fps

  def place(frame):
    return np.asarray(Image.fromarray(frame).resize((720, 1280), Image.Resampling.BICUBIC))

  n = _write_ping_pong(path, frames, seconds, place)
  return {"path": path, "frames": n, "fps": FPS, "size": [720, 1280],
          "content": f"tests/data/real_video/balance.mp4, {len(frames)} frames at 30 fps "
                     "ping-ponged, upscaled 540x960->720x1280"}


def make_clip(path: str, seconds: float) -> dict:
  """Writes the synthetic 720p clip (see the module docstring); returns its description."""
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from PIL import Image  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import data  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  seq = data.synthetic_sequence("default", seed=0, num_eval_views=0, num_novel_pose=0,
                                depth="none")
  frames = np.round(np.asarray(seq.images) * 255).astype(np.uint8)
  background = frames[0, 2, 2]  # the render's plain background
  canvas = np.empty((720, 1280, 3), np.uint8)

  def place(frame):
    canvas[:] = background
    canvas[:, 280:1000] = np.asarray(Image.fromarray(frame).resize(
        (720, 720), Image.Resampling.BICUBIC))
    return canvas

  n = _write_ping_pong(path, frames, seconds, place)
  return {"path": path, "frames": n, "fps": FPS, "size": [1280, 720],
          "content": "default synthetic sequence, 60 frames ping-ponged, upscaled 256->720"}


def main(argv):
  del argv
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  clip_path = os.path.join(_OUTPUT_DIR.value, "clip_720p.mp4")
  run_dir = os.path.join(_OUTPUT_DIR.value, "run")
  previous = os.path.join(_OUTPUT_DIR.value, "timing.json")
  if _REUSE.value and os.path.isfile(previous):
    with open(previous) as f:
      old = json.load(f)
    report(run_dir, old["command_wall_s"], old["clip"], old["steps"])
    return
  t0 = time.perf_counter()
  clip = (make_real_clip if _SOURCE.value == "real" else make_clip)(clip_path, _SECONDS.value)
  print(f"{clip_path}: {clip['frames']} frames {clip['size'][0]}x{clip['size'][1]} at {FPS} fps "
        f"({time.perf_counter() - t0:.0f} s to make)")
  from hsjax import video  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  default_steps, default_warmup = video.VIDEO_SCHEDULE
  steps = default_steps if _STEPS.value < 0 else _STEPS.value
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "video.py")
  cmd = [sys.executable, script, f"--video={clip_path}", f"--output_dir={run_dir}",
         f"--steps={steps}",
         f"--warmup_steps={round(default_warmup * steps / default_steps)}",
         "--redetect", "--noprogress"]
  print(" ".join(cmd))
  t0 = time.perf_counter()
  result = subprocess.run(cmd, capture_output=True, text=True, check=False)
  wall = time.perf_counter() - t0
  if result.returncode != 0:
    raise common.InputError(f"video.py failed (exit {result.returncode}):\n"
                            f"{result.stderr[-3000:]}")
  report(run_dir, wall, clip, steps)


def report(run_dir: str, wall: float, clip: dict, steps: int) -> None:
  """Prints the table and writes ``timing.json`` from the command's run directory."""
  from hsjax import video  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  default_steps = video.VIDEO_SCHEDULE[0]
  with open(os.path.join(run_dir, "timing.json")) as f:
    stages = json.load(f)
  with open(os.path.join(run_dir, "video.json")) as f:
    frames = json.load(f)["frames"]
  with open(os.path.join(run_dir, "metrics.json")) as f:
    step_ms = json.load(f)["fit"]["step_ms"]  # compilation left out (experiments/common.py)
  fit_s = stages.get("fit_s", 0.0)
  rest = wall - fit_s
  compile_s = max(fit_s - steps * step_ms / 1000.0, 0.0)  # and the first record
  fit_default = compile_s + default_steps * step_ms / 1000.0
  row = {"clip": clip, "frames_observed": frames, "steps": steps, "stages_s": stages,
         "command_wall_s": wall, "fit_step_ms": step_ms, "fit_compile_s": compile_s,
         "default_steps": default_steps, "fit_s_default_steps": fit_default,
         "fit_default_extrapolated": steps != default_steps,
         "command_s_default_steps": rest + fit_default,
         "budget": {"observe_ms_per_frame": 100, "initialise_s": 60, "command_s": 900}}
  with open(os.path.join(os.path.dirname(run_dir), "timing.json"), "w") as f:
    json.dump(row, f, indent=1)
  mark = " (extrapolated)" if row["fit_default_extrapolated"] else ""
  width, height = clip["size"]
  print(f"\n{frames} frames observed ({clip['frames'] / FPS:.0f} s, 30 fps, {width} x {height}, "
        f"stride 2; long side decoded at 512 px)")
  print("| stage | time | budget |")
  print("|---|---|---|")
  print(f"| decode | {stages.get('decode_s', 0):.1f} s | |")
  print(f"| observe | {stages.get('observe_s', 0):.1f} s "
        f"({stages.get('observe_ms_per_frame', 0):.0f} ms/frame) | 100 ms/frame |")
  print(f"| initialise | {stages.get('initialise_s', 0):.1f} s | 60 s |")
  print(f"| fit, {steps} steps | {fit_s:.0f} s ({compile_s:.0f} s compilation, "
        f"{step_ms:.0f} ms/step) | |")
  print(f"| evaluate + outputs + overlay | {stages.get('evaluate_s', 0):.0f} + "
        f"{stages.get('outputs_s', 0):.0f} + {stages.get('overlay_s', 0):.0f} s | |")
  print(f"| whole command, {steps} steps | {wall:.0f} s | |")
  print(f"| whole command, default {default_steps} steps{mark} | "
        f"{row['command_s_default_steps']:.0f} s | 900 s |")


if __name__ == "__main__":
  common.run(main)
