"""The model registry: each generator/discriminator pair is one `Model` entry that declares
its own constraints.

On the model of `gan_jax.core.penalties`: a `Model` names its builder (which returns a freshly
initialised `(G, D)` pair of Flax NNX modules), the image sizes and channels it can make,
the discriminator options it supports (PacGAN packing, minibatch stddev; see `D_OPTIONS`),
whether it has class conditioning, and the config fields that set its size.
`gan_jax.config.validate` asks the entry's checks (`Model.check_shape` with the other shape
fields, `Model.check_conditioning` with the conditioning fields: together `Model.check`),
and `gan_jax.models.build_models` asks for `get(name).build`, so neither holds a list of
model names.

Adding a model: write its module (G and D as `nnx.Module`s taking a `dtype`), then one
`register(Model(...))` (the built-in ones are registered in `gan_jax.models`), and its tests
(`tests/test_model_registry.py` registers a toy model and trains it through the ordinary
path).

This module imports neither JAX nor Flax (the builders do), and holds no entry of its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from gan_jax.errors import ConfigError

# A model's builder: (the config's `model` block, image shape (H, W, C), `nnx.Rngs`, the
# layers' computation dtype: None for float32 or `jnp.bfloat16`) -> (generator,
# discriminator), NNX modules with freshly initialised parameters.
Builder = Callable[[Any, tuple[int, int, int], Any, Any], tuple[Any, Any]]

# Discriminator options that look at several samples at once (gan_jax/models/dcgan.py):
# config field in the `model` block -> (its 'off' value, what a valid value is). A value
# other than 'off' needs a model whose entry lists the field in `d_options`.
D_OPTIONS: dict[str, tuple[int, str]] = {
  'pack': (1, 'must be a positive integer (1: no packing; PacGAN uses 2)'),
  'minibatch_std': (0, 'must be >= 0 (0 disables it; Karras et al. 2018 use 4)'),
}

# How the layers of `gan_jax.models.layers` compute, for speed only (the same results to
# float32 rounding; issue 21, docs/performance.md): config field in the `model` block -> its
# default. A value other than the default needs a model whose entry declares `layer_options`.
#   tconv_backward: the backward pass of G's sub-pixel transposed convolutions (CPU):
#     'autodiff' or 'adjoint' (`layers.conv_transpose_adjoint_vjp`).
#   g_conv_chunk / d_conv_chunk: G's / D's (transposed) convolutions run on chunks of this
#     many images of the batch (`layers.in_batch_chunks`); 0 = the whole batch at once.
#   conv_kernel_grad: the kernel gradient of stride-1 convolutions: 'xla' or 'im2col'
#     (`layers.conv_im2col_vjp`).
LAYER_OPTIONS: dict[str, Any] = {
  'tconv_backward': 'autodiff',
  'g_conv_chunk': 0,
  'd_conv_chunk': 0,
  'conv_kernel_grad': 'xla',
}
TCONV_BACKWARDS = ('autodiff', 'adjoint')
KERNEL_GRADS = ('xla', 'im2col')


@dataclasses.dataclass(frozen=True)
class Model:
  """A generator/discriminator pair and the configs it accepts.

  Attributes:
    name: the `model.name` that selects it, e.g. 'dcgan28' (also its key in `MODELS`).
    build: its `Builder`: `build(model_config, (H, W, C), rngs, dtype) -> (G, D)`. G maps
      float32 `[B, latent_dim]` (and int32 labels `[B]` when conditional) to images `[B, H,
      W, C]` in [-1, 1]; D maps images to logits `[B]` (or `[B / pack]`).
    summary: one line for docs and listings.
    image_size: which `data.image_size` (H = W, in pixels) it can make; None: any.
    image_size_need: what a refused size is told, after 'model "<name>" ', e.g. 'needs 32'.
    channels: the `data.channels` it can make (1: grayscale, 3: RGB).
    d_options: the `D_OPTIONS` fields its discriminator implements ('pack',
      'minibatch_std'); any other must stay off.
    conditional: it has class conditioning (`gan_jax.models.conditional`): it accepts
      `model.num_classes > 0` and the conditioning fields.
    remat: its builder honours `model.remat` (rematerialised residual blocks: activations
      recomputed in the backward pass, `jax.checkpoint`); others refuse `model.remat=true`.
    layer_options: its G and D are built of `gan_jax.models.layers` `Conv` / `ConvTranspose`,
      so the `LAYER_OPTIONS` fields (`model.tconv_backward`, `model.g_conv_chunk`,
      `model.d_conv_chunk`, `model.conv_kernel_grad`) apply to it; others refuse them off their defaults.
    size_fields: the `model` fields that set its number of parameters (named when a config
      would build too large a model).
    paper: the reference, for docs.
  """

  name: str
  build: Builder
  summary: str = ''
  image_size: Callable[[int], bool] | None = None
  image_size_need: str = ''
  channels: tuple[int, ...] = (1, 3)
  d_options: tuple[str, ...] = ()
  conditional: bool = False
  remat: bool = False
  layer_options: bool = False
  size_fields: tuple[str, ...] = ('latent_dim', 'g_width', 'd_width')
  paper: str = ''

  def check(self, config: Any) -> None:
    """Checks every part of a full config this model constrains: `check_shape`, then
    `check_conditioning`.

    Args:
      config: a config with the `gan_jax.config.base_config()` layout.

    Raises:
      ConfigError: one line naming the first bad field and a valid choice, e.g.
        'data.image_size=28 is invalid: model "sngan32" needs 32.'
    """
    self.check_shape(config)
    self.check_conditioning(config)

  def check_shape(self, config: Any) -> None:
    """`data.image_size` and `data.channels`; the range of each `D_OPTIONS` field; that the
    options it lacks are off; that `model.remat` (absent: False) is a bool, true only for a
    model that declares `remat`.

    Raises:
      ConfigError: as `check`.
    """
    d, m = config.data, config.model
    if self.image_size is not None and not self.image_size(d.image_size):
      raise _err('data.image_size', d.image_size, f'model "{self.name}" {self.image_size_need}')
    if d.channels not in self.channels:
      raise _err(
        'data.channels',
        d.channels,
        f'model "{self.name}" makes images of {either(self.channels)} channels',
      )
    for field, (off, need) in D_OPTIONS.items():
      if m.get(field, off) < off:
        raise _err(f'model.{field}', m[field], need)
    for field, (off, _) in D_OPTIONS.items():
      value = m.get(field, off)
      if value != off and field not in self.d_options:
        others = either(n for n, e in MODELS.items() if field in e.d_options)
        raise _err(
          f'model.{field}',
          value,
          f'model "{self.name}" does not support it; use '
          f'model.name={others}, or set model.{field}={off}',
        )
    remat = m.get('remat', False)
    if not isinstance(remat, bool):
      raise _err('model.remat', remat, 'must be true or false')
    if remat and not self.remat:
      others = either(n for n, e in MODELS.items() if e.remat)
      raise _err(
        'model.remat',
        remat,
        f'model "{self.name}" does not support it; use model.name={others}, or set '
        'model.remat=false',
      )
    self.check_layer_options(config)

  def check_layer_options(self, config: Any) -> None:
    """The `LAYER_OPTIONS` fields: each a valid value, off its default only for a model that
    declares `layer_options`.

    Raises:
      ConfigError: as `check`.
    """
    m = config.model
    backward = m.get('tconv_backward', 'autodiff')
    if backward not in TCONV_BACKWARDS:
      raise _err('model.tconv_backward', backward, f'use {either(TCONV_BACKWARDS)}')
    kernel_grad = m.get('conv_kernel_grad', 'xla')
    if kernel_grad not in KERNEL_GRADS:
      raise _err('model.conv_kernel_grad', kernel_grad, f'use {either(KERNEL_GRADS)}')
    for field in ('g_conv_chunk', 'd_conv_chunk'):
      value = m.get(field, 0)
      if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _err(f'model.{field}', value, 'must be 0 (the whole batch) or a positive integer')
    for field, off in LAYER_OPTIONS.items():
      value = m.get(field, off)
      if value != off and not self.layer_options:
        others = either(n for n, e in MODELS.items() if e.layer_options)
        raise _err(
          f'model.{field}',
          value,
          f'model "{self.name}" does not support it; use model.name={others}, or set '
          f'model.{field}={off}',
        )

  def check_conditioning(self, config: Any) -> None:
    """A positive integer `model.num_classes` needs a model with class conditioning (the
    conditioning fields themselves are checked by `gan_jax.config.validate`).

    Raises:
      ConfigError: as `check`.
    """
    k = config.model.get('num_classes', 0)
    if isinstance(k, int) and not isinstance(k, bool) and k > 0 and not self.conditional:
      raise _err(
        'model.num_classes',
        k,
        f'model "{self.name}" has no class conditioning; use '
        f'model.name={either(conditional_names())}, or set model.num_classes=0',
      )


# The registry, in registration order: model.name -> entry.
MODELS: dict[str, Model] = {}


def register(model: Model, *, replace: bool = False) -> Model:
  """Adds a model to `MODELS` (so `model.name=<its name>` selects it everywhere).

  Args:
    model: the entry.
    replace: allow replacing an entry of the same name.

  Returns:
    The entry (so a module can write `MY_MODEL = register(Model(...))`).

  Raises:
    ValueError: a model of that name is registered already (and not `replace`), or a
      `d_options` field that is not in `D_OPTIONS`.
  """
  if model.name in MODELS and not replace:
    raise ValueError(f'a model named {model.name!r} is registered already; pass replace=True.')
  unknown = sorted(set(model.d_options) - set(D_OPTIONS))
  if unknown:
    raise ValueError(
      f'model {model.name!r}: unknown d_options {unknown}; known: {list(D_OPTIONS)}.'
    )
  MODELS[model.name] = model
  return model


def unregister(name: str) -> Model:
  """Removes and returns the entry `name` (e.g. a model a test registered).

  Raises:
    KeyError: no model of that name.
  """
  return MODELS.pop(name)


def get(name: Any) -> Model:
  """The entry of `model.name` `name`.

  Raises:
    ConfigError: no such model (the message lists the registered ones).
  """
  if not isinstance(name, str) or name not in MODELS:
    raise _err('model.name', name, f'choose one of {sorted(MODELS)}')
  return MODELS[name]


def check(config: Any) -> None:
  """`get(config.model.name).check(config)`: the model part of `gan_jax.config.validate`.

  Raises:
    ConfigError: an unknown model name, or a field the model refuses (see `Model.check`).
  """
  get(config.model.name).check(config)


def conditional_names() -> list[str]:
  """The names of the models with class conditioning, in registration order."""
  return [n for n, e in MODELS.items() if e.conditional]


def either(items: Any) -> str:
  """'a', 'a or b', 'a, b or c' (for messages that offer a choice)."""
  items = [str(i) for i in items]
  return ' or '.join(items) if len(items) < 3 else f'{", ".join(items[:-1])} or {items[-1]}'


def _err(field: str, value: Any, need: str) -> ConfigError:
  return ConfigError(f'{field}={value!r} is invalid: {need}.')
