"""Exporting a trained generator for use without gan_jax: `gan-jax export`.

    gan-jax export --workdir runs/mnist_dcgan --out exported/mnist_dcgan [--step N | --best]
        [--raw] [--ema-stats raw|standing] [--platforms cpu,cuda,tpu]

writes three things into the (new or empty) folder `--out`:

  generator.jax_export  the generator as serialized StableHLO (`jax.export`), weights
                        included; load it with `jax.export.deserialize` and call `.call`.
  saved_model/          the same function as a TensorFlow SavedModel (`jax2tf`), signature
                        'serving_default': inputs 'z' (and 'labels'), output 'images'.
  metadata.json         latent_dim, num_classes, image shape and value range, the inputs'
                        names/dtypes/shapes, the run's config and step, which generator (EMA
                        or raw) and which BatchNorm statistics it carries, and the gan_jax,
                        JAX and TensorFlow versions.

The exported function is what `gan-jax sample` computes (`gan_jax.core.sampling.sample`: G in
inference mode, the EMA weights unless `--raw`), with the BatchNorm statistics held as
constants that `gan-jax sample` uses: the raw generator its own running averages; the EMA
generator those the run's `eval.ema_batch_stats` (or `--ema-stats`) gives it, 'raw' (the raw
G's running averages) or 'standing' (the EMA weights' own, computed once at export with the
run's seed; `gan_jax.core.sampling.sampling_batch_stats`). metadata.json's 'ema_batch_stats'
says which ('raw' or 'standing'; null for the raw generator):

    images = f(z)            unconditional run
    images = f(z, labels)    class-conditional run (model.num_classes = K > 0)

with z float32 `[B, latent_dim]` (usually N(0, I)), labels int32 `[B]` in [0, K), and images
float32 `[B, H, W, C]` in [-1, 1]. B is symbolic: one artefact serves every batch size >= 1.
Label values are not checked inside the exported function (they are traced); keep them in
[0, K). Neither artefact needs gan_jax to load (see docs/export.md).

This module imports JAX and TensorFlow only when an export runs, so that `gan-jax --help`
stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Sequence

EXPORT_FILE = 'generator.jax_export'
SAVED_MODEL_DIR = 'saved_model'
METADATA_FILE = 'metadata.json'
SIGNATURE = 'serving_default'
# StableHLO for all three backends: the artefact runs where it is loaded, whatever lowered it.
DEFAULT_PLATFORMS = ('cpu', 'cuda', 'tpu')
FORMAT_VERSION = 1


class ExportUsageError(ValueError):
  """A mistake in the `export` command's arguments; `gan-jax` prints it as one line (status 2)."""


def generator_function(
  gan: Any, state: Any, *, use_ema: bool = True, batch_stats: Any = None
) -> Callable[..., Any]:
  """G in inference mode as a pure function of its inputs, weights held as constants.

  The function calls `gan_jax.core.sampling.sample` on a host copy of the state, so it computes
  exactly what `gan-jax sample` does, with no reference to the devices the run was restored
  on.

  Args:
    gan: the run's `gan_jax.core.state.GAN`.
    state: its `GANState` (e.g. from `gan_jax.training.checkpoint.load_run`).
    use_ema: the EMA generator's weights (`ema_params`); False: the raw `g_params`.
    batch_stats: G's BatchNorm statistics, held as constants (None: `state.g_batch_stats`,
      the raw generator's running averages); `export_run` passes
      `gan_jax.core.sampling.sampling_batch_stats`'s.

  Returns:
    `f(z)` (unconditional) or `f(z, labels)` (conditional): z float32 `[B, latent_dim]`,
    labels int32 `[B]` in [0, num_classes); returns float32 `[B, H, W, C]` in [-1, 1].
  """
  import jax  # pylint: disable=g-import-not-at-top

  from gan_jax.core import sampling  # pylint: disable=g-import-not-at-top

  params = state.ema_params if use_ema else state.g_params
  stats = state.g_batch_stats if batch_stats is None else batch_stats
  # Only what G reads, fetched to the host: the exported constants are plain arrays.
  host = state.replace(
    g_params=jax.device_get(params), ema_params=jax.device_get(params),
    g_batch_stats=jax.device_get(stats),
  )  # fmt: skip

  if gan.conditional:

    def generate(z, labels):
      return sampling.sample(gan, host, z, labels, use_ema=use_ema)

  else:

    def generate(z):
      return sampling.sample(gan, host, z, use_ema=use_ema)

  return generate


