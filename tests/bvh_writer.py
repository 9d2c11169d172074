"""A BVH writer for tests: any skeleton, per-joint Euler orders, file axes."""

import numpy as np


def write_bvh(path, joints, axes, angles_deg, root_pos, orders, frame_time=1 / 30):
  """Writes a BVH of ``joints`` [(name, parent, offset)] with offsets turned by ``axes``
  (SMPL-like -> file coordinates), per-joint Euler ``orders`` and angles [T, J, 3] (degrees),
  root positions [T, 3] and ``frame_time`` seconds."""
  children = {name: [] for name, _, _ in joints}
  for name, parent, _ in joints:
    if parent is not None:
      children[parent].append(name)
  info = {name: (parent, np.asarray(off, float)) for name, parent, off in joints}
  index = {name: j for j, (name, _, _) in enumerate(joints)}
  out, order = ["HIERARCHY"], []

  def emit(name, depth):
    pad = "  " * depth
    parent, off = info[name]
    order.append(name)
    out.append(f"{pad}{'ROOT' if parent is None else 'JOINT'} {name}")
    out.append(pad + "{")
    out.append(f"{pad}  OFFSET {' '.join(f'{v:.6f}' for v in axes @ off)}")
    rot = " ".join(f"{a}rotation" for a in orders[index[name]])
    out.append(f"{pad}  CHANNELS {'6 Xposition Yposition Zposition ' if parent is None else '3 '}"
               f"{rot}")
    for c in children[name]:
      emit(c, depth + 1)
    if not children[name]:
      out.extend([f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET 0 0 3", pad + "  }"])
    out.append(pad + "}")

  emit(joints[0][0], 0)
  out += ["MOTION", f"Frames: {len(angles_deg)}", f"Frame Time: {frame_time:.7f}"]
  for t in range(len(angles_deg)):
    vals = list(axes @ np.asarray(root_pos[t], float))
    for name in order:
      vals += list(angles_deg[t, index[name]])
    out.append(" ".join(f"{v:.6f}" for v in vals))
  path.write_text("\n".join(out) + "\n")
