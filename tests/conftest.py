"""Shared pytest fixtures.

Two host CPU devices are configured before JAX initialises, so sharding tests can run on a
CPU-only machine; everything else sees them as ordinary devices. XLA's CPU backend compiles
without LLVM optimisation: the tests' workloads are tiny, so compilation is most of their
time, and unoptimised code compiles about a third faster. A compilation cache private to the
session lets later test modules (which drop their predecessors' executables) and the scripts
that tests start reuse what was compiled before. Both settings reach those scripts through
the environment.
"""

import atexit
import os
import shutil
import tempfile

# Must run before the first `import jax` anywhere in the test session.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2 "
                      "--xla_backend_optimization_level=0")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE_DIR = tempfile.mkdtemp(prefix="hsjax-tests-xla-cache-")
  atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import gc  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(autouse=True)
def collect_garbage_in_the_test_that_made_it():
  """Collects garbage at the end of every test, so that an object a test leaks (ffmpeg's
  pipes when it refuses a file) warns in that test, under that test's warning filters,
  rather than in whichever later test happens to trigger the collector."""
  yield
  gc.collect()


@pytest.fixture(autouse=True, scope="module")
def release_compiled_code_after_each_module():
  """Drops JAX's compiled executables after every test module. Each one holds memory maps
  of its own code, and a whole-suite process that kept every executable would reach the
  kernel's per-process map limit (vm.max_map_count, 65,530 by default), where XLA's next
  compilation crashes."""
  yield
  jax.clear_caches()
  gc.collect()


@pytest.fixture
def key():
  return jax.random.key(0)


@pytest.fixture
def x64():
  """Runs the test with 64-bit floats enabled (finite-difference gradient checks)."""
  with jax.enable_x64(True):
    yield