def input_specs(gan: Any) -> list[dict[str, Any]]:
  """Names, dtypes and shapes of the exported function's inputs, in call order.

  Returns:
    `[{'name': 'z', 'dtype': 'float32', 'shape': ['B', latent_dim]}]`, plus
    `{'name': 'labels', 'dtype': 'int32', 'shape': ['B'], 'range': [0, K]}` (K excluded) for a
    conditional GAN; 'B' is the (any) batch size.
  """
  specs = [{'name': 'z', 'dtype': 'float32', 'shape': ['B', gan.latent_dim]}]
  if gan.conditional:
    specs.append(
      {'name': 'labels', 'dtype': 'int32', 'shape': ['B'], 'range': [0, gan.num_classes]}
    )
  return specs


def _abstract_inputs(gan: Any) -> list[Any]:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  (b,) = jax.export.symbolic_shape('B')
  args = [jax.ShapeDtypeStruct((b, gan.latent_dim), jnp.float32)]
  if gan.conditional:
    args.append(jax.ShapeDtypeStruct((b,), jnp.int32))
  return args


def export_generator(
  gan: Any,
  state: Any,
  *,
  use_ema: bool = True,
  platforms: Sequence[str] = DEFAULT_PLATFORMS,
  batch_stats: Any = None,
) -> Any:
  """Lowers the generator to a batch-polymorphic `jax.export.Exported`.

  Args:
    gan, state, use_ema, batch_stats: as in `generator_function`.
    platforms: the backends to lower for ('cpu', 'cuda', 'rocm', 'tpu'); the artefact runs
      on any of them.

  Returns:
    a `jax.export.Exported` with in_avals `float32[B, latent_dim]` (and `int32[B]` labels)
    and out_avals `float32[B, H, W, C]`, B symbolic; `.serialize()` gives the bytes of
    `generator.jax_export`.

  Raises:
    ValueError: (from JAX) the model cannot be lowered with a symbolic batch size, or not
      for one of `platforms`.
  """
  import jax  # pylint: disable=g-import-not-at-top

  fn = generator_function(gan, state, use_ema=use_ema, batch_stats=batch_stats)
  return jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*_abstract_inputs(gan))


