"""Importer round trips: a synthetic sequence is written in each external layout (as the
format documents it) and read back; the imported cameras and SMPL parameters must place the
same mesh at the same camera-space position as the original."""

import os
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hsjax import body as body_lib
from hsjax.data import load_sequence, synthetic_sequence
from hsjax.data import importers

from test_data_common import small_body  # pylint: disable=unused-import

NUM_FRAMES = 4


@pytest.fixture(scope="module")
def source(small_body):
  return synthetic_sequence(seed=5, body_model=small_body, cache_dir=False,
                            num_frames=NUM_FRAMES, image_size=48, num_eval_views=2,
                            num_novel_pose=0, hmr_noise="none")


def _u8(x):
  return np.round(np.clip(np.asarray(x), 0, 1) * 255).astype(np.uint8)


def _pelvis(model, betas):
  shaped = np.asarray(model.v_template) + np.asarray(model.shapedirs) @ np.asarray(betas)
  return np.asarray(model.J_regressor)[0] @ shaped


def _camera_joints(model, params, w2c):
  """Joints [T, 24, 3] in each frame's camera frame."""
  _, joints = body_lib.pose_frames_host(model, params)
  w2c = np.asarray(w2c, np.float64)
  return np.einsum("tij,tkj->tki", w2c[:, :3, :3], joints) + w2c[:, None, :3, 3]


def _assert_same_camera_space(model, seq, ref, atol=2e-4):
  np.testing.assert_allclose(
      _camera_joints(model, seq.hmr, seq.cameras.world_to_cam),
      _camera_joints(model, ref.gt, ref.cameras.world_to_cam), atol=atol)
  np.testing.assert_allclose(seq.cameras.K, ref.cameras.K, rtol=1e-5)


def _assert_frames(seq, ref, inverted_mask=False):
  np.testing.assert_array_equal(np.asarray(seq.images), ref.images)
  masks = np.asarray(seq.masks)
  np.testing.assert_allclose(masks, ref.masks, atol=1e-6)
  del inverted_mask


def _camera_frame_params(model, params, w2c):
  """SMPL parameters expressed in the camera frame (what a monocular HMR network outputs)."""
  rot, t = np.asarray(w2c[:, :3, :3], np.float64), np.asarray(w2c[:, :3, 3], np.float64)
  j0 = _pelvis(model, params.betas)
  orient = (Rotation.from_matrix(rot) * Rotation.from_rotvec(params.global_orient)).as_rotvec()
  transl = np.einsum("tij,tj->ti", rot, j0 + np.asarray(params.transl)) + t - j0
  return orient, transl


# ------------------------------------------------------------------------------------------
# 4D-Humans


def _rle_encode(mask):
  """COCO compressed RLE of a binary mask (column-major runs, delta + 6-bit ASCII)."""
  flat = (np.asarray(mask) > 0.5).T.reshape(-1)
  runs, value, count = [], 0, 0
  for v in flat:
    if v != value:
      runs.append(count)
      value, count = v, 0
    count += 1
  runs.append(count)
  out = bytearray()
  for i, x in enumerate(runs):
    if i > 2:
      x -= runs[i - 2]
    more = True
    while more:
      c = x & 0x1F
      x >>= 5
      more = (x != -1) if (c & 0x10) else (x != 0)
      if more:
        c |= 0x20
      out.append(c + 48)
  return {"size": list(mask.shape), "counts": bytes(out)}


def test_coco_rle_round_trip():
  rng = np.random.default_rng(0)
  mask = (rng.random((37, 23)) > 0.7).astype(np.float32)
  mask[5:30, 3:20] = 1.0  # long runs exercise multi-character counts and negative deltas
  np.testing.assert_array_equal(importers.decode_coco_rle(_rle_encode(mask)), mask)
  assert importers.decode_coco_rle({"size": [2, 2], "counts": [1, 2, 1]}).tolist() == [
      [0.0, 1.0], [1.0, 0.0]]


