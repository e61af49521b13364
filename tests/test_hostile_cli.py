"""Hostile command lines, run-folder files and images: hypothesis tries 200 through the real
`gan-jax sample`, `eval`, `edit` and `train` entry point (issue 17), a third from each family.

CLI values: out of range or non-finite, an --out Pillow cannot write, a folder, or inside a
regular file, a checkpoint step that does not exist, a seed that does not fit in 64 bits.
Run-folder files (in a copy of the run, read by `sample` or `eval --workdir`): config.json
garbled, cut short, not a run config, missing or a folder; checkpoints/ missing, empty or a
file; a checkpoint's metadata file garbled, cut short or emptied, or its item folder gone.
Images (`eval --images`): one file truncated, random, empty, a decompression bomb or of
another size (16-bit, palette, CMYK, ...); no image file (a folder named x.png, ...), too
few for FID or fewer than --num-samples; a path that is no folder. Every one must exit with
status 2 and print exactly one line (`gan-jax: error: ...`, no traceback), write no output
file, change none of the hostile files, and leave the trained run folder byte for byte as it
was. `tests/fuzz_hostile_configs.py` does the same for config fields.
"""

import collections
import contextlib
import io
import os
import shutil
import struct
import zlib

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


non_finite = st.tuples(st.sampled_from(['', '+', '-']),
                       st.sampled_from(['nan', 'inf', 'NaN', 'Inf', 'infinity', 'INFINITY'])).map(
  ''.join
)  # fmt: skip
bad_scale = st.one_of(st.integers(-(10**6), 0), st.integers(65, 10**9))
extension = st.text(alphabet='abcdefghijklmnopqrstuvwxyz0123456789', min_size=1, max_size=6)
# Extensions Pillow can write (an --out with one of these is valid).
WRITABLE = {e.lstrip('.') for e, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def _link_copy(src, dst):
  """A copy of folder `src` whose files are hard links (fast): change a file only through
  `_rewrite`, which replaces the link, never the bytes `src` holds."""
  shutil.copytree(src, dst, copy_function=os.link)
  return dst


def _rewrite(path, data):
  os.remove(path)
  with open(path, 'wb') as f:
    f.write(data)


def _snapshot(folder):
  """Every entry under `folder` with its size and modification time: cheap to take, and it
  changes when a command writes, adds or removes a file (or a hard link's shared bytes)."""
  entries = []
  for root, dirs, files in os.walk(folder):
    for name in sorted(dirs + files):
      st_ = os.lstat(os.path.join(root, name))
      entries.append((os.path.relpath(os.path.join(root, name), folder), st_.st_size,
                      st_.st_mtime_ns))  # fmt: skip
  return sorted(entries)


def _damageable(step_dir):
  """The metadata files of a checkpoint that every read parses before it reads an array: the
  meta item and the state's tree and array metadata. (Orbax's commit markers and the sharding
  file are not read, so garbling them changes nothing. A garbled TensorStore file,
  `state/manifest.ocdbt`, `state/d/*` or the arrays' data, also fails in one line, but the
  reads Orbax abandoned then print tracebacks when they end or are collected, later: into
  the next command's stderr in this process. Left out; see docs/reliability.md.)"""
  state = os.path.join(step_dir, 'state')
  arrays = os.path.join(state, 'array_metadatas')
  return [
    os.path.join(step_dir, 'meta', 'metadata'),
    os.path.join(state, '_METADATA'),
    *(os.path.join(arrays, n) for n in sorted(os.listdir(arrays))),
  ]


def _bomb_png(width, height):
  """A PNG whose header declares width x height pixels (over twice Pillow's decompression-
  bomb limit), followed by one small compressed row: a few hundred bytes on disk."""

  def chunk(tag, data):
    return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', zlib.crc32(tag + data))

  header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b'\0' * 64))
          + chunk(b'IEND', b''))  # fmt: skip


