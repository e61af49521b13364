"""Hostile command lines, run-folder files and images: hypothesis tries at least 200 through
the real `gan-jax sample`, `eval`, `edit` and `train` entry point (issue 17).

Each example is one hostile input: a CLI value out of range or non-finite, an output path
Pillow cannot write, a run folder whose config.json is garbled, cut short or not a JSON
object, a checkpoint step that does not exist, a folder of images with a truncated or random
file, or a seed that does not fit in 64 bits. Every one must exit with status 2 and print
exactly one line (`gan-jax: error: ...`, no traceback), write no output file, and leave the
trained run folder byte for byte as it was. `tests/fuzz_hostile_configs.py` does the same
for config fields.
"""

import collections
import contextlib
import io
import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import digest_folder

from gan_jax.cli import main as cli

EXAMPLES = 200


@pytest.fixture
def run(trained_tiny_run):
  return trained_tiny_run


non_finite = st.sampled_from(['nan', 'inf', '-inf', 'NaN', '+inf'])
bad_scale = st.one_of(st.integers(-(10**6), 0), st.integers(65, 10**9))
extension = st.text(alphabet='abcdefghijklmnopqrstuvwxyz0123456789', min_size=1, max_size=6)
# Extensions Pillow can write (an --out with one of these is valid).
WRITABLE = {e.lstrip('.') for e, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def kinds(run_dir, scratch, tfds_dir):
  """One strategy per kind of hostile input: (kind, argv builder, files to set up)."""
  config_text = open(os.path.join(run_dir, 'config.json'), 'rb').read()

  def sample(*extra):
    return ['sample', '--workdir', run_dir, '--out', os.path.join(scratch, 'out.png'), *extra]

  def edit(*extra):
    return ['edit', '--workdir', run_dir, '--image', os.path.join(scratch, 'digit.png'),
            '--attribute', 'ink', '--out', os.path.join(scratch, 'out.png'), *extra]  # fmt: skip

  def garbled(content):
    def argv(copy):
      with open(os.path.join(copy, 'config.json'), 'wb') as f:
        f.write(content)
      return ['sample', '--workdir', copy, '--out', os.path.join(scratch, 'out.png')]

    return argv

  return [
    bad_scale.map(lambda s: ('sample --scale', sample('--scale', str(s)))),
    st.integers(10**6, 10**9).map(lambda n: ('sample --num huge', sample('--num', str(n)))),
    st.integers(-(10**6), 0).map(lambda n: ('sample --num <= 0', sample('--num', str(n)))),
    extension.filter(lambda e: e not in WRITABLE).map(
      lambda e: (
        'sample --out bad extension',
        ['sample', '--workdir', run_dir, '--out', os.path.join(scratch, f'o.{e}')],
      )
    ),
    st.just(('sample --out folder', ['sample', '--workdir', run_dir, '--out', scratch])),
    st.lists(st.one_of(non_finite, st.floats(-9, 9).map(str)), min_size=1, max_size=5)
    .filter(lambda v: any(x.lower().lstrip('+-') in ('nan', 'inf') for x in v))
    .map(lambda v: ('edit --strengths non-finite', edit('--strengths=' + ','.join(v)))),
    st.one_of(non_finite, st.floats(max_value=0, allow_nan=False).map(str)).map(
      lambda v: ('edit --lr', edit(f'--lr={v}'))
    ),
    non_finite.map(lambda v: ('edit --strength', edit(f'--strength={v}'))),
    bad_scale.map(lambda s: ('edit --scale', edit('--scale', str(s)))),
    st.binary(min_size=0, max_size=64)
    .filter(lambda b: not b.strip().startswith(b'{'))
    .map(lambda b: ('config.json random bytes', garbled(b))),
    st.integers(1, len(config_text) - 2).map(
      lambda n: ('config.json cut short', garbled(config_text[:n]))
    ),
    st.sampled_from([b'[]', b'1', b'"x"', b'null', b'true', b'{}', b'{"model": 3}']).map(
      lambda b: ('config.json not a run config', garbled(b))
    ),
    st.integers(-(10**6), 10**6)
    .filter(lambda s: s not in (3, 6))
    .map(lambda s: ('sample --step missing', sample('--step', str(s)))),
    st.sampled_from(['truncated', 'random']).map(
      lambda how: (
        'eval --images bad file',
        [
          'eval',
          '--images',
          os.path.join(scratch, f'imgs_{how}'),
          '--dataset',
          'mnist',
          '--data-dir',
          tfds_dir,
          '--split',
          'train[:1000]',
          '--metrics',
          'fid',
          '--out',
          os.path.join(scratch, 'out.json'),
        ],
      )
    ),  # fmt: skip
    st.one_of(st.integers(2**63, 2**80), st.integers(-(2**80), -(2**63) - 1)).map(
      lambda s: (
        'train --config.seed out of int64',
        [
          'train',
          '--config',
          os.path.join(
            os.path.dirname(os.path.dirname(__file__)), 'experiments', 'mnist_dcgan.py:tiny'
          ),
          '--workdir',
          os.path.join(scratch, 'new_run'),
          f'--config.seed={s}',
        ],
      )
    ),  # fmt: skip
  ]


def _image_folders(scratch):
  rng = np.random.default_rng(0)
  for how in ('truncated', 'random'):
    folder = os.path.join(scratch, f'imgs_{how}')
    os.makedirs(folder)
    for i in range(150):  # FID (LeNet) needs more images than its 128 features
      Image.fromarray(rng.integers(0, 256, (28, 28), np.uint8)).save(f'{folder}/{i:03d}.png')
    path = f'{folder}/077.png'
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
      f.write(data[: len(data) // 2] if how == 'truncated' else rng.bytes(len(data)))


@pytest.mark.slow
def test_two_hundred_hostile_inputs_each_fail_in_one_line_and_change_nothing(
  run, tfds_dir, tmp_path
):
  scratch = str(tmp_path / 'scratch')
  os.makedirs(scratch)
  Image.fromarray(np.zeros((28, 28), np.uint8)).save(os.path.join(scratch, 'digit.png'))
  _image_folders(scratch)
  before = digest_folder(run)
  tried = collections.Counter()
  strategies = kinds(run, scratch, tfds_dir)

  @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
            suppress_health_check=list(HealthCheck))  # fmt: skip
  @given(case=st.one_of(*strategies))
  def check(case):
    kind, argv = case
    tried[kind] += 1
    copy = None
    if callable(argv):  # a hostile run-folder file: made in a copy of the run
      copy = os.path.join(scratch, 'copy')
      shutil.rmtree(copy, ignore_errors=True)
      shutil.copytree(run, copy)
      argv = argv(copy)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      code = cli.main(argv)
    lines = err.getvalue().strip().splitlines()
    where = f'{kind}: {argv}: exit {code}, stderr {err.getvalue()[-1500:]!r}'
    assert code == 2, where
    assert len(lines) == 1 and lines[0].startswith('gan-jax: error: '), where
    assert 'Traceback' not in err.getvalue(), where
    for out in ('out.png', 'out.json', 'new_run'):
      assert not os.path.exists(os.path.join(scratch, out)), where
    assert not any(n.startswith('o.') for n in os.listdir(scratch)), where

  check()
  assert digest_folder(run) == before
  assert sum(tried.values()) >= EXAMPLES
  assert len(tried) == len(strategies), sorted(tried)