# PHALP results as PHALP writes them: tests/test_importers_phalp.py.


# ------------------------------------------------------------------------------------------
# NeuMan


def _write_neuman(model, ref, root, scale=2.5):
  for d in ("images", "segmentations", "sparse"):
    os.makedirs(root / d)
  rng = np.random.default_rng(0)
  k = np.asarray(ref.cameras.K[0], np.float64)
  w2c = np.asarray(ref.cameras.world_to_cam, np.float64)
  j0 = _pelvis(model, ref.gt.betas)
  with open(root / "sparse" / "cameras.txt", "w") as f:
    f.write("# Camera list\n")
    f.write(f"1 PINHOLE 48 48 {k[0, 0]} {k[1, 1]} {k[0, 2]} {k[1, 2]}\n")
  poses, alignments, lines = [], {}, ["# Image list\n"]
  for t in range(NUM_FRAMES):
    name = f"{t + 1:05d}.png"  # frame 0 of the video was not registered by COLMAP
    iio.imwrite(root / "images" / name, _u8(ref.images[t]))
    iio.imwrite(root / "segmentations" / name, _u8(1.0 - ref.masks[t]))  # 0 = person
    q = Rotation.from_matrix(w2c[t, :3, :3]).as_quat()  # x y z w
    tc = w2c[t, :3, 3] * scale  # COLMAP world in its own units
    lines.append(f"{t + 1} {q[3]} {q[0]} {q[1]} {q[2]} {tc[0]} {tc[1]} {tc[2]} 1 {name}\n")
    lines.append("10.0 12.0 -1 20.0 22.0 -1\n")
    raw_root = Rotation.from_rotvec(rng.normal(size=3) * 0.5)  # a camera-frame root estimate
    rot = Rotation.from_rotvec(ref.gt.global_orient[t]) * raw_root.inv()
    r = rot.as_matrix()
    t_metric = j0 + ref.gt.transl[t] - r @ j0
    a = np.zeros((4, 3))
    a[:3] = (scale * r).T
    a[3] = scale * t_metric
    alignments[name] = a
    poses.append(np.concatenate([raw_root.as_rotvec(), ref.gt.body_pose[t].reshape(-1)]))
  with open(root / "sparse" / "images.txt", "w") as f:
    f.writelines(lines)
  # As preprocess/optimize_smpl.py writes it: one entry per video frame, indexed by the frame
  # number in the image name; frame 0 (unregistered) holds a pose that must not be used.
  joblib = pytest.importorskip("joblib")
  poses.insert(0, np.full(72, 0.7))
  joblib.dump({1: {"pose": poses, "betas": [np.asarray(ref.gt.betas)] * (NUM_FRAMES + 1)}},
              root / "smpl_output_optimized.pkl")
  np.save(root / "alignments.npy", alignments, allow_pickle=True)


def test_neuman_round_trip(small_body, source, tmp_path):
  _write_neuman(small_body, source, tmp_path)
  seq = load_sequence(str(tmp_path), body_model=small_body)
  assert seq.metadata["format"] == "neuman"
  assert seq.metadata["alignment_scale"]["median"] == pytest.approx(2.5)
  _assert_same_camera_space(small_body, seq, source)
  # The world is metric again: camera centres match the original ones.
  np.testing.assert_allclose(seq.cameras.world_to_cam[:, :3, 3],
                             source.cameras.world_to_cam[:, :3, 3], atol=1e-5)
  np.testing.assert_array_equal(np.asarray(seq.images), source.images)
  # NeuMan: every pixel that is not background (255) is the person.
  np.testing.assert_array_equal(np.asarray(seq.masks), _u8(1.0 - source.masks) < 255)
  assert seq.metadata["frame_ids"] == [1, 2, 3, 4]
  assert seq.gt is None and seq.depth is None


