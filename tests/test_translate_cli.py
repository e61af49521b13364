"""`gan-jax translate` and translation run folders (issue 19, item 5).

Tiny pix2pix (colourisation) and CycleGAN runs are trained through the task scripts'
`main(--tiny)`; the command's PNGs are compared with the generators called directly on a
state restored independently (the models rebuilt from the scripts' tiny arguments, the
checkpoint read with `Checkpointer`), and the input conventions with `tasks.py`'s own
builders.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import digest_folder, one_line_error, load_script
from gan_jax.cli.main import main
from gan_jax.core.sampling import to_uint8
from gan_jax.errors import UnreadableCheckpointError
from gan_jax.training.checkpoint import Checkpointer
from gan_jax.translation import cyclegan, pix2pix, tasks
from gan_jax.translation import run as run_lib
from gan_jax.translation import translate as translate_lib

P2P_STEPS = 2


def _script(name: str):
  return load_script(f'scripts/{name}.py')


@pytest.fixture(scope='module')
def p2p_run(tfds_dir, tmp_path_factory):
  """A tiny pix2pix colourisation run (the script's --tiny, 2 steps); its folder."""
  out = tmp_path_factory.mktemp('p2p') / 'run'
  _script('pix2pix_task').main(
    ['--task', 'colorize', '--tiny', '--steps', str(P2P_STEPS), '--out', str(out),
     '--data-dir', tfds_dir]
  )  # fmt: skip
  return str(out)


@pytest.fixture(scope='module')
def cg_run(tfds_dir, tmp_path_factory):
  """A tiny CycleGAN run (the script's --tiny: 2 steps); its seed folder."""
  out = tmp_path_factory.mktemp('cg') / 'run'
  _script('cyclegan_task').main(['--tiny', '--out', str(out), '--data-dir', tfds_dir])
  return str(out / 'seed_0')


def _restored_pix2pix(workdir):
  """The tiny colourisation model of the script, its checkpoint read directly."""
  model, state = pix2pix.create_pix2pix(
    32, 1, 3, g_width=8, g_max_width=64, d_width=8, d_max_width=64
  )
  with Checkpointer(workdir, read_only=True) as ckpt:
    return model, ckpt.restore(state)


def _restored_cyclegan(workdir):
  model, state = cyclegan.create_cyclegan(
    28, 1, width=4, num_blocks=1, d_width=4, patch_layers=1, history_size=4, hold_steps=1,
    decay_steps=1,
  )  # fmt: skip
  with Checkpointer(workdir, read_only=True) as ckpt:
    return model, ckpt.restore(state)


def _images(seed, shape, n=3):
  """n smooth-ish uint8 images (a gradient plus noise)."""
  rng = np.random.default_rng(seed)
  ramp = np.linspace(0, 200, shape[0] * shape[1]).reshape(shape[:2] + (1,))
  return [np.clip(ramp + rng.integers(0, 56, shape), 0, 255).astype(np.uint8) for _ in range(n)]


def _save(path, x):
  Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x).save(path)


def _read(path):
  x = np.asarray(Image.open(path))
  return x[..., None] if x.ndim == 2 else x


def _run_cli(capsys, *args):
  rc = main(['translate', *map(str, args)])
  return rc, capsys.readouterr()


