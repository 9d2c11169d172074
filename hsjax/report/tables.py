"""Markdown tables of evaluation results (``table.md``, README and ablation tables)."""

from __future__ import annotations

from typing import Any

from hsjax import evaluation


def _fmt(value, digits: int = 1) -> str:
  if value is None:
    return "n/a"
  return f"{value:.{digits}f}"


_POSE_HEADERS = {"mpjpe": "MPJPE", "pa_mpjpe": "PA-MPJPE", "pve": "PVE", "v2v": "V2V",
                 "root_error": "root", "w_mpjpe": "W-MPJPE", "accel_error": "accel (world)",
                 "accel_error_aligned": "accel (aligned)"}


def pose_table(pose: dict[str, Any]) -> str:
  """Markdown table of :func:`hsjax.evaluation.evaluate_poses`' result."""
  keys = [k for k in evaluation.POSE_METRICS if k in pose["hmr"]]
  lines = ["| poses | " + " | ".join(_POSE_HEADERS[k] for k in keys) + " |",
           "| --- | " + " | ".join("---:" for _ in keys) + " |"]
  lines.append("| HMR initialisation | " + " | ".join(_fmt(pose["hmr"][k]) for k in keys) + " |")
  lines.append("| refined | " + " | ".join(_fmt(pose["refined"][k]) for k in keys) + " |")
  imp = pose.get("improvement_pct", {})
  lines.append("| improvement | " + " | ".join(
      (f"{imp[k]:+.1f} %" if k in imp else "n/a") for k in keys) + " |")
  return "\n".join(lines)


def image_table(result: dict[str, Any]) -> str:
  """Markdown table of the image summaries of :func:`hsjax.evaluation.evaluate_run`."""
  rows = [("training view", "train_view"), ("novel view", "novel_view"),
          ("novel pose", "novel_pose")]
  rows = [(label, result[key]) for label, key in rows if key in result]
  if not rows:
    return ""
  lines = ["| images | PSNR ↑ | SSIM ↑ | LPIPS ↓ | PSNR mask | SSIM mask | PSNR full | SSIM full "
           "| images |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for label, s in rows:
    lines.append(f"| {label} | {_fmt(s['psnr'], 2)} | {_fmt(s['ssim'], 4)} | "
                 f"{_fmt(s['lpips'], 4)} | {_fmt(s['psnr_mask'], 2)} | "
                 f"{_fmt(s['ssim_mask'], 4)} | {_fmt(s['psnr_full'], 2)} | "
                 f"{_fmt(s['ssim_full'], 4)} | {s['num_images']} |")
  return "\n".join(lines)


def results_markdown(result: dict[str, Any], title: str = "Results") -> str:
  """``table.md``: pose and image tables with a note on the protocol."""
  parts = [f"# {title}", ""]
  if "sequence" in result:
    parts += [f"Sequence `{result['sequence']}`, {result['num_frames']} frames.", ""]
  if "pose" in result:
    parts += ["## Pose error (mm, lower is better)", "", pose_table(result["pose"]), ""]
  table = image_table(result)
  if table:
    parts += ["## Image quality", "", table, "",
              "PSNR (dB) and SSIM inside the person's bounding box (grown by "
              f"{result.get('bbox_margin', 8)} px) are the headline numbers; *mask* = person "
              "mask only, *full* = whole frame. Targets are composited over the render "
              "background with the person mask."]
    lp = result.get("lpips", {})
    if not lp.get("available", False):
      parts += ["", f"LPIPS: n/a ({lp.get('reason', 'unavailable')})."]
    parts.append("")
  if "fit" in result:
    fit = result["fit"]
    parts += ["## Fit", "", f"{fit.get('steps')} steps in {_fmt(fit.get('time_s'))} s "
              f"(final loss {_fmt(fit.get('final_loss'), 4)}).", ""]
  return "\n".join(parts)


def ablation_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
  """One Markdown table comparing runs: ``rows`` of (label, evaluate_run result).

  A row's pose columns come from ``result["pose"]["refined"]`` (the poses that run ends
  with; for the HMR row they are the HMR poses); drift is ``result["drift"]["mean_mm"]``,
  the step time ``result["fit"]["step_ms"]``; missing entries print ``n/a``.
  """
  lines = ["| method | MPJPE ↓ | PA-MPJPE ↓ | V2V ↓ | root ↓ | novel-view PSNR ↑ | "
           "novel-view SSIM ↑ | novel-view LPIPS ↓ | novel-pose PSNR ↑ | train PSNR ↑ | "
           "drift (mm) ↓ | step (ms) |",
           "| --- |" + " ---: |" * 11]
  for label, r in rows:
    pose = r.get("pose", {}).get("refined", {})

    def img(key, metric, r=r):
      return r.get(key, {}).get(metric)

    lines.append(
        f"| {label} | {_fmt(pose.get('mpjpe'))} | {_fmt(pose.get('pa_mpjpe'))} | "
        f"{_fmt(pose.get('v2v'))} | {_fmt(pose.get('root_error'))} | "
        f"{_fmt(img('novel_view', 'psnr'), 2)} | {_fmt(img('novel_view', 'ssim'), 4)} | "
        f"{_fmt(img('novel_view', 'lpips'), 4)} | {_fmt(img('novel_pose', 'psnr'), 2)} | "
        f"{_fmt(img('train_view', 'psnr'), 2)} | {_fmt(img('drift', 'mean_mm'))} | "
        f"{_fmt(img('fit', 'step_ms'), 0)} |")
  return "\n".join(lines)