def test_neuman_bad_input(small_body, source, tmp_path):
  _write_neuman(small_body, source, tmp_path)
  with open(tmp_path / "sparse" / "cameras.txt", "w") as f:
    f.write("1 OPENCV 48 48 50 50 24 24 0.1 0 0 0\n")
  with pytest.raises(ValueError, match="has model OPENCV; expected PINHOLE"):
    load_sequence(str(tmp_path), body_model=small_body)


# ------------------------------------------------------------------------------------------
# PeopleSnapshot


def _write_peoplesnapshot(ref, root, extra_images=0):
  for d in ("images", "masks", "poses"):
    os.makedirs(root / d)
  for t in range(NUM_FRAMES + extra_images):
    s = min(t, NUM_FRAMES - 1)
    iio.imwrite(root / "images" / f"image_{t:04d}.png", _u8(ref.images[s]))
    np.save(root / "masks" / f"mask_{t:04d}.npy", np.asarray(ref.masks[s]))
  np.savez(root / "cameras.npz", intrinsic=np.asarray(ref.cameras.K[0]),
           extrinsic=np.asarray(ref.cameras.world_to_cam[0]), height=48, width=48)
  np.savez(root / "poses" / "anim_nerf_train.npz", betas=np.asarray(ref.gt.betas)[None],
           global_orient=ref.gt.global_orient, body_pose=ref.gt.body_pose.reshape(-1, 69),
           transl=ref.gt.transl)


def test_peoplesnapshot_round_trip(small_body, source, tmp_path):
  _write_peoplesnapshot(source, tmp_path)
  seq = load_sequence(str(tmp_path), body_model=small_body)
  assert seq.metadata["format"] == "peoplesnapshot"
  _assert_same_camera_space(small_body, seq, source, atol=1e-6)
  _assert_frames(seq, source)
  np.testing.assert_array_equal(seq.gt.body_pose, seq.hmr.body_pose)
  noisy = load_sequence(str(tmp_path), format="peoplesnapshot", body_model=small_body,
                        hmr_noise="hmr2_like", seed=1)
  assert not np.allclose(noisy.hmr.body_pose, noisy.gt.body_pose)
  np.testing.assert_array_equal(noisy.gt.body_pose, seq.gt.body_pose)


def test_peoplesnapshot_split_needs_frames(small_body, source, tmp_path):
  _write_peoplesnapshot(source, tmp_path, extra_images=3)
  with pytest.raises(ValueError, match=r"4 poses but 7 images selected \(all images\); pass "
                     r"frames="):
    load_sequence(str(tmp_path), body_model=small_body)
  seq = load_sequence(str(tmp_path), body_model=small_body, frames=slice(0, 4))
  assert len(seq) == NUM_FRAMES


def _write_ps_subject(ref, root, num_images, splits):
  """A PeopleSnapshot folder of ``num_images`` tiny frames with one pose file per split."""
  for d in ("images", "masks", "poses"):
    os.makedirs(root / d)
  img, mask = _u8(ref.images[0]), np.asarray(ref.masks[0])
  for t in range(num_images):
    iio.imwrite(root / "images" / f"image_{t:04d}.png", img)
    np.save(root / "masks" / f"mask_{t:04d}.npy", mask)
  np.savez(root / "cameras.npz", intrinsic=np.asarray(ref.cameras.K[0]),
           extrinsic=np.asarray(ref.cameras.world_to_cam[0]), height=48, width=48)
  for split, num in splits.items():
    idx = np.arange(num) % NUM_FRAMES
    np.savez(root / "poses" / f"anim_nerf_{split}.npz", betas=np.asarray(ref.gt.betas)[None],
             global_orient=ref.gt.global_orient[idx],
             body_pose=ref.gt.body_pose[idx].reshape(-1, 69),
             transl=ref.gt.transl[0] + np.arange(num)[:, None] * 1e-3)