def test_pix2pix_folder_equals_the_generator_and_grid(p2p_run, tmp_path, capsys):
  record = json.loads(open(os.path.join(p2p_run, 'translation_run.json')).read())
  assert record['kind'] == 'pix2pix' and record['task']['task'] == 'colorize'
  assert record['image_shapes'] == {'a': [32, 32, 1], 'b': [32, 32, 3]}
  # Two colour images and one greyscale one (taken as it is).
  rgb = _images(0, (32, 32, 3), 2)
  grey = _images(1, (32, 32, 1), 1)
  src = tmp_path / 'in'
  src.mkdir()
  for name, x in zip(['b_img.png', 'a_img.png', 'c_grey.png'], rgb + grey):
    _save(src / name, x)
  rc, cap = _run_cli(capsys, '--workdir', p2p_run, '--input', src, '--out', tmp_path / 'out')
  assert rc == 0, cap.err
  assert 'translated 3 image(s)' in cap.out and f'step {P2P_STEPS}' in cap.out
  assert sorted(os.listdir(tmp_path / 'out')) == ['a_img.png', 'b_img.png', 'c_grey.png']

  model, state = _restored_pix2pix(p2p_run)
  assert int(state.step) == P2P_STEPS
  inputs = np.concatenate(
    [tasks.greyscale(np.stack(rgb) / 127.5 - 1.0), np.stack(grey) / 127.5 - 1.0]
  ).astype(np.float32)  # b_img, a_img, c_grey
  want = to_uint8(pix2pix.translate_batches(model, state, inputs))
  got = {n: _read(tmp_path / 'out' / n) for n in ('b_img.png', 'a_img.png', 'c_grey.png')}
  for i, name in enumerate(['b_img.png', 'a_img.png', 'c_grey.png']):
    assert got[name].shape == (32, 32, 3) and got[name].dtype == np.uint8
    np.testing.assert_array_equal(got[name], want[i], err_msg=name)

  # --out grid.png: rows of input (greyscale tiled to RGB) | output, sorted by name.
  rc, cap = _run_cli(capsys, '--workdir', p2p_run, '--input', src, '--out', tmp_path / 'g.png')
  assert rc == 0, cap.err
  grid = _read(tmp_path / 'g.png')[::2, ::2]  # scale 2, nearest
  assert grid.shape == (3 * 34 + 2, 2 * 34 + 2, 3)
  order = [1, 0, 2]  # a_img, b_img, c_grey
  for row, i in enumerate(order):
    top = 2 + 34 * row
    np.testing.assert_array_equal(grid[top : top + 32, 36:68], want[i])
    np.testing.assert_array_equal(grid[top : top + 32, 2:34], np.repeat(to_uint8(inputs[i]), 3, -1))

  # One image to one .jpg file; the run loads with its generator.
  rc, cap = _run_cli(
    capsys, '--workdir', p2p_run, '--input', src / 'a_img.png', '--out', tmp_path / 'one.jpg'
  )
  assert rc == 0, cap.err
  assert Image.open(tmp_path / 'one.jpg').format == 'JPEG'
  run = run_lib.load_translation_run(p2p_run)
  assert (run.kind, run.step, run.directions) == ('pix2pix', P2P_STEPS, ('a2b',))
  y = run.generator()(inputs, train=False)
  np.testing.assert_allclose(np.asarray(y), pix2pix.translate_batches(model, state, inputs),
                             atol=1e-5)  # fmt: skip


def test_cyclegan_b2a_uses_the_other_generator(cg_run, tmp_path, capsys):
  src = tmp_path / 'in'
  src.mkdir()
  images = _images(2, (28, 28, 1))
  for i, x in enumerate(images):
    _save(src / f'{i}.png', x)
  outs = {}
  for direction in ('a2b', 'b2a'):
    out = tmp_path / direction
    rc, cap = _run_cli(
      capsys, '--workdir', cg_run, '--input', src, '--out', out, '--direction', direction
    )
    assert rc == 0, cap.err
    outs[direction] = np.stack([_read(out / f'{i}.png') for i in range(3)])
  model, state = _restored_cyclegan(cg_run)
  x = np.stack(images).astype(np.float32) / 127.5 - 1.0
  for direction in ('a2b', 'b2a'):
    want = to_uint8(cyclegan.translate_batches(model, state, x, direction))
    np.testing.assert_array_equal(outs[direction], want, err_msg=direction)
  assert not np.array_equal(outs['a2b'], outs['b2a'])
  # --batch 2: batches of 2 and 1 give the same images.
  rc, cap = _run_cli(capsys, '--workdir', cg_run, '--input', src, '--out', tmp_path / 'b2',
                     '--direction', 'b2a', '--batch', 2)  # fmt: skip
  assert rc == 0, cap.err
  np.testing.assert_array_equal(
    np.stack([_read(tmp_path / 'b2' / f'{i}.png') for i in range(3)]), outs['b2a']
  )


