"""Property-based fuzzing of `gan-jax train` with hostile configs (hypothesis).

Run by `tests/test_hostile_configs.py` in a subprocess that sees 2 CPU devices (so a batch
that does not divide over the devices can be tried); usable alone too:

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/fuzz_hostile_configs.py \
        --data-dir ../shared/tfds --examples 200

Each example is the tiny MNIST config with one to three hostile changes (and some harmless
ones) run through the real command line in this process. Every one must exit with status 2
and print exactly one line that names one of the changed fields and a valid choice, and must
leave an existing run folder byte for byte as it was (and create no new one). Prints a JSON
summary on the last line.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import io
import json
import os
import re
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, find, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / 'experiments' / 'mnist_dcgan.py') + ':tiny'

# Words by which a message offers a valid choice or the way to one.
HINT = re.compile(
  r'choose|must be|e\.g\.|use |one of|needs|valid|available|prepared|did you mean|known keys',
  re.IGNORECASE,
)

names = st.text(alphabet=string.ascii_lowercase + '_', min_size=1, max_size=12)
non_positive = st.integers(-10_000, 0)


def _set(field: str, values: st.SearchStrategy, kind: str = ''):
  """A hostile change: --config.<field>=<value>, expected to be named in the error."""
  return values.map(lambda v: ([f'--config.{field}={v}'], (field,), kind or field))


def hostile(data_dir: str) -> st.SearchStrategy:
  """Any one kind of hostile change (see `hostile_kinds`)."""
  return st.one_of(*hostile_kinds(data_dir))


def hostile_kinds(data_dir: str) -> list[st.SearchStrategy]:
  """One strategy per kind of hostile change: (flags, fields the error must name, kind)."""
  from gan_jax.core.losses import LOSSES  # pylint: disable=g-import-not-at-top
  from gan_jax.models import MODELS  # pylint: disable=g-import-not-at-top

  bad_lr = st.one_of(
    st.floats(max_value=0, allow_nan=False),
    st.sampled_from(['nan', 'inf', '-inf', '0', '-2e-4']),
  )
  return [
    _set('train.batch_size', non_positive, 'train.batch_size <= 0'),
    # Not divisible over the 2 devices, or larger than the 1,024-image split.
    _set('train.batch_size', st.integers(0, 500).map(lambda k: 2 * k + 1), 'batch % devices'),
    _set('train.batch_size', st.integers(1025, 100_000).map(lambda k: 2 * k), 'batch > split'),
    _set('train.batch_size', st.sampled_from(['abc', '1.5', '']), 'batch not an int'),
    _set('train.g_lr', bad_lr),
    _set('train.d_lr', bad_lr),
    _set('train.loss', names.filter(lambda n: n not in LOSSES)),
    _set('model.name', names.filter(lambda n: n not in MODELS)),
    st.integers(-64, 512)
    .filter(lambda s: s != 28)
    .map(
      lambda s: (
        ['--config.model.name=dcgan28', f'--config.data.image_size={s}'],
        ('data.image_size',),
        'dcgan28 image_size',
      )
    ),
    st.tuples(st.sampled_from([6, 12, 24, 48, 100, 0, -32])).map(
      lambda s: (
        ['--config.model.name=dcgan', f'--config.data.image_size={s[0]}'],
        ('data.image_size',),
        'dcgan image_size',
      )
    ),
    _set('data.channels', st.integers(-5, 10).filter(lambda c: c not in (1, 3))),
    _set('data.name', names.filter(lambda n: n not in ('mnist', 'fashion_mnist'))),
    _set(
      'data.data_dir',
      names.map(lambda n: os.path.join(tempfile.gettempdir(), 'no_such_dir_' + n)),
    ),
    _set('data.split', st.sampled_from(['validation', 'tran', 'train[:0]', 'test[5:2]', 'x'])),
    _set('train.n_critic', non_positive),
    _set('train.steps', non_positive),
    _set('train.ema_decay', st.floats(1, 1e6) | st.floats(-1e6, -1e-9)),
    _set('train.b1', st.floats(1, 10) | st.floats(-10, -1e-9)),
    _set('keep_checkpoints', non_positive),
    _set('log_every', non_positive),
    _set('checkpoint_every', non_positive),
    _set('eval_every', st.integers(-1000, -1)),
    st.tuples(names.filter(lambda n: n not in ('fid', 'kid', 'is', 'pr', 'modes'))).map(
      lambda m: (
        ['--config.eval_every=2', f'--config.eval.metrics={m[0]}'],
        ('eval.metrics',),
        'eval.metrics',
      )
    ),
    _set('on_nonfinite', names.filter(lambda n: n not in ('stop', 'rollback'))),
    _set('dtype', names.filter(lambda n: n not in ('float32', 'bfloat16'))),
    _set('num_replicas', non_positive),
    st.tuples(names).map(lambda n: ([f'--config.train.{n[0]}x=1'], ('train.',), 'unknown key')),
    # The workdir: inside a regular file, so it cannot be created (even by root).
    st.just((['WORKDIR_IN_FILE'], ('workdir',), 'workdir')),
  ]


harmless = st.lists(
  st.one_of(
    st.integers(1, 10**6).map(lambda s: f'--config.seed={s}'),
    st.integers(1, 50).map(lambda s: f'--config.train.steps={s}'),
    st.sampled_from(['--config.train.loss=minimax', '--config.data.cache=False']),
  ),
  max_size=2,
)


def snapshot(folder: Path) -> dict[str, str]:
  """Relative path -> SHA-256 (files) or 'dir', of everything under `folder`."""
  out = {}
  for root, dirs, files in os.walk(folder):
    for d in dirs:
      out[os.path.relpath(os.path.join(root, d), folder)] = 'dir'
    for f in files:
      path = os.path.join(root, f)
      with open(path, 'rb') as fh:
        out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
  return out


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--data-dir', required=True)
  parser.add_argument('--examples', type=int, default=200)
  args = parser.parse_args()

  from gan_jax.cli.main import main as gan_jax  # pylint: disable=g-import-not-at-top

  scratch = Path(tempfile.mkdtemp(prefix='gan_jax_fuzz_'))
  base = ['train', '--config', CONFIG, f'--config.data.data_dir={args.data_dir}']
  existing = scratch / 'existing_run'
  if gan_jax([*base, '--workdir', str(existing), '--config.train.steps=3']) != 0:
    raise SystemExit('could not make the existing run')
  before = snapshot(existing)
  blocker = scratch / 'a_file'
  blocker.write_text('not a folder')
  tried = collections.Counter()
  count = [0]

  @settings(
    max_examples=args.examples,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
  )
  @given(
    changes=st.lists(hostile(args.data_dir), min_size=1, max_size=3),
    noise=harmless,
    use_existing=st.booleans(),
  )
  def check(changes, noise, use_existing):
    overrides, expected = [*noise], []
    workdir = existing if use_existing else scratch / f'new_{count[0]}'
    for flags, fields, kind in changes:
      tried[kind] += 1
      expected.extend(fields)
      if flags == ['WORKDIR_IN_FILE']:
        workdir = blocker / 'run'
      else:
        overrides.extend(flags)
    count[0] += 1
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      code = gan_jax([*base, '--workdir', str(workdir), *overrides])
    lines = err.getvalue().strip().splitlines()
    where = f'{overrides} workdir={workdir}: exit {code}, stderr {err.getvalue()[-1500:]!r}'
    assert code == 2, where
    assert len(lines) == 1 and lines[0].startswith('gan-jax: error: '), where
    assert any(field in lines[0] for field in expected), f'names none of {expected}: {where}'
    assert HINT.search(lines[0]), f'offers no valid choice: {where}'
    assert snapshot(existing) == before, f'changed the existing run: {where}'
    if not use_existing:
      assert not (scratch / f'new_{count[0] - 1}').exists(), f'created the workdir: {where}'

  # Every kind once, in its simplest form (hypothesis.find: deterministic), whatever the
  # random draws below favour; then the generated examples.
  simplest = settings(database=None, derandomize=True, suppress_health_check=list(HealthCheck))
  for kind in reversed(hostile_kinds(args.data_dir)):
    change = find(kind, lambda _: True, settings=simplest)
    check = example(changes=[change], noise=[], use_existing=False)(check)
  check()
  print(json.dumps({'examples': count[0], 'kinds': dict(sorted(tried.items()))}))


if __name__ == '__main__':
  main()
