"""Shared fixtures: the offline TFDS folder beside the checkout and tiny run configs."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TFDS_DIR = REPO.parent / 'shared' / 'tfds'

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# One persistent XLA compilation cache for the whole test run: the pytest-xdist workers and every
# subprocess they start inherit these variables (set here, before any test module imports jax),
# so the same tiny programs compiled by dozens of tests and `gan-jax` subprocesses are compiled
# once. A cache hit loads the same executable, so results are unchanged; it halved the CPU time
# of a tiny `gan-jax train` subprocess (19.5 s -> 9.7 s user). Every program is cached, however
# short its compile: a tiny run's ~70 small eager ops and jits (model init, sampling, metrics;
# ~30 ms each) are as many compiles, and caching them cut a warm in-process tiny run from 9.9 s
# to 5.1 s, and tests/test_reliability.py from 190 s to 146 s (December 5, 2026). One folder
# per run (the xdist controller sets it before starting its workers, and removes it at the end).
_XLA_CACHE = None
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  import tempfile  # pylint: disable=g-import-not-at-top

  _XLA_CACHE = os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(
    prefix='gan_jax_tests_xla_cache_'
  )
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
# The tests compile hundreds of distinct small programs and run each a few times, so XLA's
# optimisation passes cost more than they save: JAX's `jax_disable_most_optimizations` (XLA's
# backend optimisation level 0, LLVM's expensive passes off) for every test and every
# subprocess it starts (JAX_DISABLE_MOST_OPTIMIZATIONS=0 turns it off for a run). It changes
# the rounding of some sums, not what is computed; the persistent cache keys on it. Tests
# that pin results bit for bit as users get them (tests/test_state_hashes.py), or whose
# tolerances were measured on the optimised programs, are marked `xla_optimized` and run
# with XLA's default optimisations (`_xla_optimisations` below).
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')


# Opt-in: GAN_JAX_TEST_COMPILE_LOG=<folder> makes each pytest process append one JSON line per
# test to <folder>/<pid>.jsonl: the seconds JAX spent tracing, lowering and in XLA's compiler
# (`/jax/core/compile/*` events; the compiler's figure includes loads from the persistent
# cache, whose seconds and count are logged apart) in this process, not in subprocesses.
# `python scripts/compile_seconds.py <folder>` sums them per module.
_COMPILE_LOG = os.environ.get('GAN_JAX_TEST_COMPILE_LOG')
_COMPILE_EVENTS = {
  '/jax/core/compile/jaxpr_trace_duration': 'trace_s',
  '/jax/core/compile/jaxpr_to_mlir_module_duration': 'lower_s',
  '/jax/core/compile/backend_compile_duration': 'compile_s',
  '/jax/compilation_cache/cache_retrieval_time_sec': 'cache_load_s',
}
_compile_totals: dict[str, float] = {}


def _on_duration(event: str, seconds: float, **_) -> None:
  key = _COMPILE_EVENTS.get(event)
  if key is not None:
    _compile_totals[key] = _compile_totals.get(key, 0.0) + seconds
    if key == 'cache_load_s':
      _compile_totals['cache_hits'] = _compile_totals.get('cache_hits', 0) + 1


def pytest_sessionstart(session):
  """Starts the opt-in compile log (GAN_JAX_TEST_COMPILE_LOG)."""
  del session
  if _COMPILE_LOG:
    import jax  # pylint: disable=g-import-not-at-top

    os.makedirs(_COMPILE_LOG, exist_ok=True)
    jax.monitoring.register_event_duration_secs_listener(_on_duration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  """Writes a test's compile seconds to the opt-in compile log."""
  del nextitem
  if not _COMPILE_LOG:
    yield
    return
  import json  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top

  _compile_totals.clear()
  start = time.perf_counter()
  yield
  line = {'test': item.nodeid, 'wall_s': time.perf_counter() - start, **_compile_totals}
  with open(os.path.join(_COMPILE_LOG, f'{os.getpid()}.jsonl'), 'a') as f:
    f.write(json.dumps(line) + '\n')


def pytest_unconfigure(config):
  """Removes the run's XLA compilation cache (in the process that made it)."""
  del config
  if _XLA_CACHE is not None:
    import shutil  # pylint: disable=g-import-not-at-top

    shutil.rmtree(_XLA_CACHE, ignore_errors=True)


@pytest.fixture(scope='session', autouse=True)
def metrics_cache(tmp_path_factory) -> str:
  """A session-wide GAN_JAX_CACHE_DIR, so tests never write into the user's ~/.cache and
  reference features computed by one test are reused by the next (subprocesses inherit it)."""
  path = str(tmp_path_factory.mktemp('gan_jax_cache'))
  old = os.environ.get('GAN_JAX_CACHE_DIR')
  os.environ['GAN_JAX_CACHE_DIR'] = path
  yield path
  if old is None:
    os.environ.pop('GAN_JAX_CACHE_DIR', None)
  else:
    os.environ['GAN_JAX_CACHE_DIR'] = old


@pytest.fixture(autouse=True)
def _xla_optimisations(request, monkeypatch):
  """Runs a test marked `xla_optimized` (and the subprocesses it starts) with XLA's default
  optimisations, and every other test with `jax_disable_most_optimizations` as the run set it.
  JAX's in-memory compile caches do not key on that flag, so they are cleared on the way in
  and out of a marked test; the persistent cache does key on it."""
  marked = request.node.get_closest_marker('xla_optimized') is not None
  if not marked or os.environ.get('JAX_DISABLE_MOST_OPTIMIZATIONS') != '1':
    yield
    return
  import jax  # pylint: disable=g-import-not-at-top

  jax.clear_caches()
  jax.config.update('jax_disable_most_optimizations', False)
  monkeypatch.setenv('JAX_DISABLE_MOST_OPTIMIZATIONS', '0')
  try:
    yield
  finally:
    jax.config.update('jax_disable_most_optimizations', True)
    jax.clear_caches()