def test_one_line_errors_write_nothing(p2p_run, cg_run, tmp_path, capsys):
  src = tmp_path / 'in'
  src.mkdir()
  _save(src / 'ok.png', _images(3, (32, 32, 3), 1)[0])
  small = tmp_path / 'small.png'
  _save(small, _images(4, (28, 28, 3), 1)[0])
  bad = tmp_path / 'bad'
  bad.mkdir()
  _save(bad / 'a.png', _images(5, (32, 32, 3), 1)[0])
  (bad / 'b.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
  record_only = tmp_path / 'record_only'
  record_only.mkdir()
  shutil.copy(os.path.join(p2p_run, 'translation_run.json'), record_only)
  other = tmp_path / 'other_model'  # the checkpoint of another model size: none reads
  shutil.copytree(p2p_run, other)
  rec = json.loads((other / 'translation_run.json').read_text())
  rec['model']['g_width'] = 16
  (other / 'translation_run.json').write_text(json.dumps(rec))
  colour28 = tmp_path / 'colour28.png'
  _save(colour28, _images(6, (28, 28, 3), 1)[0])
  before = digest_folder(tmp_path)
  out = tmp_path / 'out'

  def cli(*args, workdir=p2p_run):
    return ['translate', '--workdir', str(workdir), *map(str, args)]

  one_line_error(capsys, cli('--input', small, '--out', out), '28x28x3', '32x32x1', 'resize')
  one_line_error(
    capsys, cli('--input', colour28, '--out', out, workdir=cg_run), '28x28x3', '28x28x1',
    'greyscale',
  )  # fmt: skip
  one_line_error(capsys, cli('--input', bad, '--out', out), str(bad / 'b.png'), 'cannot be read')
  one_line_error(capsys, cli('--input', src, '--out', out, '--direction', 'b2a'), 'a2b only')
  one_line_error(capsys, cli('--input', src / 'ok.png', '--out', tmp_path / 'x.gif'), '.gif')
  one_line_error(capsys, cli('--input', src, '--out', tmp_path / 'x.txt'), '.txt')
  one_line_error(
    capsys, cli('--input', src, '--out', out, workdir=tmp_path / 'missing'), 'does not exist'
  )
  one_line_error(capsys, cli('--input', src, '--out', out, workdir=src), 'not a translation run')
  one_line_error(
    capsys, cli('--input', src, '--out', out, workdir=os.path.dirname(cg_run)), 'seed_0'
  )
  one_line_error(capsys, cli('--input', src, '--out', out, workdir=record_only), 'no checkpoint')
  one_line_error(
    capsys, cli('--input', src, '--out', out, workdir=other), 'none of the checkpoints'
  )
  one_line_error(capsys, cli('--input', src, '--out', out, '--batch', 0), '--batch=0')
  one_line_error(capsys, cli('--input', tmp_path / 'nothing', '--out', out), 'does not exist')
  assert digest_folder(tmp_path) == before
  assert not out.exists() and not [f for f in os.listdir(tmp_path) if 'partial' in f]


def _record(task, shapes_a, kind='pix2pix'):
  return {'kind': kind, 'task': {'task': task}, 'image_shapes': {'a': list(shapes_a)}}


def test_inpaint_reads_transparency_as_the_hole_like_hide_squares():
  """An LA image whose transparent square is the one `tasks.hide_squares` hides gives the
  task's training input: the mean-filled image plus the +-1 mask channel."""
  rng = np.random.default_rng(0)
  u = rng.integers(0, 256, (4, 28, 28, 1)).astype(np.uint8)
  x = u.astype(np.float32) / 127.5 - 1.0
  filled, mask = tasks.hide_squares(x, 14, np.random.default_rng([0, 1]))
  want = np.concatenate([filled, 2.0 * mask - 1.0], axis=-1)
  record = _record('inpaint', (28, 28, 2))
  for i in range(4):
    alpha = np.where(mask[i] > 0, 0, 255).astype(np.uint8)
    got = translate_lib.prepare_inputs(record, 'a2b', np.concatenate([u[i], alpha], -1), 'p')
    np.testing.assert_allclose(got, want[i], atol=1e-6)
  with pytest.raises(translate_lib.TranslateUsageError, match='alpha 0'):
    translate_lib.prepare_inputs(record, 'a2b', u[0], 'p.png')  # no alpha channel
  with pytest.raises(translate_lib.TranslateUsageError, match='transparent everywhere'):
    translate_lib.prepare_inputs(record, 'a2b', np.zeros((28, 28, 2), np.uint8), 'p.png')


def test_superres_and_colorize_inputs_follow_the_tasks():
  import jax

  rng = np.random.default_rng(1)
  low = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
  got = translate_lib.prepare_inputs(_record('superres', (32, 32, 3)), 'a2b', low, 'p')
  up = jax.image.resize(low.astype(np.float32) / 127.5 - 1, (32, 32, 3), method='cubic')
  np.testing.assert_allclose(got, np.clip(np.asarray(up), -1, 1), atol=1e-5)
  full = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)  # already upsampled: as it is
  got = translate_lib.prepare_inputs(_record('superres', (32, 32, 3)), 'a2b', full, 'p')
  np.testing.assert_allclose(got, full / 127.5 - 1, atol=1e-6)
  # colorize: BT.601 luma of the colour image, as tf.image.rgb_to_grayscale weighs it.
  got = translate_lib.prepare_inputs(_record('colorize', (32, 32, 1)), 'a2b', full, 'p')
  luma = (full / 127.5 - 1) @ np.array([0.2989, 0.5870, 0.1140])
  np.testing.assert_allclose(got[..., 0], np.clip(luma, -1, 1), atol=1e-5)
  # CycleGAN domains: the image as it is, an alpha channel ignored.
  grey_alpha = np.concatenate([full[..., :1], np.full((32, 32, 1), 7, np.uint8)], -1)
  got = translate_lib.prepare_inputs(
    _record('sneakers_boots', (32, 32, 1), 'cyclegan'), 'a2b', grey_alpha, 'p'
  )
  np.testing.assert_allclose(got, full[..., :1] / 127.5 - 1, atol=1e-6)


