"""Runs notebooks/quickstart.ipynb end to end, offline, on the real MNIST in ../shared/tfds.

The notebook reads its run size from environment variables; here QUICKSTART_TINY=1 and
QUICKSTART_STEPS=4 shrink it to a few seconds of training (kernel start, imports and
compilation dominate). The kernel is a child process, so the variables are set before it
starts and it inherits them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / 'notebooks' / 'quickstart.ipynb'
TFDS_DIR = Path(__file__).resolve().parents[1].parent / 'shared' / 'tfds'
STEPS = 4

# Prepended to the in-memory copy only: proves the kernel runs this test's interpreter.
_PROBE = 'import sys; print(sys.prefix)'


def _read_notebook():
  import nbformat  # pylint: disable=g-import-not-at-top

  return nbformat.read(str(NOTEBOOK), as_version=4)


def test_committed_notebook_is_valid_and_has_no_outputs():
  import nbformat  # pylint: disable=g-import-not-at-top

  nb = _read_notebook()
  nbformat.validate(nb)
  assert nb.metadata.kernelspec.name == 'python3'
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert code, 'the notebook has no code cells'
  dirty = [
    i
    for i, c in enumerate(nb.cells)
    if c.cell_type == 'code' and (c.outputs or c.execution_count is not None)
  ]
  assert not dirty, f'clear the outputs of cells {dirty} before committing the notebook'


@pytest.mark.slow
def test_quickstart_notebook_runs_offline(tmp_path, monkeypatch):
  import nbformat  # pylint: disable=g-import-not-at-top
  from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # pylint: disable=g-import-not-at-top
  from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top

  if not (TFDS_DIR / 'mnist').is_dir():
    pytest.fail(
      f'offline TFDS data not found at {TFDS_DIR}: this test needs ../shared/tfds '
      '(with mnist) beside the checkout; it is never skipped.'
    )
  try:
    KernelSpecManager().get_kernel_spec('python3')
  except NoSuchKernel:
    pytest.fail(
      'no "python3" Jupyter kernelspec: install ipykernel in this environment or run '
      f'`{sys.executable} -m ipykernel install --sys-prefix`.'
    )

  workdir = tmp_path / 'run'
  monkeypatch.setenv('QUICKSTART_TINY', '1')
  monkeypatch.setenv('QUICKSTART_STEPS', str(STEPS))
  monkeypatch.setenv('QUICKSTART_WORKDIR', str(workdir))
  monkeypatch.setenv('TFDS_DATA_DIR', str(TFDS_DIR))
  monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '2')
  monkeypatch.delenv('MPLBACKEND', raising=False)  # let the kernel use the inline backend

  nb = _read_notebook()
  nb.cells.insert(0, nbformat.v4.new_code_cell(_PROBE))
  client = NotebookClient(
    nb,
    timeout=600,
    kernel_name='python3',
    allow_errors=False,
    resources={'metadata': {'path': str(tmp_path)}},
  )
  client.execute()  # raises CellExecutionError (with the cell's traceback) on the first error

  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
  errors = [o for o in outputs if o.output_type == 'error']
  assert not errors, f'cells raised: {[(o.ename, o.evalue) for o in errors]}'
  probe = ''.join(o.get('text', '') for o in nb.cells[0].outputs).strip()
  assert Path(probe).resolve() == Path(sys.prefix).resolve(), (
    f'the kernel ran the Python of {probe!r}, not this test\'s {sys.prefix!r}'
  )

  # Files of the run.
  pngs = sorted((workdir / 'samples').glob('*.png'))
  assert pngs and pngs[-1].name == f'step_{STEPS:07d}.png', pngs
  rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines() if l]
  assert [r['step'] for r in rows] == [2, 4]
  for r in rows:
    assert {'d_loss', 'g_loss', 'd_real', 'd_fake'} <= r.keys()
    assert 0 <= r['d_real'] <= 1 and 0 <= r['d_fake'] <= 1
  assert (workdir / 'checkpoints' / str(STEPS)).is_dir(), list((workdir / 'checkpoints').iterdir())
  assert json.loads((workdir / 'summary.json').read_text())['end_step'] == STEPS

  # What the notebook showed: the sample grid, the loss curves and the fresh samples.
  images = [
    o
    for o in outputs
    if o.output_type in ('display_data', 'execute_result') and 'image/png' in o.get('data', {})
  ]
  assert len(images) >= 3, f'expected >= 3 images in the outputs, got {len(images)}'
  text = '\n'.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
  assert f'trained to step {STEPS}' in text, text
  assert 'TINY=True STEPS=4' in text, text


# notebooks/editing.ipynb: a class-conditional DCGAN, sampling, slerp, inversion and an edit.
EDITING_NOTEBOOK = REPO / 'notebooks' / 'editing.ipynb'
EDITING_STEPS = 2
EDITING_DIGITS = 4  # NUM_DIGITS of the notebook
EDITING_STRENGTHS = [-2.0, -1.0, 0.0, 1.0, 2.0]


def test_editing_notebook_is_valid_and_has_no_outputs():
  import nbformat  # pylint: disable=g-import-not-at-top

  nb = nbformat.read(str(EDITING_NOTEBOOK), as_version=4)
  nbformat.validate(nb)
  assert nb.metadata.kernelspec.name == 'python3'
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert code, 'the notebook has no code cells'
  dirty = [
    i
    for i, c in enumerate(nb.cells)
    if c.cell_type == 'code' and (c.outputs or c.execution_count is not None)
  ]
  assert not dirty, f'clear the outputs of cells {dirty} before committing the notebook'
  text = '\n'.join(c.source for c in nb.cells if c.cell_type == 'markdown')
  for cite in ('Shoemake', 'White', 'Shen', 'Miyato'):
    assert cite in text, f'the notebook no longer cites {cite}'


@pytest.mark.slow
def test_editing_notebook_runs_offline(tmp_path, monkeypatch):
  """Executes notebooks/editing.ipynb on the tiny mnist_cdcgan (2 train steps, 3 Adam steps of
  inversion from 1 start, 64 latents for the direction) and checks the arrays it saves."""
  import nbformat  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # pylint: disable=g-import-not-at-top
  from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top

  if not (TFDS_DIR / 'mnist').is_dir():
    pytest.fail(
      f'offline TFDS data not found at {TFDS_DIR}: this test needs ../shared/tfds '
      '(with mnist) beside the checkout; it is never skipped.'
    )
  try:
    KernelSpecManager().get_kernel_spec('python3')
  except NoSuchKernel:
    pytest.fail(
      'no "python3" Jupyter kernelspec: install ipykernel in this environment or run '
      f'`{sys.executable} -m ipykernel install --sys-prefix`.'
    )

  workdir = tmp_path / 'run'
  for name, value in {
    'EDITING_TINY': '1',
    'EDITING_CONFIG': str(REPO / 'experiments' / 'mnist_cdcgan.py'),
    'EDITING_STEPS': str(EDITING_STEPS),
    'EDITING_WORKDIR': str(workdir),
    'EDITING_INVERT_STEPS': '3',
    'EDITING_RESTARTS': '1',
    'EDITING_NUM_LATENTS': '64',
    'TFDS_DATA_DIR': str(TFDS_DIR),
    'TF_CPP_MIN_LOG_LEVEL': '2',
  }.items():
    monkeypatch.setenv(name, value)
  monkeypatch.delenv('MPLBACKEND', raising=False)  # let the kernel use the inline backend

  nb = nbformat.read(str(EDITING_NOTEBOOK), as_version=4)
  nb.cells.insert(0, nbformat.v4.new_code_cell(_PROBE))
  client = NotebookClient(
    nb,
    timeout=600,
    kernel_name='python3',
    allow_errors=False,
    resources={'metadata': {'path': str(tmp_path)}},
  )
  client.execute()  # raises CellExecutionError (with the cell's traceback) on the first error

  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
  errors = [o for o in outputs if o.output_type == 'error']
  assert not errors, f'cells raised: {[(o.ename, o.evalue) for o in errors]}'
  probe = ''.join(o.get('text', '') for o in nb.cells[0].outputs).strip()
  assert Path(probe).resolve() == Path(sys.prefix).resolve(), probe
  text = '\n'.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
  assert 'TINY=True STEPS=2' in text, text
  assert f'loaded step {EDITING_STEPS}: 10 classes' in text, text
  assert 'reconstruction MSE' in text, text

  # The run was trained here, then loaded.
  assert (workdir / 'checkpoints' / str(EDITING_STEPS)).is_dir()
  # Per-class grid, two interpolations, inversion, edit strip: >= 5 figures.
  images = [
    o
    for o in outputs
    if o.output_type in ('display_data', 'execute_result') and 'image/png' in o.get('data', {})
  ]
  assert len(images) >= 5, f'expected >= 5 images in the outputs, got {len(images)}'
  for png in ('per_class.png', 'interpolation.png', 'edit_ink.png'):
    assert (workdir / 'editing' / png).is_file(), png

  with np.load(workdir / 'editing' / 'editing.npz') as f:
    a = {k: f[k] for k in f.files}
  shape = (28, 28, 1)
  assert a['per_class'].shape == (10, 8) + shape  # one row per class
  assert a['interpolation'].shape == (4, 8) + shape
  assert a['cross_class'].shape == (10, 8) + shape
  n = EDITING_DIGITS
  assert a['inputs'].shape == a['reconstructions'].shape == (n,) + shape
  assert a['input_labels'].dtype.kind == 'i' and set(a['input_labels'].tolist()) <= set(range(10))
  assert a['inversion_mse'].shape == (n,) and np.all(np.isfinite(a['inversion_mse']))
  assert np.allclose(
    a['inversion_mse'],
    np.mean((a['reconstructions'] - a['inputs']) ** 2, axis=(1, 2, 3)),
    atol=1e-5,
  )
  assert a['ink_direction'].shape == (100,)
  assert abs(np.linalg.norm(a['ink_direction']) - 1) < 1e-4
  assert a['strengths'].tolist() == EDITING_STRENGTHS
  strip = a['edit_strip']
  assert strip.shape == (n, len(EDITING_STRENGTHS)) + shape
  assert np.all(np.isfinite(strip)) and np.all(np.abs(strip) <= 1)
  # Strength 0 is the inverted latent itself: its image is the reconstruction.
  np.testing.assert_allclose(strip[:, 2], a['reconstructions'], atol=1e-4)


# notebooks/translation.ipynb: pix2pix inpainting on MNIST, saved, then `gan-jax translate`.
TRANSLATION_NOTEBOOK = REPO / 'notebooks' / 'translation.ipynb'
TRANSLATION_STEPS = 2
TRANSLATION_SHOW = 6  # NUM_SHOW of the notebook


def test_translation_notebook_is_valid_and_has_no_outputs():
  import nbformat  # pylint: disable=g-import-not-at-top

  nb = nbformat.read(str(TRANSLATION_NOTEBOOK), as_version=4)
  nbformat.validate(nb)
  assert nb.metadata.kernelspec.name == 'python3'
  dirty = [
    i
    for i, c in enumerate(nb.cells)
    if c.cell_type == 'code' and (c.outputs or c.execution_count is not None)
  ]
  assert not dirty, f'clear the outputs of cells {dirty} before committing the notebook'
  text = '\n'.join(c.source for c in nb.cells if c.cell_type == 'markdown')
  assert 'Isola' in text and 'gan-jax translate' in text


@pytest.mark.slow
def test_translation_notebook_runs_offline(tmp_path, monkeypatch):
  """Executes notebooks/translation.ipynb on its tiny sizes (2 train steps) and checks the run
  folder it saves and the command's outputs against the restored generator."""
  import nbformat  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # pylint: disable=g-import-not-at-top
  from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top

  if not (TFDS_DIR / 'mnist').is_dir():
    pytest.fail(f'offline TFDS data not found at {TFDS_DIR}: this test needs ../shared/tfds.')
  try:
    KernelSpecManager().get_kernel_spec('python3')
  except NoSuchKernel:
    pytest.fail(f'no "python3" Jupyter kernelspec: run `{sys.executable} -m ipykernel install '
                '--sys-prefix`.')  # fmt: skip

  workdir = tmp_path / 'run'
  for name, value in {
    'TRANSLATION_TINY': '1',
    'TRANSLATION_STEPS': str(TRANSLATION_STEPS),
    'TRANSLATION_WORKDIR': str(workdir),
    'TFDS_DATA_DIR': str(TFDS_DIR),
    'TF_CPP_MIN_LOG_LEVEL': '2',
  }.items():
    monkeypatch.setenv(name, value)
  monkeypatch.delenv('MPLBACKEND', raising=False)

  nb = nbformat.read(str(TRANSLATION_NOTEBOOK), as_version=4)
  nb.cells.insert(0, nbformat.v4.new_code_cell(_PROBE))
  client = NotebookClient(
    nb, timeout=600, kernel_name='python3', allow_errors=False,
    resources={'metadata': {'path': str(tmp_path)}},
  )  # fmt: skip
  client.execute()

  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  probe = ''.join(o.get('text', '') for o in nb.cells[0].outputs).strip()
  assert Path(probe).resolve() == Path(sys.prefix).resolve(), probe
  text = '\n'.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
  assert f'TINY=True STEPS={TRANSLATION_STEPS}' in text, text
  assert f'loaded a pix2pix inpaint run at step {TRANSLATION_STEPS}' in text, text
  assert f'translated {TRANSLATION_SHOW} image(s)' in text, text
  images = [
    o
    for o in outputs
    if o.output_type in ('display_data', 'execute_result') and 'image/png' in o.get('data', {})
  ]
  assert images, 'the input | output | target figure is missing'

  # The run folder: record and checkpoint; the command's PNGs equal G applied directly.
  record = json.loads((workdir / 'translation_run.json').read_text())
  assert record['kind'] == 'pix2pix' and record['task']['task'] == 'inpaint'
  assert (workdir / 'checkpoints' / str(TRANSLATION_STEPS)).is_dir()
  names = sorted(p.name for p in (workdir / 'outputs').iterdir())
  assert names == [f'digit_{i}.png' for i in range(TRANSLATION_SHOW)]
  from gan_jax.core.sampling import to_uint8  # pylint: disable=g-import-not-at-top
  from gan_jax.training.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  from gan_jax.translation import create_pix2pix, translate_batches  # pylint: disable=g-import-not-at-top

  model, state = create_pix2pix(28, 2, 1, g_width=8, g_max_width=64, d_width=8, d_max_width=64)
  with Checkpointer(str(workdir), read_only=True) as ckpt:
    state = ckpt.restore(state)
  with np.load(workdir / 'translation.npz') as f:
    saved = {k: f[k] for k in f.files}
  assert saved['outputs'].shape == (TRANSLATION_SHOW, 28, 28, 1)
  np.testing.assert_array_equal(
    saved['outputs'], to_uint8(translate_batches(model, state, saved['model_inputs']))
  )
  # The hole marked by transparency became the task's own input: mean fill + mask channel.
  targets = saved['targets'].astype(np.float32) / 127.5 - 1
  mask = saved['model_inputs'][..., 1:] > 0
  assert mask.reshape(TRANSLATION_SHOW, -1).sum(1).tolist() == [14 * 14] * TRANSLATION_SHOW
  np.testing.assert_allclose(saved['model_inputs'][..., :1][~mask], targets[~mask], atol=1e-6)