def test_peoplesnapshot_published_splits(small_body, source, tmp_path):
  """male-3-sport: train = images[1:231:2] (115), test = images[230:461:6] (39), as in
  InstantAvatar's config; the folder name selects the subject."""
  from hsjax.data.importers import peoplesnapshot  # pylint: disable=g-import-not-at-top
  root = tmp_path / "male-3-sport"
  _write_ps_subject(source, root, 461, {"train": 115, "test": 39, "val": 1})
  train = load_sequence(str(root), body_model=small_body)
  assert len(train) == 115 and train.metadata["split_frames"] == [1, 231, 2]
  assert [os.path.basename(p) for p in train.images.paths[:2]] == ["image_0001.png",
                                                                    "image_0003.png"]
  assert os.path.basename(train.masks.paths[-1]) == "mask_0229.npy"
  np.testing.assert_allclose(train.hmr.transl[7] - train.hmr.transl[6], 1e-3, atol=1e-6)
  test = load_sequence(str(root), body_model=small_body, split="test")
  assert len(test) == 39 and os.path.basename(test.images.paths[-1]) == "image_0458.png"
  val = load_sequence(str(root), body_model=small_body, split="val")
  assert [os.path.basename(p) for p in val.images.paths] == ["image_0230.png"]
  assert peoplesnapshot.split_frames("male-4-casual", "test") == slice(660, 873, 6)
  with pytest.raises(ValueError, match=r"split 'tset': expected one of \['test', 'train', "
                     r"'val'\]"):
    load_sequence(str(root), body_model=small_body, split="tset")
  with pytest.raises(ValueError, match=r"subject 'me' has no published split; expected one of"):
    peoplesnapshot.split_frames("me", "train")
  # Too few images for the published split: the error says which frames were selected.
  for t in range(420, 461):
    os.remove(root / "images" / f"image_{t:04d}.png")
    os.remove(root / "masks" / f"mask_{t:04d}.npy")
  with pytest.raises(ValueError, match=r"39 poses but 32 images selected \(images\[230:461:6\]\)"):
    load_sequence(str(root), body_model=small_body, split="test")


# ------------------------------------------------------------------------------------------
# ZJU-MoCap


def _write_zju(model, ref, root):
  views = [ref, *ref.eval_views]
  cams = {"K": [], "R": [], "T": [], "D": []}
  for v in views:
    cams["K"].append(np.asarray(v.cameras.K[0], np.float64))
    cams["R"].append(np.asarray(v.cameras.world_to_cam[0, :3, :3], np.float64))
    cams["T"].append(np.asarray(v.cameras.world_to_cam[0, :3, 3], np.float64)[:, None] * 1000)
    cams["D"].append(np.zeros((5, 1)))
  ims = []
  for t in range(NUM_FRAMES):
    paths = []
    for c, v in enumerate(views):
      rel = f"Camera_B{c + 1}/{t:06d}.png"
      os.makedirs(root / os.path.dirname(rel), exist_ok=True)
      os.makedirs(root / "mask_cihp" / os.path.dirname(rel), exist_ok=True)
      iio.imwrite(root / rel, _u8(v.images[t]))
      labels = np.where(np.asarray(v.masks[t]) >= 0.5, 7, 0).astype(np.uint8)  # CIHP parts
      iio.imwrite(root / "mask_cihp" / rel, labels)
      paths.append(rel)
    ims.append({"ims": paths})
  np.save(root / "annots.npy", {"cams": cams, "ims": ims}, allow_pickle=True)
  os.makedirs(root / "new_params")
  j0 = _pelvis(model, ref.gt.betas)
  for t in range(NUM_FRAMES):
    rh = Rotation.from_rotvec(ref.gt.global_orient[t]).as_matrix()
    th = j0 + ref.gt.transl[t] - rh @ j0
    poses = np.concatenate([np.zeros(3), ref.gt.body_pose[t].reshape(-1)])[None]
    np.save(root / "new_params" / f"{t}.npy",
            {"poses": poses, "Rh": ref.gt.global_orient[t][None], "Th": th[None],
             "shapes": np.asarray(ref.gt.betas)[None]}, allow_pickle=True)