def test_record_errors_without_training(tmp_path):
  (tmp_path / 'train_run').mkdir()
  (tmp_path / 'train_run' / 'config.json').write_text('{}')
  with pytest.raises(FileNotFoundError, match='gan-jax train'):
    run_lib.read_run_record(str(tmp_path / 'train_run'))
  args = dict(image_size=8, a_channels=1, width=2, num_blocks=1, d_width=2)
  record = run_lib.write_run_record(str(tmp_path / 'cg'), 'cyclegan', {'task': 'toy'}, args, seed=3)
  assert record['image_shapes'] == {'a': [8, 8, 1], 'b': [8, 8, 1]}
  assert run_lib.read_run_record(str(tmp_path / 'cg')) == record
  assert os.listdir(tmp_path / 'cg') == ['translation_run.json']  # no temporary file left
  (tmp_path / 'cg' / 'translation_run.json').write_text('{"kind": "cyclegan"')
  with pytest.raises(UnreadableCheckpointError, match='not valid JSON'):
    run_lib.read_run_record(str(tmp_path / 'cg'))
  (tmp_path / 'cg' / 'translation_run.json').write_text('{"kind": "stylegan", "model": {}}')
  with pytest.raises(UnreadableCheckpointError, match='stylegan'):
    run_lib.read_run_record(str(tmp_path / 'cg'))