# The install cell (the code cell setting GAN_JAX_SOURCE) is shared by the three notebooks.
NOTEBOOKS = (NOTEBOOK, EDITING_NOTEBOOK, TRANSLATION_NOTEBOOK)


def _install_cell(path):
  import nbformat  # pylint: disable=g-import-not-at-top

  nb = nbformat.read(str(path), as_version=4)
  cells = [c.source for c in nb.cells if c.cell_type == 'code' and 'GAN_JAX_SOURCE =' in c.source]
  assert len(cells) == 1, f'{path.name}: {len(cells)} cells set GAN_JAX_SOURCE, expected 1'
  return cells[0], nb


def test_notebooks_share_one_install_cell_without_a_hard_coded_url():
  import re  # pylint: disable=g-import-not-at-top

  first, _ = _install_cell(NOTEBOOK)
  for path in NOTEBOOKS:
    cell, nb = _install_cell(path)
    assert cell.startswith(first), f'{path.name}: its install cell differs from quickstart\'s'
    for c in nb.cells:  # a placeholder such as https://<host>/<you>/gan_jax is fine
      urls = re.findall(r'(?:git\+)?https?://[^\s\'")\]]+', c.source)
      bad = [u for u in urls if 'gan_jax' in u and '<' not in u]
      assert not bad, f'{path.name}: hard-coded URL(s) of a gan_jax repository: {bad}'


