"""4D-Humans / PHALP results written the way PHALP writes them, read back by hsjax.

The fixture follows brjathu/PHALP ``phalp/trackers/PHALP.py`` (commit b41f606):
``final_visuals_dic[frame_path]`` starts as ``{'time', 'shot', 'frame_path'}``, gets an empty
list for each of ``eval_keys + extra_keys_1 + extra_keys_2`` (rendering off), and one entry per
confirmed track in each list, aligned with ``tid``; ``tracked_ids`` / ``tracked_bbox`` only
for tracks matched in the frame (``time_since_update == 0``); masks are
``pycocotools.mask.encode`` output (a list of one dict, ``counts`` decoded to str); saved with
``joblib.dump(final_visuals_dic, pkl_path, compress=3)``. The camera and 2D joints follow
``phalp/models/hmar/hmar.py`` ``get_3d_parameters`` (focal 5000 on the 256-px padded square).
"""

import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hsjax import body as body_lib
from hsjax.data import load_sequence, synthetic_sequence
from hsjax.data.importers import fourdhumans

from test_data_common import small_body  # pylint: disable=unused-import
from test_importers import _camera_frame_params, _rle_encode, _u8

joblib = pytest.importorskip("joblib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_FRAMES = 6
MISSING, LOST = 2, 4  # frames where track 3 is absent / lost (tracked_time > 0)
DECOY_FRAMES = 3  # track 5 is seen in frames 0-2 only
EVAL_KEYS = ["tracked_ids", "tracked_bbox", "tid", "bbox", "tracked_time"]
EXTRA_KEYS_1 = ["center", "scale", "size", "img_path", "img_name", "class_name", "conf",
                "annotations"]
EXTRA_KEYS_2 = ["smpl", "camera", "camera_bbox", "3d_joints", "2d_joints", "mask"]


def _phalp_joints_2d(points, height, width):
  """PHALP's ``2d_joints``: projection (focal 5000, 256-px square) / 256, flattened."""
  proj = 5000.0 * points[:, :2] / points[:, 2:3] / 256.0 + 0.5  # get_3d_parameters
  return proj.reshape(-1)


def _to_pixels(j2d, height, width):
  side = max(height, width)
  return j2d.reshape(-1, 2) * side - np.array([(side - width) // 2, (side - height) // 2])


def _person(model, betas, body_pose, orient, cam_t, mask, height, width, t, frame_path):
  """One track's history entry as get_human_features builds it."""
  _, joints = body_lib.pose_frames_host(model, body_lib.SMPLParams(
      betas=betas, body_pose=body_pose[None], global_orient=orient[None],
      transl=np.zeros((1, 3))))
  joints = np.concatenate([joints[0], np.zeros((1, 3))])  # PHALP appends one zero joint
  rle = _rle_encode(mask)
  rle["counts"] = rle["counts"].decode("utf-8")
  ys, xs = np.nonzero(mask > 0.5)
  x0, y0 = (xs.min(), ys.min()) if len(xs) else (0, 0)
  bbox = np.array([x0, y0, (xs.max() - x0) if len(xs) else 1, (ys.max() - y0) if len(ys) else 1],
                  np.float64)
  return {
      "bbox": bbox, "mask": [rle], "conf": np.float32(0.99),
      "center": bbox[:2] + bbox[2:] / 2, "scale": bbox[2:],
      "smpl": {"global_orient": Rotation.from_rotvec(orient).as_matrix()[None].astype(np.float32),
               "body_pose": Rotation.from_rotvec(body_pose).as_matrix().astype(np.float32),
               "betas": np.asarray(betas, np.float32)},
      "camera": np.asarray(cam_t, np.float32),
      "camera_bbox": np.array([0.9, 0.01, 0.02], np.float32),
      "3d_joints": joints.astype(np.float32),
      "2d_joints": _phalp_joints_2d(joints + cam_t, height, width).astype(np.float32),
      "size": [height, width], "img_path": frame_path, "img_name": frame_path.split("/")[-1],
      "class_name": 0, "annotations": [], "time": t,
  }


def write_phalp(model, ref, root, *, compress=3):
  """Writes ``ref`` (a synthetic sequence) as a PHALP result: track 3 is the person, seen in
  every frame but MISSING (absent) and LOST (lost: stale entries, tracked_time 1); track 5 is
  a decoy with other parameters in frames 0-2 (then gone); ``tid`` lists 5 before 3, ``tracked_ids`` 3
  before 5, so reading the per-person lists by ``tracked_ids`` picks the wrong person.

  Returns:
    (path of the .pkl, {frame index: person-3 entry as written}, HMR focal).
  """
  os.makedirs(root / "images")
  height, width = ref.image_size
  orient, transl = _camera_frame_params(model, ref.gt, ref.cameras.world_to_cam)
  f_true = float(ref.cameras.K[0, 0, 0])
  f_hmr = 5000.0 / 256.0 * max(height, width)
  cam_hmr = transl * [1.0, 1.0, f_hmr / f_true]  # HMR's depth for its focal: f x / z alike
  rng = np.random.default_rng(0)
  dic, written = {}, {}
  for t in range(NUM_FRAMES):
    name = f"{t + 1:06d}.jpg"
    frame_path = f"_DEMO/clip/img/{name}"
    iio.imwrite(root / "images" / name, _u8(ref.images[t]), extension=".png")
    entries = []
    decoy_mask = np.zeros((height, width))
    decoy_mask[:4, :4] = 1
    decoy = _person(model, ref.gt.betas + 1.0, ref.gt.body_pose[t] * 0.5 + 0.1,
                    rng.normal(size=3), cam_hmr[t] + [0.5, 0, 0], decoy_mask, height, width, t,
                    frame_path)
    if t < DECOY_FRAMES:
      entries.append((5, 0, decoy))
    if t != MISSING:
      me = _person(model, ref.gt.betas, ref.gt.body_pose[t], orient[t], cam_hmr[t],
                   np.asarray(ref.masks[t]), height, width, t, frame_path)
      if t == LOST:  # the lost track repeats frame t-1's detection
        me = dict(written[t - 1])
        entries.append((3, 1, me))
      else:
        entries.append((3, 0, me))
        written[t] = me
    frame = {"time": t, "shot": 0, "frame_path": frame_path}
    for key in EVAL_KEYS + EXTRA_KEYS_1 + EXTRA_KEYS_2:
      frame[key] = []
    for tid, age, entry in entries:  # tracker order: decoy first
      frame["tid"].append(tid)
      frame["bbox"].append(entry["bbox"])
      frame["tracked_time"].append(age)
      for key in EXTRA_KEYS_1 + EXTRA_KEYS_2:
        frame[key].append(entry[key])
    for tid, age, entry in sorted(entries, key=lambda e: e[0]):  # another order on purpose
      if age == 0:
        frame["tracked_ids"].append(tid)
        frame["tracked_bbox"].append(entry["bbox"])
    dic[frame_path] = frame
  os.makedirs(root / "results")
  pkl = root / "results" / "demo_clip.pkl"
  joblib.dump(dic, pkl, compress=compress)
  return pkl, written, f_hmr


@pytest.fixture(scope="module")
def ref(small_body):
  return synthetic_sequence(seed=3, body_model=small_body, cache_dir=False,
                            num_frames=NUM_FRAMES, image_size=40, num_eval_views=0,
                            num_novel_pose=0, hmr_noise="none")


def _image_joints(model, params, k):
  """Pixels [T, 24, 2] of the SMPL joints of camera-frame ``params`` through ``k``."""
  _, joints = body_lib.pose_frames_host(model, params)
  return joints[..., :2] / joints[..., 2:3] * np.diag(k)[:2] + k[:2, 2]


@pytest.mark.parametrize("compress", [3, 0], ids=["compress3", "uncompressed"])
def test_phalp_result_loads_the_tracked_person(small_body, ref, tmp_path, compress):
  pkl, written, f_hmr = write_phalp(small_body, ref, tmp_path, compress=compress)
  seq = load_sequence(str(tmp_path), format="4dhumans")
  kept = [t for t in range(NUM_FRAMES) if t not in (MISSING, LOST)]
  assert len(seq) == len(kept) == 4
  md = seq.metadata
  assert md["track_id"] == 3 and md["track_choice"] == "longest track"
  assert md["dropped_frames"] == [f"_DEMO/clip/img/{MISSING + 1:06d}.jpg",
                                  f"_DEMO/clip/img/{LOST + 1:06d}.jpg"]
  for i, t in enumerate(kept):  # the right person's parameters in every frame
    w = written[t]["smpl"]
    np.testing.assert_allclose(Rotation.from_rotvec(seq.hmr.body_pose[i]).as_matrix(),
                               w["body_pose"], atol=1e-5)
    np.testing.assert_allclose(Rotation.from_rotvec(seq.hmr.global_orient[i]).as_matrix(),
                               w["global_orient"][0], atol=1e-5)
    np.testing.assert_allclose(seq.hmr.transl[i], written[t]["camera"], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(seq.masks[i]), np.asarray(ref.masks[t]) > 0.5)
    np.testing.assert_allclose(md["bbox_xywh"][i], written[t]["bbox"])
  np.testing.assert_allclose(seq.hmr.betas[:10], written[0]["smpl"]["betas"], atol=1e-6)
  assert seq.cameras.K[0, 0, 0] == pytest.approx(f_hmr)
  np.testing.assert_array_equal(seq.cameras.world_to_cam[0], np.eye(4))
  # K and transl reproduce the tool's own 2D joints (PHALP's 2d_joints, in pixels).
  tool = np.stack([_to_pixels(written[t]["2d_joints"], 40, 40) for t in kept])
  ours = _image_joints(small_body, seq.hmr, np.asarray(seq.cameras.K[0], np.float64))
  assert np.abs(ours - tool[:, :24]).max() < 0.5
  np.testing.assert_allclose(md["keypoints_2d"], tool, atol=1e-3)
  assert md["hmr_reprojection_px"] < 0.5
  # Slicing keeps the per-frame metadata aligned.
  part = seq.slice(1, 3)
  assert part.metadata["bbox_xywh"] == md["bbox_xywh"][1:3]
  assert part.metadata["frame_keys"] == md["frame_keys"][1:3]


def test_phalp_track_choice_and_real_focal(small_body, ref, tmp_path):
  pkl, written, f_hmr = write_phalp(small_body, ref, tmp_path)
  decoy = load_sequence(str(pkl), format="4dhumans", track_id=5)
  assert len(decoy) == DECOY_FRAMES and decoy.metadata["track_choice"] == "given"
  assert not np.allclose(decoy.hmr.body_pose[0], load_sequence(str(pkl)).hmr.body_pose[0])
  with pytest.raises(ValueError, match=r"demo_clip\.pkl: track_id expected one of the tracked "
                                       r"ids \[3, 5\].*found 9"):
    load_sequence(str(pkl), track_id=9)
  # The real focal: translation moved so the joints still land where HMR put them.
  f_true = float(ref.cameras.K[0, 0, 0])
  seq = load_sequence(str(pkl), focal_length=f_true)
  kept = [t for t in range(NUM_FRAMES) if t not in (MISSING, LOST)]
  assert seq.cameras.K[0, 0, 0] == pytest.approx(f_true)
  hmr_t = np.stack([written[t]["camera"] for t in kept])
  np.testing.assert_allclose(seq.hmr.transl[:, 2] / hmr_t[:, 2], f_true / f_hmr, rtol=0.1)
  tool = np.stack([_to_pixels(written[t]["2d_joints"], 40, 40) for t in kept])
  ours = _image_joints(small_body, seq.hmr, np.asarray(seq.cameras.K[0], np.float64))
  err = np.linalg.norm(ours - tool[:, :24], axis=-1).max()
  # Not zero: a translation cannot undo the perspective difference between a 781 px and a
  # 48 px focal length for joints off the root's depth. It is what the metadata reports, and
  # about 1 px on this 40-px image (a 45-degree lens, the body 3 m away).
  assert err <= seq.metadata["hmr_reprojection_px"] + 1e-3 and err < 1.5, err
  # Keeping HMR's translation with the real K (the former behaviour) is far off.
  naive = _image_joints(small_body, seq.hmr.replace(transl=hmr_t.astype(np.float32)),
                        np.asarray(seq.cameras.K[0], np.float64))
  assert np.linalg.norm(naive - tool[:, :24], axis=-1).max() > 10 * err


def test_transl_for_camera_keeps_projections():
  """Least-squares translation: exact for the same K and for a body at the root's depth."""
  rng = np.random.default_rng(1)
  k_hmr = fourdhumans.hmr_intrinsics(480, 640)
  assert k_hmr[0, 0] == pytest.approx(5000 / 256 * 640)
  np.testing.assert_allclose(k_hmr[:2, 2], [320, 640 / 2 - 80])
  joints = rng.normal(size=(45, 3)) * [0.3, 0.5, 0.0]  # flat at the root's depth
  t = np.array([0.1, -0.2, 40.0])
  np.testing.assert_array_equal(fourdhumans.transl_for_camera(joints, t, k_hmr, k_hmr), t)
  k = np.array([[700.0, 0, 300], [0, 700, 250], [0, 0, 1]])
  t2 = fourdhumans.transl_for_camera(joints, t, k_hmr, k)
  proj = lambda kk, p: p[:, :2] / p[:, 2:] * np.diag(kk)[:2] + kk[:2, 2]
  np.testing.assert_allclose(proj(k, joints + t2), proj(k_hmr, joints + t), atol=1e-6)
  np.testing.assert_allclose(fourdhumans.transl_for_camera(None, t, k_hmr, k), t2, atol=1e-6)


def test_phalp_bad_input_names_the_file(small_body, ref, tmp_path):
  pkl, _, _ = write_phalp(small_body, ref, tmp_path)
  dic = joblib.load(pkl)
  first = sorted(dic)[0]
  dic[first]["smpl"] = dic[first]["smpl"][:1]  # lists no longer aligned with tid
  joblib.dump(dic, pkl, compress=3)
  with pytest.raises(ValueError, match=r"demo_clip\.pkl: frame '.*000001\.jpg': field 'smpl' "
                                       r"expected 2 entries \(one per 'tid'\), found 1"):
    load_sequence(str(tmp_path), format="4dhumans")
  os.remove(tmp_path / "images" / "000001.jpg")
  dic[first]["smpl"] = dic[sorted(dic)[1]]["smpl"]
  joblib.dump(dic, pkl, compress=3)
  with pytest.raises(FileNotFoundError, match=r"demo_clip\.pkl: 1 of 4 frame images expected"):
    load_sequence(str(tmp_path), format="4dhumans")


def _fit_script(*args, timeout=600):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
             JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "fit.py"), *args],
                        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_cli_reports_a_malicious_result_in_one_line(tmp_path):
  """A PHALP result holding code is refused by fit.py with one line, exit 2, nothing run."""
  marker = tmp_path / "pwned"

  class Payload:
    def __reduce__(self):
      return os.system, (f"touch {marker}",)

  os.makedirs(tmp_path / "images")
  joblib.dump({"f.jpg": {"tid": [1], "x": Payload()}}, tmp_path / "evil.pkl", compress=3)
  out = _fit_script(f"--sequence={tmp_path}", "--format=4dhumans",
                    f"--output_dir={tmp_path / 'run'}")
  assert out.returncode == 2, out.stderr[-2000:]
  assert "Traceback" not in out.stderr
  assert "evil.pkl" in out.stderr and "refusing" in out.stderr
  assert not marker.exists()


def _write_default_clip(root):
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top
  model = body_lib.load_body_model("default")
  clip = synthetic_sequence("default", seed=0, num_frames=NUM_FRAMES, image_size=64,
                            num_eval_views=0, num_novel_pose=0, hmr_noise="none",
                            cache_dir=False, body_model=model)
  return write_phalp(model, clip, root)


def test_fit_cli_track_id_flag(small_body, ref, tmp_path):
  """--track_id reaches the importer: an id PHALP never tracked is one line naming the ids,
  exit 2; the flag is refused for other formats."""
  write_phalp(small_body, ref, tmp_path)
  out = _fit_script(f"--sequence={tmp_path}", "--format=4dhumans", "--track_id=9",
                    f"--output_dir={tmp_path / 'run'}")
  assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
  assert "track_id expected one of the tracked ids [3, 5]" in out.stderr
  out = _fit_script(f"--sequence={tmp_path}", "--format=zju", "--track_id=3",
                    f"--output_dir={tmp_path / 'run'}")
  assert out.returncode == 2 and "--track_id: only for --format=4dhumans" in out.stderr


@pytest.mark.slow
def test_fit_runs_end_to_end_on_a_phalp_result(tmp_path):
  """experiments/fit.py --format=4dhumans on the synthetic benchmark written as a PHALP result
  (4 tracked frames of 64 px) writes a normal run directory."""
  _write_default_clip(tmp_path)
  run = tmp_path / "run"
  out = _fit_script(f"--sequence={tmp_path}", "--format=4dhumans", "--steps=4",
                    "--warmup_steps=2", "--num_gaussians=300", "--batch_frames=2",
                    "--densify_every=0", "--orbit_frames=2", "--num_panels=1", "--novideos",
                    "--nolpips", "--nocheckpoints", f"--output_dir={run}")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "sequence 'demo_clip': 4 frames" in out.stdout
  for name in ("config.json", "flags.txt", "metrics.json", "table.md", "smpl_refined.npz",
               "smpl_hmr.npz", "avatar.npz"):
    assert (run / name).exists(), name
