"""Own pairs for pix2pix: a 'pairs:' folder with train/ and test/ subfolders is split by them
(gan_jax/data/translation_sources.py), and translation.direction='b2a' trains B -> A
(gan_jax/translation/kinds.py), checked against the PNGs written here."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from gan_jax.config_files import apply_overrides, load_config_file
from gan_jax.core.sampling import save_grid
from gan_jax.data import translation_sources as ts
from gan_jax.translation import train
from gan_jax.translation.run import load_translation_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIX2PIX = os.path.join(ROOT, 'experiments', 'pix2pix_inpaint_mnist.py')


def _write(folder, images):
  """uint8 images [N, H, W, 3] -> folder/00000.png, ... (lossless)."""
  folder.mkdir(parents=True, exist_ok=True)
  for i, img in enumerate(images):
    Image.fromarray(img).save(folder / f'{i:05d}.png')
  return folder


def _split_folder(tmp_path):
  rng = np.random.default_rng(3)
  splits = {s: rng.integers(0, 256, (n, 16, 32, 3), dtype=np.uint8)
            for s, n in (('train', 4), ('test', 3), ('val', 2))}  # fmt: skip
  for name, images in splits.items():
    _write(tmp_path / 'facades' / name, images)
  return tmp_path / 'facades', splits


def test_pairs_folder_with_train_and_test_subfolders_uses_them_as_splits(tmp_path):
  folder, splits = _split_folder(tmp_path)
  data = ts.load(f'pairs:{folder}', image_size=16, num_train=100, num_test=2)
  np.testing.assert_array_equal(data.train_a, splits['train'][:, :, :16])
  np.testing.assert_array_equal(data.train_b, splits['train'][:, :, 16:])
  np.testing.assert_array_equal(data.test_a, splits['test'][:2, :, :16])  # first 2 of test/
  np.testing.assert_array_equal(data.test_b, splits['test'][:2, :, 16:])
  assert 'test/' in data.held_out
  # Without the subfolders, the last num_test images (sorted paths) are held out as before.
  flat = _write(tmp_path / 'flat', splits['train'])
  data = ts.load(f'pairs:{flat}', image_size=16, num_train=100, num_test=1)
  np.testing.assert_array_equal(data.test_a, splits['train'][3:, :, :16])


def test_pix2pix_b2a_trains_b_to_a(tmp_path):
  folder, splits = _split_folder(tmp_path)
  config = apply_overrides(
    load_config_file(f'{PIX2PIX}:tiny'),
    [f'--config.translation.data=pairs:{folder}', '--config.translation.task=',
     '--config.translation.direction=b2a', '--config.translation.image_size=16',
     '--config.translation.num_grid=3', '--config.train.steps=1'],
  )  # fmt: skip
  workdir = str(tmp_path / 'run')
  train.train_translation(config, workdir)
  run = load_translation_run(workdir)
  assert run.record['task']['direction'] == 'b2a'
  assert run.record['task']['num_train'] == 4 and run.record['task']['num_test'] == 3
  unit = lambda x: x.astype(np.float32) / 127.5 - 1.0
  a, b = unit(splits['test'][:, :, :16]), unit(splits['test'][:, :, 16:])
  # The grid's rows are input B | output | target A.
  rows = np.stack([b, run.translate(b), a], axis=1).reshape(9, 16, 16, 3)
  want = np.asarray(Image.open(save_grid(str(tmp_path / 'want.png'), rows, ncol=3, scale=3)))
  got = np.asarray(Image.open(os.path.join(workdir, 'samples', 'step_0000001.png')))
  np.testing.assert_array_equal(got, want)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    evals = [json.loads(line) for line in f if 'eval/psnr' in line]
  assert len(evals) == 1


def test_pix2pix_script_direction_b2a_swaps_input_and_target(tmp_path):
  import importlib.util  # pylint: disable=g-import-not-at-top

  spec = importlib.util.spec_from_file_location(
    'p2p', os.path.join(ROOT, 'scripts', 'pix2pix_task.py')
  )
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  folder, splits = _split_folder(tmp_path)
  args = script.parse_args(
    ['--data', f'pairs:{folder}', '--direction', 'b2a', '--image-size', '16', '--tiny',
     '--out', str(tmp_path / 'out')]
  )  # fmt: skip
  task = script.build(args)
  unit = lambda x: x.astype(np.float32) / 127.5 - 1.0
  np.testing.assert_array_equal(task.train_inputs, unit(splits['train'][:, :, 16:]))
  np.testing.assert_array_equal(task.train_targets, unit(splits['train'][:, :, :16]))
  np.testing.assert_array_equal(task.test_baseline, unit(splits['test'][:, :, 16:]))
