"""One process of a multi-process ``fit_many`` (started by tests/test_multihost.py).

  python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR CHECKPOINT_DIR [ROUNDS]

Joins the run on localhost:PORT (CPU devices, gloo collectives), fits the two subjects of
tests/test_fit.py over a "subject" mesh of all processes' devices in ROUNDS rounds (default 1),
and writes ``OUT_DIR/params.npz`` (process 0: every subject's parameters, gathered) and
``OUT_DIR/process-<id>.json`` (the subjects this process checkpointed).
"""

import dataclasses
import json
import os
import sys

from hsjax.fit import multihost


def main(process_id: int, num_processes: int, port: int, out_dir: str, checkpoint_dir: str,
         rounds: int = 1):
  multihost.initialize(f"localhost:{port}", num_processes, process_id)
  import jax  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import numpy as np  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import test_fit  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import body as body_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax import fit as fit_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from hsjax.fit import checkpoints  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  sequences = test_fit.two_subjects()
  mesh = jax.make_mesh((jax.device_count(),), ("subject",))
  config = dataclasses.replace(test_fit.CONFIG, rounds=rounds)
  result = fit_lib.fit_many(sequences, config, keys=test_fit.many_keys(),
                            losses=test_fit.LOSSES, mesh=mesh,
                            body_model=body_lib.load_body_model("default"),
                            checkpoint_dir=checkpoint_dir)
  params = multihost.to_host(result.state.params)
  owned = checkpoints.owned_subjects(len(sequences), mesh)
  with open(os.path.join(out_dir, f"process-{process_id}.json"), "w") as f:
    json.dump({"owned": owned, "devices": jax.device_count(),
               "total": result.history["total"][-1]}, f)
  if process_id == 0:
    leaves = jax.tree_util.tree_leaves(params)
    np.savez(os.path.join(out_dir, "params.npz"), *leaves)


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5],
       *(int(a) for a in sys.argv[6:7]))