def _good_images(scratch):
  """150 random 28x28 grayscale PNGs (FID with LeNet needs more than its 128 features)."""
  folder = os.path.join(scratch, 'imgs_good')
  os.makedirs(folder)
  rng = np.random.default_rng(0)
  for i in range(150):
    Image.fromarray(rng.integers(0, 256, (28, 28), np.uint8)).save(f'{folder}/{i:03d}.png')
  return folder


def _cli_values(run_dir, scratch, tfds_dir):
  """Hostile CLI values against an intact run: out of range, non-finite, unwritable --out."""

  def sample(*extra):
    return ['sample', '--workdir', run_dir, '--out', os.path.join(scratch, 'out.png'), *extra]

  def edit(*extra):
    return ['edit', '--workdir', run_dir, '--image', os.path.join(scratch, 'digit.png'),
            '--attribute', 'ink', '--out', os.path.join(scratch, 'out.png'), *extra]  # fmt: skip

  def out_in_a_file(command, inner):
    def argv(case_dir):
      with open(os.path.join(case_dir, 'a_file'), 'w') as f:
        f.write('a regular file\n')
      out = os.path.join(case_dir, 'a_file', *inner)
      if command == 'sample':
        return ['sample', '--workdir', run_dir, '--out', out + '.png']
      return ['eval', '--workdir', run_dir, '--out', out + '.json', '--metrics', 'fid']

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
    st.tuples(st.sampled_from(['sample', 'eval']), st.lists(extension, min_size=1, max_size=3)).map(
      lambda a: ('sample/eval --out inside a file', out_in_a_file(*a))
    ),
    st.lists(st.one_of(non_finite, st.floats(-9, 9).map(str)), min_size=1, max_size=5)
    .filter(lambda v: any(x.lower().lstrip('+-') in ('nan', 'inf') for x in v))
    .map(lambda v: ('edit --strengths non-finite', edit('--strengths=' + ','.join(v)))),
    st.one_of(non_finite, st.floats(max_value=0, allow_nan=False).map(str)).map(
      lambda v: ('edit --lr', edit(f'--lr={v}'))
    ),
    non_finite.map(lambda v: ('edit --strength', edit(f'--strength={v}'))),
    bad_scale.map(lambda s: ('edit --scale', edit('--scale', str(s)))),
    st.integers(-(10**6), 10**6)
    .filter(lambda s: s not in (3, 6))
    .map(lambda s: ('sample --step missing', sample('--step', str(s)))),
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
    ),
  ]