@pytest.fixture(scope='session')
def tfds_dir() -> str:
  """../shared/tfds (official TFDS builds of mnist, fashion_mnist, cifar10_jpeg)."""
  if not (TFDS_DIR / 'mnist').is_dir():
    pytest.fail(
      f'offline TFDS data not found at {TFDS_DIR}: the tests need ../shared/tfds '
      'beside the checkout (see docs/data.md).'
    )
  return str(TFDS_DIR)


@pytest.fixture
def tfds_env(tfds_dir, monkeypatch) -> str:
  """TFDS_DATA_DIR set to ../shared/tfds for the test (and the subprocesses it starts), for
  code that finds the data through the environment, as the translation tasks do."""
  monkeypatch.setenv('TFDS_DATA_DIR', tfds_dir)
  return tfds_dir


def load_script(relative_path: str):
  """The module of a repository script (scripts/..., benchmarks/...), loaded from its file."""
  import importlib.util  # pylint: disable=g-import-not-at-top

  path = REPO / relative_path
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_experiment(name: str, variant: str = ''):
  """get_config(variant) of experiments/<name>.py."""
  from gan_jax.cli.main import load_config_file  # pylint: disable=g-import-not-at-top

  spec = str(REPO / 'experiments' / f'{name}.py') + (f':{variant}' if variant else '')
  return load_config_file(spec)


@pytest.fixture
def tiny_config(tfds_dir):
  """The tiny MNIST DCGAN config pointed at ../shared/tfds, unlocked for edits."""
  config = load_experiment('mnist_dcgan', 'tiny')
  config.data.data_dir = tfds_dir
  return config


def run_python(code: str, env_extra: dict[str, str] | None = None, timeout: int = 600):
  """Runs `python -c code` in a fresh interpreter (e.g. with other XLA_FLAGS)."""
  import subprocess  # pylint: disable=g-import-not-at-top

  env = {**os.environ, **(env_extra or {})}
  return subprocess.run(
    [sys.executable, '-c', code],
    capture_output=True,
    text=True,
    env=env,
    timeout=timeout,
    cwd=str(REPO),
  )


def digest_folder(folder) -> str:
  """SHA-256 of every file's relative path and bytes under `folder` (to prove a command left
  a run folder byte for byte as it was)."""
  h = hashlib.sha256()
  for root, _, files in sorted(os.walk(folder)):
    for name in sorted(files):
      path = os.path.join(root, name)
      h.update(os.path.relpath(path, folder).encode())
      with open(path, 'rb') as f:
        h.update(f.read())
  return h.hexdigest()


@pytest.fixture(scope='session')
def trained_tiny_run(tmp_path_factory, tfds_dir) -> str:
  """A finished run folder of the tiny MNIST DCGAN (6 steps, checkpoints at steps 3 and 6),
  trained once per test process. Tests must not change it: copy it first."""
  from gan_jax.training import train  # pylint: disable=g-import-not-at-top

  config = load_experiment('mnist_dcgan', 'tiny')
  config.data.data_dir = tfds_dir
  workdir = str(tmp_path_factory.mktemp('trained_tiny') / 'run')
  train.train_and_evaluate(config, workdir)
  return workdir


def _slow_tests() -> set[str]:
  path = Path(__file__).with_name('slow_tests.txt')
  lines = path.read_text().splitlines() if path.exists() else []
  return {line.strip() for line in lines if line.strip() and not line.startswith('#')}


def module_seconds_table() -> dict[str, float]:
  """{module path: measured seconds} from tests/module_seconds.txt (scripts/module_seconds.py)."""
  path = Path(__file__).with_name('module_seconds.txt')
  lines = path.read_text().splitlines() if path.exists() else []
  rows = [line.split() for line in lines if line.strip() and not line.startswith('#')]
  return {module: float(seconds) for seconds, module in rows}


def pytest_collection_modifyitems(config, items):
  """Marks the tests listed in tests/slow_tests.txt (measured at 4 s or more) as slow, so
  `python -m pytest -m "not slow"` is the fast tier of the edit-test loop.

  Then orders the modules longest first by tests/module_seconds.txt (modules not measured yet
  first of all, in case they are long), keeping each module's own order. With `--dist
  loadfile --no-loadscope-reorder` (setup.cfg) each module runs whole on one worker in this
  order, so its module-scoped fixtures are set up once, and the run ends with short modules
  on both cores rather than a long one on one core.
  """
  del config
  slow = _slow_tests()
  for item in items:
    name = item.nodeid.split('[', 1)[0]
    if name in slow:
      item.add_marker(pytest.mark.slow)
  seconds = module_seconds_table()
  first = {}
  for i, item in enumerate(items):
    first.setdefault(item.nodeid.split('::', 1)[0], i)

  def order(item):
    module = item.nodeid.split('::', 1)[0]
    return (-seconds.get(module, float('inf')), first[module])

  items.sort(key=order)


def one_line_error(capsys, argv, *fragments) -> str:
  """Runs `gan-jax argv` in-process and checks it failed with status 2 and one line
  ('gan-jax: error: ...', no traceback) holding every fragment; returns that line."""
  from gan_jax.cli import main as cli  # pylint: disable=g-import-not-at-top

  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('gan-jax: error: ') and '\n' not in err, err
  assert 'Traceback' not in err
  for fragment in fragments:
    assert fragment in err, err
  return err