def test_tiny_flags_set_defaults_that_explicit_flags_override():
  p2p = _script('pix2pix_task')
  args = p2p.parse_args(['--task', 'colorize', '--tiny', '--out', 'x'])
  assert {k: getattr(args, k) for k in p2p.TINY} == p2p.TINY
  assert p2p.parse_args(['--task', 'inpaint', '--tiny', '--steps', '7', '--out', 'x']).steps == 7
  full = p2p.parse_args(['--task', 'colorize', '--steps', '300', '--out', 'x'])
  assert (full.g_width, full.num_train, full.batch_size) == (64, 4096, 32)
  cg = _script('cyclegan_task')
  args = cg.parse_args(['--tiny', '--out', 'x'])
  assert {k: getattr(args, k) for k in cg.TINY} == cg.TINY and args.hold_steps == 1
  assert cg.parse_args(['--steps', '10', '--out', 'x']).width == 16
  with pytest.raises(SystemExit):  # --steps stays required without --tiny
    cg.parse_args(['--out', 'x'])


def test_pix2pix_seeds_write_results_and_reuse_finished_seeds(tfds_dir, tmp_path):
  """--seeds trains one run folder per seed; --results holds each seed's metrics.json and their
  mean and std (numpy, ddof=1); --grid copies the first seed's grid; a rerun reads finished
  seeds back instead of retraining them, but not a seed trained with other arguments."""
  p2p = _script('pix2pix_task')
  out = tmp_path / 'run'
  argv = ['--task', 'inpaint', '--tiny', '--steps', '1', '--num-train', '16', '--num-test', '8',
          '--seeds', '0', '1', '--out', str(out), '--results', str(tmp_path / 'r.json'),
          '--grid', str(tmp_path / 'g.png'), '--data-dir', tfds_dir]  # fmt: skip
  p2p.main(argv)
  per_seed = [json.loads((out / f'seed_{s}' / 'metrics.json').read_text()) for s in (0, 1)]
  res = json.loads((tmp_path / 'r.json').read_text())
  assert res['seeds_done'] == [0, 1] and res['seeds_missing'] == []
  assert res['command'] == 'python scripts/pix2pix_task.py ' + ' '.join(argv)
  for key, get in (('psnr', lambda m: m['model']['psnr']), ('baseline_ssim',
                   lambda m: m['baseline']['ssim'])):  # fmt: skip
    vals = [get(m) for m in per_seed]
    assert vals[0] != vals[1]  # the seeds differ (weights and inpainting squares)
    assert res['summary'][key]['mean'] == pytest.approx(np.mean(vals))
    assert res['summary'][key]['std'] == pytest.approx(np.std(vals, ddof=1))
  assert (tmp_path / 'g.png').read_bytes() == (out / 'seed_0' / 'grid.png').read_bytes()
  mtimes = [os.path.getmtime(out / f'seed_{s}' / 'metrics.json') for s in (0, 1)]
  again = p2p.main(argv)
  assert [os.path.getmtime(out / f'seed_{s}' / 'metrics.json') for s in (0, 1)] == mtimes
  assert again['summary'] == res['summary']
  other = p2p.parse_args(argv[:3] + ['--steps', '2'] + argv[5:])
  other.seed = 0
  assert p2p.finished_seed(str(out / 'seed_0'), other) is None


def test_sample_and_eval_of_a_translation_run_name_translate_in_one_line(
  p2p_run, cg_run, tmp_path, capsys
):
  """`gan-jax sample` / `gan-jax eval` read GAN runs; given a pix2pix run, or a CycleGAN run's
  folder of seeds, they exit 2 with one line that names `gan-jax translate`, and write nothing."""
  before = digest_folder(tmp_path)
  for workdir in (p2p_run, os.path.dirname(cg_run)):
    for argv in (['sample', '--out', str(tmp_path / 'grid.png')], ['eval']):
      one_line_error(
        capsys,
        [argv[0], '--workdir', workdir, *argv[1:]],
        'is an image translation run',
        f'gan-jax translate --workdir {workdir} --input',
      )
  assert digest_folder(tmp_path) == before