def _run_folder_files(run_dir, scratch, tfds_dir):
  """Hostile files in a copy of the run, read by `sample` or `eval --workdir`: config.json
  garbled, cut short, foreign, missing; checkpoints/ missing, empty or a file; a checkpoint
  file garbled, cut short or emptied, or an item folder gone, in the only checkpoint left
  (else the reader falls back to the older one, as documented) or named by --step."""
  config_text = open(os.path.join(run_dir, 'config.json'), 'rb').read()
  steps = sorted(int(n) for n in os.listdir(os.path.join(run_dir, 'checkpoints')))
  reader = st.sampled_from(['sample', 'eval'])

  def read(command, copy, case_dir, *extra):
    if command == 'sample':
      return ['sample', '--workdir', copy, '--out', os.path.join(case_dir, 'out.png'), *extra]
    return ['eval', '--workdir', copy, '--out', os.path.join(case_dir, 'out.json'),
            '--metrics', 'fid', '--data-dir', tfds_dir, *extra]  # fmt: skip

  def in_copy(change, command='sample', step=None, only=False):
    """argv builder: a copy of the run with `change(copy)` made; with `only`, the copy keeps
    checkpoint `step` alone; with a step and not `only`, the reader names it with --step."""

    def argv(case_dir):
      copy = _link_copy(run_dir, os.path.join(case_dir, 'run'))
      ckpts = os.path.join(copy, 'checkpoints')
      for other in steps if only else []:
        if other != step:
          shutil.rmtree(os.path.join(ckpts, str(other)))
      change(copy)
      extra = ['--step', str(step)] if step is not None and not only else []
      return read(command, copy, case_dir, *extra)

    return argv

  def write(name, content):
    return lambda copy: _rewrite(os.path.join(copy, name), content)

  def config_gone(how):
    def change(copy):
      os.remove(os.path.join(copy, 'config.json'))
      if how == 'a folder':
        os.makedirs(os.path.join(copy, 'config.json'))

    return change

  def checkpoints_gone(how, content):
    def change(copy):
      ckpts = os.path.join(copy, 'checkpoints')
      shutil.rmtree(ckpts)
      if how == 'empty':
        os.makedirs(ckpts)
      elif how == 'a file':
        with open(ckpts, 'wb') as f:
          f.write(content)

    return change

  def damage(step, index, how, seed):
    def change(copy):
      files = _damageable(os.path.join(copy, 'checkpoints', str(step)))
      path = files[index % len(files)]
      data = open(path, 'rb').read()
      if how == 'cut short':  # anywhere before the last byte that is not white space
        data = data[: seed % max(1, len(data.rstrip()) - 1)]
      elif how == 'random bytes':
        data = np.random.default_rng(seed).bytes(len(data))
      else:
        data = b''
      _rewrite(path, data)

    return change

  def item_gone(step, item):
    return lambda copy: shutil.rmtree(os.path.join(copy, 'checkpoints', str(step), item))

  damaged = st.tuples(reader, st.sampled_from(steps), st.integers(0, 20),
                      st.sampled_from(['cut short', 'random bytes', 'emptied']),
                      st.integers(0, 2**32 - 1), st.booleans())  # fmt: skip
  return [
    st.binary(min_size=0, max_size=64)
    .filter(lambda b: not b.strip().startswith(b'{'))
    .map(lambda b: ('config.json random bytes', in_copy(write('config.json', b)))),
    st.integers(1, len(config_text) - 2).map(
      lambda n: ('config.json cut short', in_copy(write('config.json', config_text[:n])))
    ),
    st.sampled_from([b'[]', b'1', b'"x"', b'null', b'true', b'{}', b'{"model": 3}']).map(
      lambda b: ('config.json not a run config', in_copy(write('config.json', b)))
    ),
    st.tuples(reader, st.sampled_from(['missing', 'a folder'])).map(
      lambda a: ('config.json missing or a folder', in_copy(config_gone(a[1]), a[0]))
    ),
    st.tuples(reader, st.sampled_from(['missing', 'empty', 'a file']), st.binary(max_size=16)).map(
      lambda a: (
        'checkpoints/ missing, empty or a file',
        in_copy(checkpoints_gone(a[1], a[2]), a[0]),
      )
    ),
    damaged.map(
      lambda a: (
        'checkpoint file garbled, cut short or emptied',
        in_copy(damage(a[1], a[2], a[3], a[4]), a[0], a[1], only=a[5]),
      )
    ),
    st.tuples(
      reader, st.sampled_from(steps), st.sampled_from(['meta', 'state']), st.booleans()
    ).map(
      lambda a: (
        'checkpoint item folder missing',
        in_copy(item_gone(a[1], a[2]), a[0], a[1], only=a[3]),
      )
    ),
  ]