def test_zju_round_trip(small_body, source, tmp_path):
  _write_zju(small_body, source, tmp_path)
  seq = load_sequence(str(tmp_path), body_model=small_body)
  assert seq.metadata["format"] == "zju" and len(seq.eval_views) == 2
  _assert_same_camera_space(small_body, seq, source)
  np.testing.assert_array_equal(np.asarray(seq.images), source.images)
  np.testing.assert_array_equal(np.asarray(seq.masks), source.masks >= 0.5)
  view = seq.eval_views[1]
  np.testing.assert_allclose(view.cameras.world_to_cam, source.eval_views[1].cameras.world_to_cam,
                             atol=1e-6)
  np.testing.assert_array_equal(np.asarray(view.images), source.eval_views[1].images)
  assert view.hmr is seq.hmr
  # The re-rooted parameters are the original ones (global_orient about the pelvis).
  np.testing.assert_allclose(seq.gt.transl, source.gt.transl, atol=1e-5)


def test_experiment_scripts_reroot_with_their_body_model(small_body, source, tmp_path):
  """The scripts' loader (experiments/common.py, behind --body_model) hands the body model to
  importers that re-root, so the pelvis the rotation pivots about is the data's."""
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments"))
  import common  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  _write_zju(small_body, source, tmp_path)
  seq = common.load_sequence({"sequence": str(tmp_path), "format": "auto", "track_id": -1},
                             body_model=small_body)
  np.testing.assert_allclose(seq.gt.transl, source.gt.transl, atol=1e-5)


def test_zju_bad_input(small_body, source, tmp_path):
  _write_zju(small_body, source, tmp_path)
  np.save(tmp_path / "new_params" / "2.npy", {"poses": np.zeros((1, 69)), "Rh": np.zeros((1, 3)),
                                               "Th": np.zeros((1, 3)),
                                               "shapes": np.zeros((1, 10))}, allow_pickle=True)
  with pytest.raises(ValueError, match=r"2.npy: field 'poses' must have 72 values, found 69"):
    load_sequence(str(tmp_path), body_model=small_body)
  with pytest.raises(ValueError, match="camera 5 out of range; 3 cameras"):
    load_sequence(str(tmp_path), body_model=small_body, camera=5)


def _write_zju_protocol(root, num_frames=501, num_cams=6, size=8):
  """A Neural Body layout with ``num_frames`` entries in ``ims``; files exist only for the
  frames of the published splits."""
  k = np.array([[10.0, 0, 4], [0, 10.0, 4], [0, 0, 1]])
  cams = {"K": [k] * num_cams, "R": [np.eye(3)] * num_cams,
          "T": [np.array([[0.0], [0.0], [3000.0]])] * num_cams, "D": [np.zeros((5, 1))] * num_cams}
  used = set(range(0, 500, 5)) | set(range(0, 510, 30))
  img = np.full((size, size, 3), 128, np.uint8)
  mask = np.zeros((size, size), np.uint8)
  mask[2:6, 3:5] = 1
  ims = []
  os.makedirs(root / "new_params")
  for t in range(num_frames):
    paths = [f"Camera_B{c + 1}/{t:06d}.jpg" for c in range(num_cams)]
    ims.append({"ims": paths})
    if t not in used:
      continue
    for rel in paths:
      for d in (root, root / "mask_cihp"):
        os.makedirs(d / os.path.dirname(rel), exist_ok=True)
      iio.imwrite(root / rel.replace(".jpg", ".png"), img, extension=".png")
      os.replace(root / rel.replace(".jpg", ".png"), root / rel)
      iio.imwrite(root / "mask_cihp" / rel.replace(".jpg", ".png"), mask)
    np.save(root / "new_params" / f"{t}.npy",
            {"poses": np.zeros((1, 72)), "Rh": np.zeros((1, 3)), "Th": np.full((1, 3), t / 1000),
             "shapes": np.zeros((1, 10))}, allow_pickle=True)
  np.save(root / "annots.npy", {"cams": cams, "ims": ims}, allow_pickle=True)