def test_install_cell_keeps_jax_and_tensorflow(monkeypatch, tmp_path):
  """Runs the cell's install_gan_jax on a simulated Colab environment (tensorflow and a CUDA
  jax installed) with pip replaced by a recorder, against setup.cfg's install_requires."""
  import configparser  # pylint: disable=g-import-not-at-top
  import importlib.metadata as md  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top

  cfg = configparser.ConfigParser()
  cfg.read(REPO / 'setup.cfg')
  lines = cfg['options']['install_requires'].splitlines()
  requires = [l.strip() for l in lines if l.strip() and not l.strip().startswith('#')]
  assert any(r.startswith('tensorflow-cpu') for r in requires)
  runtime = {'tensorflow': '2.20.0', 'jax': '0.10.2', 'jaxlib': '0.10.2',
             'jax-cuda12-plugin': '0.10.2', 'numpy': '2.0.2'}  # fmt: skip
  dists = [types.SimpleNamespace(metadata={'Name': n}, version=v) for n, v in runtime.items()]
  calls = []

  def fake_run(cmd, check=False, **kwargs):
    if cmd[-1] == 'check':  # pip check: the cell reports what it finds
      calls.append((cmd, None))
      return types.SimpleNamespace(stdout='gan-jax 0.1.0 requires tensorflow-cpu, which is not installed.')  # fmt: skip
    assert check and not kwargs
    pins = cmd[cmd.index('-c') + 1] if '-c' in cmd else None
    calls.append((cmd, Path(pins).read_text() if pins else None))

  cell, _ = _install_cell(NOTEBOOK)
  namespace = {}
  exec(compile(cell, 'install_cell', 'exec'), namespace)  # gan_jax importable: installs nothing
  monkeypatch.setattr(md, 'distributions', lambda: dists)
  monkeypatch.setattr(md, 'requires', lambda name: requires + ['pytest>=8; extra == "test"'])
  monkeypatch.setattr(subprocess, 'run', fake_run)
  namespace['install_gan_jax'](tmp_path / 'src')

  (first, _), (second, pins), (third, _) = calls
  assert third[-2:] == ['pip', 'check']
  assert first[-2:] == ['--no-deps', str(tmp_path / 'src')]
  assert sorted(pins.split()) == sorted(f'{n}=={v}' for n, v in runtime.items() if n != 'numpy')
  kept = ('tensorflow-cpu', 'jax>', 'jaxlib>')
  expected = [r for r in requires if not r.startswith(kept)]
  assert second[second.index('-c') + 2 :] == expected

  # Without any TensorFlow and JAX installed, everything of install_requires is asked for.
  calls.clear()
  monkeypatch.setattr(md, 'distributions', lambda: dists[-1:])
  namespace['install_gan_jax']('src')
  assert calls[1][1] == '' and calls[1][0][calls[1][0].index('-c') + 2 :] == requires