def _images(run_dir, scratch, tfds_dir):
  """Hostile image folders given to `eval --images`: a copy of 150 good PNGs with one file
  truncated, random, empty, a decompression bomb or of another size (in any mode: 16-bit,
  palette, CMYK, 1-bit); a folder with no image file (only a folder named x.png, ...), too
  few images for FID or fewer than --num-samples; --images naming a file or nothing."""
  del run_dir
  good = os.path.join(scratch, 'imgs_good')

  def evaluate(folder, case_dir, *extra):
    return ['eval', '--images', folder, '--dataset', 'mnist', '--data-dir', tfds_dir,
            '--split', 'train[:1000]', '--metrics', 'fid',
            '--out', os.path.join(case_dir, 'out.json'), *extra]  # fmt: skip

  def folder_with(change, *extra):
    def argv(case_dir):
      folder = _link_copy(good, os.path.join(case_dir, 'imgs'))
      change(folder)
      return evaluate(folder, case_dir, *extra)

    return argv

  def replace(index, content):
    def change(folder):
      path = os.path.join(folder, f'{index:03d}.png')
      _rewrite(path, content(open(path, 'rb').read()))

    return change

  def other_size(index, size, mode):
    def change(folder):
      os.remove(os.path.join(folder, f'{index:03d}.png'))
      ext = '.jpg' if mode == 'CMYK' else '.png'  # PNG holds no CMYK
      Image.new(mode, size).save(os.path.join(folder, f'{index:03d}{ext}'))

    return change

  def no_images(entries):
    def change(folder):
      shutil.rmtree(folder)
      os.makedirs(folder)
      for name in entries:
        if name.endswith('/'):
          os.makedirs(os.path.join(folder, name))
        else:
          with open(os.path.join(folder, name), 'w') as f:
            f.write('not an image\n')

    return change

  def keep_first(n):
    return lambda folder: [os.remove(os.path.join(folder, f'{i:03d}.png')) for i in range(n, 150)]

  def not_a_folder(how):
    def argv(case_dir):
      path = os.path.join(case_dir, 'imgs')
      if how == 'a PNG file':
        shutil.copy(os.path.join(good, '000.png'), path)
      return evaluate(path, case_dir)

    return argv

  index = st.integers(0, 149)
  side = st.integers(1, 64)
  return [
    st.tuples(index, st.floats(0, 0.95)).map(
      lambda a: (
        'eval --images truncated PNG',
        folder_with(replace(a[0], lambda d: d[: int(len(d) * a[1])])),
      ),
    ),
    st.tuples(index, st.integers(0, 2**32 - 1)).map(
      lambda a: (
        'eval --images random bytes named .png',
        folder_with(replace(a[0], lambda d: np.random.default_rng(a[1]).bytes(len(d)))),
      ),
    ),
    index.map(lambda i: ('eval --images zero-byte file', folder_with(replace(i, lambda d: b'')))),
    st.tuples(index, st.integers(20_000, 2**31 - 1), st.integers(20_000, 2**31 - 1)).map(
      lambda a: (
        'eval --images decompression bomb',
        folder_with(replace(a[0], lambda d: _bomb_png(a[1], a[2]))),
      ),
    ),
    st.tuples(
      index,
      st.tuples(side, side).filter(lambda s: s != (28, 28)),
      st.sampled_from(['L', 'RGB', 'I;16', 'P', 'CMYK', '1']),
    ).map(
      lambda a: ('eval --images one image of another size', folder_with(other_size(*a))),
    ),
    st.lists(
      st.sampled_from(['x.png/', 'y.JPG/', 'z.jpeg/', 'notes.txt', 'a.gif', 'README']),
      unique=True,
      max_size=4,
    ).map(
      lambda e: ('eval --images no image file', folder_with(no_images(e))),
    ),
    st.integers(1, 128).map(
      lambda n: ('eval --images too few for FID', folder_with(keep_first(n)))
    ),
    st.integers(151, 10**9).map(
      lambda n: (
        'eval --images fewer than --num-samples',
        folder_with(lambda folder: None, '--num-samples', str(n)),
      ),
    ),
    st.sampled_from(['a PNG file', 'missing']).map(
      lambda how: ('eval --images not a folder', not_a_folder(how))
    ),
  ]


FAMILIES = {'CLI values': _cli_values, 'run-folder files': _run_folder_files, 'images': _images}


def families(run_dir, scratch, tfds_dir):
  """{family: [one strategy per kind]}; each strategy draws (kind, argv) where argv is a list,
  or a function of an empty case folder that sets up the hostile files there and returns it."""
  return {name: make(run_dir, scratch, tfds_dir) for name, make in FAMILIES.items()}