def save_saved_model(
  gan: Any,
  state: Any,
  path: str,
  *,
  use_ema: bool = True,
  platforms: Sequence[str] = DEFAULT_PLATFORMS,
  batch_stats: Any = None,
) -> None:
  """Writes the generator as a TensorFlow SavedModel (jax2tf, native serialization).

  The SavedModel's signature 'serving_default' takes `z` (tf.float32 `[None, latent_dim]`)
  and, for a conditional GAN, `labels` (tf.int32 `[None]`), and returns `{'images':
  tf.float32 [None, H, W, C]}` in [-1, 1]; the same function is the module's `generate`
  attribute (`tf.saved_model.load(path).generate(z[, labels])['images']`). No gradient is
  exported.

  Args:
    gan, state, use_ema, platforms, batch_stats: as in `export_generator`.
    path: the SavedModel folder to write.
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top

  fn = generator_function(gan, state, use_ema=use_ema, batch_stats=batch_stats)
  poly = ['(B, _)', '(B,)'] if gan.conditional else ['(B, _)']
  tf_fn = jax2tf.convert(
    fn,
    polymorphic_shapes=poly,
    with_gradient=False,
    native_serialization_platforms=tuple(platforms),
  )
  z_spec = tf.TensorSpec([None, gan.latent_dim], tf.float32, name='z')
  module = tf.Module()
  if gan.conditional:

    @tf.function(
      input_signature=[z_spec, tf.TensorSpec([None], tf.int32, name='labels')], autograph=False
    )
    def generate(z, labels):
      return {'images': tf_fn(z, labels)}

  else:

    @tf.function(input_signature=[z_spec], autograph=False)
    def generate(z):
      return {'images': tf_fn(z)}

  module.generate = generate
  tf.saved_model.save(module, path, signatures={SIGNATURE: generate.get_concrete_function()})


def check_out_dir(out: str) -> None:
  """Checks that `--out` can receive an export: absent, or an empty folder.

  Raises:
    ExportUsageError: `out` is a file, or a folder that is not empty.
  """
  if os.path.isdir(out):
    if os.listdir(out):
      raise ExportUsageError(
        f'--out {out!r} exists and is not empty; give a new or empty folder (nothing is '
        'overwritten).'
      )
  elif os.path.lexists(out):
    raise ExportUsageError(f'--out {out!r} is a file; give a new or empty folder.')


def export_run(
  workdir: str,
  out: str,
  *,
  step: int | None = None,
  best: bool = False,
  raw: bool = False,
  platforms: Sequence[str] = DEFAULT_PLATFORMS,
  ema_stats: str | None = None,
) -> dict[str, Any]:
  """Exports a run's generator into `out`: generator.jax_export, saved_model/, metadata.json.

  Everything is written into a temporary folder beside `out` and renamed to `out` when
  complete, so a failed export leaves no partial folder.

  Args:
    workdir: the run folder written by `gan-jax train`.
    out: the folder to create (it may exist if empty).
    step: checkpoint step (default: the latest); with `best`, a step of `<workdir>/best/`.
    best: the best-FID checkpoint (`<workdir>/best/`) instead of the latest.
    raw: the raw generator (`g_params`) instead of the EMA one. A run trained with
      `train.ema_decay = 0` has no separate EMA generator and is exported raw either way,
      as `gan-jax sample` samples it.
    platforms: the backends the artefacts are lowered for.
    ema_stats: the EMA generator's BatchNorm statistics, 'raw' or 'standing' (None: the
      run's `eval.ema_batch_stats`, as `gan-jax sample` uses; see the module docstring).

  Returns:
    the metadata written to `metadata.json`: format_version, generator ('ema' or 'raw'),
    ema_batch_stats (the EMA generator's statistics policy; None for the raw generator),
    latent_dim, num_classes, conditional, image_shape [H, W, C], image_layout 'NHWC',
    value_range [-1.0, 1.0], inputs (see `input_specs`), outputs, files, platforms, step,
    checkpoint ('latest', 'step' or 'best'), workdir, config (the run's, as a dict), and
    gan_jax_version, jax_version, jaxlib_version, tensorflow_version.

  Raises:
    ExportUsageError: `workdir` is not a folder, `out` is a file or a non-empty folder, or
      the generator cannot be lowered for one of `platforms`.
    FileNotFoundError: no config.json, or no checkpoint (at `step`) in the run.
    gan_jax.errors.UnreadableCheckpointError: the checkpoint fails its digest.
  """
  if not os.path.isdir(workdir):
    raise ExportUsageError(
      f'workdir {workdir!r} does not exist; train first with '
      '`gan-jax train --config ... --workdir ...`.'
    )
  check_out_dir(out)
  import jax  # pylint: disable=g-import-not-at-top

  import gan_jax  # pylint: disable=g-import-not-at-top
  from gan_jax.training.checkpoint import load_run  # pylint: disable=g-import-not-at-top

  from gan_jax.config import ema_batch_stats  # pylint: disable=g-import-not-at-top
  from gan_jax.core import sampling  # pylint: disable=g-import-not-at-top

  config, gan, state = load_run(workdir, step, best=best)
  use_ema = config.train.ema_decay > 0 and not raw  # as `gan-jax sample` (--no-ema)
  policy = ema_stats or ema_batch_stats(config)
  stats = sampling.sampling_batch_stats(
    gan, state, use_ema=use_ema, ema_stats=policy, seed=config.seed
  )
  try:
    exported = export_generator(gan, state, use_ema=use_ema, platforms=platforms, batch_stats=stats)
  except Exception as e:  # pylint: disable=broad-except  # JAX's lowering errors vary
    reason = ' '.join(str(e).split())[:300]
    raise ExportUsageError(
      f'cannot export the generator for platforms {",".join(platforms)} '
      f'({type(e).__name__}: {reason}); try fewer --platforms, e.g. --platforms cpu.'
    ) from e
  h, w, c = gan.image_shape
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(os.path.abspath(out))}.partial-', dir=parent)
  try:
    with open(os.path.join(tmp, EXPORT_FILE), 'wb') as f:
      f.write(exported.serialize())
    save_saved_model(
      gan,
      state,
      os.path.join(tmp, SAVED_MODEL_DIR),
      use_ema=use_ema,
      platforms=platforms,
      batch_stats=stats,
    )
    import jaxlib  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    meta = {
      'format_version': FORMAT_VERSION,
      'generator': 'ema' if use_ema else 'raw',
      'ema_batch_stats': policy if use_ema else None,
      'latent_dim': gan.latent_dim,
      'num_classes': gan.num_classes,
      'conditional': gan.conditional,
      'image_shape': [h, w, c],
      'image_layout': 'NHWC',
      'value_range': [-1.0, 1.0],
      'inputs': input_specs(gan),
      'outputs': [{'name': 'images', 'dtype': 'float32', 'shape': ['B', h, w, c]}],
      'files': {
        'jax_export': EXPORT_FILE,
        'saved_model': SAVED_MODEL_DIR,
        'saved_model_signature': SIGNATURE,
      },
      'platforms': list(exported.platforms),
      'step': int(jax.device_get(state.step)),
      'checkpoint': 'best' if best else ('step' if step is not None else 'latest'),
      'workdir': os.path.abspath(workdir),
      'config': json.loads(config.to_json()),
      'gan_jax_version': gan_jax.__version__,
      'jax_version': jax.__version__,
      'jaxlib_version': jaxlib.__version__,
      'tensorflow_version': tf.__version__,
    }
    with open(os.path.join(tmp, METADATA_FILE), 'w') as f:
      json.dump(meta, f, indent=2)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private (0700)
    if os.path.isdir(out):  # an empty folder (checked above): replaced by the export
      os.rmdir(out)
    os.rename(tmp, os.path.abspath(out))
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return meta


def add_parser(sub: Any) -> argparse.ArgumentParser:
  """Adds the `export` subcommand to `gan_jax.cli.main.build_parser`'s subparsers; returns it."""
  p = sub.add_parser(
    'export',
    help='export a run\'s generator (jax.export StableHLO, TF SavedModel, metadata.json)',
    description='Writes --out/generator.jax_export (load with jax.export.deserialize), '
    '--out/saved_model/ (load with tf.saved_model.load) and --out/metadata.json; neither '
    'artefact needs gan_jax. The function maps z float32 [B, latent_dim] (and labels int32 '
    '[B] for a conditional run) to images float32 [B, H, W, C] in [-1, 1], for any B, as '
    '`gan-jax sample` does. See docs/export.md.',
  )
  p.add_argument('--workdir', required=True, help='run folder written by `gan-jax train`')
  p.add_argument('--out', required=True, help='folder to write (new, or an empty one)')
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  p.add_argument('--best', action='store_true', help='export the best-FID checkpoint')
  p.add_argument('--raw', action='store_true', help='export the raw, not the EMA, generator')
  p.add_argument(
    '--ema-stats',
    choices=('raw', 'standing'),
    default=None,
    help="BatchNorm statistics the EMA generator carries: 'raw' (the raw G's running "
    "averages) or 'standing' (recomputed from the EMA weights, Brock et al. 2019); default: "
    "the run's eval.ema_batch_stats",
  )
  p.add_argument(
    '--platforms',
    default=','.join(DEFAULT_PLATFORMS),
    help='comma-separated backends to lower for (default cpu,cuda,tpu)',
  )
  return p


def run(args: argparse.Namespace) -> None:
  """Runs `gan-jax export` and prints what it wrote.

  Raises:
    ExportUsageError: a usage mistake (printed as one line by `gan_jax.cli.main`).
    FileNotFoundError, UnreadableCheckpointError: as `export_run`.
  """
  if args.step is not None and args.best:
    raise ExportUsageError('give either --step (a checkpoint of the run) or --best, not both.')
  platforms = tuple(p.strip() for p in args.platforms.split(',') if p.strip())
  known = ('cpu', 'cuda', 'rocm', 'tpu')
  if not platforms or any(p not in known for p in platforms):
    raise ExportUsageError(
      f'--platforms={args.platforms!r}: give a comma-separated list of {", ".join(known)}.'
    )
  meta = export_run(
    args.workdir,
    args.out,
    step=args.step,
    best=args.best,
    raw=args.raw,
    platforms=platforms,
    ema_stats=args.ema_stats,
  )
  which = 'EMA' if meta['generator'] == 'ema' else 'raw'
  print(
    f'wrote the {which} generator of step {meta["step"]} to {args.out}: {EXPORT_FILE}, '
    f'{SAVED_MODEL_DIR}/, {METADATA_FILE}'
  )