def test_zju_published_splits(small_body, tmp_path):
  """GauHuman's protocol: train = camera 4, ims[0:500:5], no eval views; test = camera 4 at
  ims[0:510:30] with every other camera as an eval view."""
  _write_zju_protocol(tmp_path)
  train = load_sequence(str(tmp_path), body_model=small_body, split="train")
  assert len(train) == 100 and train.eval_views == [] and train.metadata["camera"] == 4
  assert train.images.paths[1].endswith("Camera_B5/000005.jpg")
  np.testing.assert_allclose(train.gt.transl[1] - train.gt.transl[0], 5e-3, atol=1e-6)
  test = load_sequence(str(tmp_path), body_model=small_body, split="test")
  assert len(test) == 17 and test.images.paths[-1].endswith("Camera_B5/000480.jpg")
  assert [v.metadata["camera"] for v in test.eval_views] == [0, 1, 2, 3, 5]
  with pytest.raises(ValueError, match="fixes the camera, frames and evaluation cameras"):
    load_sequence(str(tmp_path), body_model=small_body, split="train", camera=1)
  with pytest.raises(ValueError, match=r"split 'val': expected one of \['test', 'train'\]"):
    load_sequence(str(tmp_path), body_model=small_body, split="val")


def test_zju_split_needs_the_frames(small_body, tmp_path):
  _write_zju_protocol(tmp_path, num_frames=300)
  with pytest.raises(ValueError, match=r"annots.npy: split 'train' needs frames 0:500:5 of "
                     r"'ims', found 300 frames"):
    load_sequence(str(tmp_path), body_model=small_body, split="train")


def test_format_detection(small_body, source, tmp_path):
  body_lib.SMPL_JOINT_NAMES  # pylint: disable=pointless-statement
  _write_peoplesnapshot(source, tmp_path / "ps")
  _write_zju(small_body, source, tmp_path / "zju")
  from hsjax.data.loaders import detect_format  # pylint: disable=g-import-not-at-top
  assert detect_format(str(tmp_path / "ps")) == "peoplesnapshot"
  assert detect_format(str(tmp_path / "zju")) == "zju"


def test_missing_files_are_named_in_one_line(small_body, source, tmp_path):
  """PeopleSnapshot / ZJU / NeuMan without their files: one FileNotFoundError naming all."""
  _write_peoplesnapshot(source, tmp_path / "ps")
  os.remove(tmp_path / "ps" / "cameras.npz")
  os.remove(tmp_path / "ps" / "poses" / "anim_nerf_train.npz")
  with pytest.raises(FileNotFoundError, match=r"ps: not a PeopleSnapshot subject .*missing "
                     r"cameras\.npz, poses/anim_nerf_train\.npz or poses/train\.npz$"):
    load_sequence(str(tmp_path / "ps"), format="peoplesnapshot", body_model=small_body)
  os.makedirs(tmp_path / "zju")
  np.save(tmp_path / "zju" / "annots.npy", {"cams": {}, "ims": []}, allow_pickle=True)
  with pytest.raises(FileNotFoundError, match=r"missing new_params or params, mask_cihp or mask"):
    load_sequence(str(tmp_path / "zju"), format="zju", body_model=small_body)
  os.makedirs(tmp_path / "neuman" / "images")
  with pytest.raises(FileNotFoundError, match=r"not a NeuMan scene: missing segmentations, "
                     r"sparse/cameras\.txt, sparse/images\.txt, smpl_output_optimized\.pkl, "
                     r"alignments\.npy"):
    load_sequence(str(tmp_path / "neuman"), format="neuman", body_model=small_body)