def quotas(by_family):
  """{family: examples}: EXAMPLES shared alike among the families, each drawn by a hypothesis
  run of its own over `st.one_of` its kinds. (One `st.one_of` over all kinds would weigh the
  families by their number of branches, nested one_ofs and maps being flattened into one
  list, and hypothesis's mutations of earlier examples favour the kinds of larger value
  spaces: 172 of 200 cases were CLI values; a `flatmap` over the families still gave them
  87 / 41 / 72.)"""
  names = sorted(by_family)
  return {
    name: EXAMPLES // len(names) + (i < EXAMPLES % len(names)) for i, name in enumerate(names)
  }


def run_per_family(by_family, test):
  """Runs `test(family, (kind, argv))` on each family's quota of derandomized draws."""
  for family, n in quotas(by_family).items():
    _run_family(family, by_family[family], n, test)


def _run_family(family, kinds, n, test):
  @settings(max_examples=n, deadline=None, database=None, derandomize=True,
            suppress_health_check=list(HealthCheck))  # fmt: skip
  @given(case=st.one_of(*kinds))
  def draw(case):
    test(family, case)

  draw()


def drawn_kinds(run_dir, scratch, tfds_dir):
  """Counter of (family, kind) over the test's derandomized draws, replayed without running
  gan-jax or touching files (`run_dir` must hold the run's config.json and checkpoints/)."""
  tried = collections.Counter()
  run_per_family(families(run_dir, scratch, tfds_dir), lambda f, case: tried.update([(f, case[0])]))
  return tried


def test_the_draws_share_the_200_cases_among_the_families_and_try_every_kind(tmp_path):
  """Replays the draws (no gan-jax run) on a stand-in run folder: 67, 67 and 66 cases for
  the three families, every kind drawn."""
  run_dir = tmp_path / 'run'
  os.makedirs(run_dir / 'checkpoints' / '3')
  os.makedirs(run_dir / 'checkpoints' / '6')
  (run_dir / 'config.json').write_text('{"model": {}, "train": {}, "data": {}}' + ' ' * 2000)
  by_family = families(str(run_dir), str(tmp_path), str(tmp_path))
  tried = drawn_kinds(str(run_dir), str(tmp_path), str(tmp_path))
  per_family = collections.Counter()
  for (family, _), n in tried.items():
    per_family[family] += n
  assert sorted(per_family.values()) == [66, 67, 67] and sum(per_family.values()) == EXAMPLES
  for family, kinds in by_family.items():  # one strategy per kind, each with its own name
    assert len({kind for f, kind in tried if f == family}) == len(kinds), sorted(tried)


@pytest.mark.slow
def test_two_hundred_hostile_inputs_each_fail_in_one_line_and_change_nothing(
  run, tfds_dir, tmp_path
):
  scratch = str(tmp_path / 'scratch')
  os.makedirs(scratch)
  Image.fromarray(np.zeros((28, 28), np.uint8)).save(os.path.join(scratch, 'digit.png'))
  _good_images(scratch)
  before = digest_folder(run)
  tried = collections.Counter()
  by_family = families(run, scratch, tfds_dir)

  def check(family, case):
    kind, argv = case
    tried[family, kind] += 1
    case_dir = None
    if callable(argv):  # hostile files: made in an empty case folder (a copy of the run, ...)
      case_dir = os.path.join(scratch, 'case')
      shutil.rmtree(case_dir, ignore_errors=True)
      os.makedirs(case_dir)
      argv = argv(case_dir)
      made = _snapshot(case_dir)
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
    if case_dir is not None:  # nothing written or changed among the hostile files either
      assert _snapshot(case_dir) == made, where

  run_per_family(by_family, check)
  assert digest_folder(run) == before
  assert sum(tried.values()) >= EXAMPLES
  assert len(tried) == sum(len(kinds) for kinds in by_family.values()), sorted(tried)
  print('cases per (family, kind):', dict(sorted(tried.items())))
