"""Generators and discriminators, and the registry entries of the built-in models.

Each model is one `gan_jax.models.registry.Model` entry (its builder, image sizes, channels,
discriminator options, class conditioning), registered here for 'mlp', 'dcgan28', 'dcgan',
'sngan32' and 'r3gan'. `build_models(model_config, image_shape, seed, dtype=...)` returns the
`(G, D)` pair of Flax NNX modules of the entry `model_config.name`; the training code turns
them into pure functions with `nnx.split` / `nnx.merge` (see `gan_jax.core.state`).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from gan_jax.models.conditional import (
  D_CONDITIONINGS,
  G_CONDITIONINGS,
  ConditionalBatchNorm,
  LabelEmbed,
)
from gan_jax.models.dcgan import (
  DCGAN28Discriminator,
  DCGAN28Generator,
  DCGANDiscriminator,
  DCGANGenerator,
  minibatch_stddev,
  pack_images,
)
from gan_jax.models.mlp import MLPDiscriminator, MLPGenerator
from gan_jax.models import layers, r3gan, registry
from gan_jax.models.registry import MODELS, Model, register, unregister
from gan_jax.models.r3gan import R3GANDiscriminator, R3GANEntry, R3GANGenerator, stage_config
from gan_jax.models.sngan import SNGANDiscriminator, SNGANGenerator, SpectralNorm


def _d_options(cfg):
  """The DCGAN discriminators' optional config fields, with their defaults."""
  return dict(
    spectral_norm=cfg.get('spectral_norm', False),
    pack=cfg.get('pack', 1),
    minibatch_std=cfg.get('minibatch_std', 0),
  )


def _g_cond(cfg):
  """The generators' conditioning fields (`gan_jax.models.conditional`), with defaults."""
  return dict(
    num_classes=cfg.get('num_classes', 0),
    conditioning=cfg.get('g_conditioning', 'cbn'),
    embed_dim=cfg.get('label_embed_dim', 0),
  )


def _d_cond(cfg):
  """The discriminators' conditioning fields, with defaults."""
  return dict(
    num_classes=cfg.get('num_classes', 0),
    conditioning=cfg.get('d_conditioning', 'projection'),
    embed_dim=cfg.get('label_embed_dim', 0),
  )


def _mlp(cfg, shape, rngs, dtype):
  hidden = tuple(cfg.get('hidden', (256, 256)))
  return (
    MLPGenerator(shape, cfg.latent_dim, hidden, dtype=dtype, rngs=rngs),
    MLPDiscriminator(shape, hidden, dtype=dtype, rngs=rngs),
  )


def _dcgan28(cfg, shape, rngs, dtype):
  return (
    DCGAN28Generator(shape, cfg.latent_dim, cfg.g_width, dtype=dtype, rngs=rngs, **_g_cond(cfg)),
    DCGAN28Discriminator(
      shape, cfg.d_width, dtype=dtype, rngs=rngs, **_d_options(cfg), **_d_cond(cfg)
    ),
  )


def _dcgan(cfg, shape, rngs, dtype):
  return (
    DCGANGenerator(shape, cfg.latent_dim, cfg.g_width, dtype=dtype, rngs=rngs, **_g_cond(cfg)),
    DCGANDiscriminator(
      shape, cfg.d_width, dtype=dtype, rngs=rngs, **_d_options(cfg), **_d_cond(cfg)
    ),
  )


def _sngan32(cfg, shape, rngs, dtype):
  opts = dict(dtype=dtype, remat=cfg.get('remat', False), rngs=rngs)
  return (
    SNGANGenerator(shape, cfg.latent_dim, cfg.g_width, **opts, **_g_cond(cfg)),
    SNGANDiscriminator(shape, cfg.d_width, **opts, **_d_cond(cfg)),
  )


def _r3gan(cfg, shape, rngs, dtype):
  s = stage_config(cfg, shape[0])
  opts = dict(expansion=s.expansion, group_size=s.group_size, dtype=dtype, rngs=rngs)
  return (
    R3GANGenerator(shape, cfg.latent_dim, s.g_widths, s.g_blocks, **opts, **_g_cond(cfg)),
    R3GANDiscriminator(shape, s.d_widths, s.d_blocks, **opts, **_d_cond(cfg)),
  )


# `config.dtype` -> the layers' computation dtype. None is Flax's default (the dtype of the
# inputs and parameters: float32), so 'float32' builds exactly the models it always did.
# 'bfloat16' is mixed precision: float32 parameters (and so optimizer state and EMA),
# BatchNorm statistics and spectral-norm state; bfloat16 layers and activations.
DTYPES: dict[str, Any] = {'float32': None, 'bfloat16': jnp.bfloat16}

register(
  Model(
    'mlp',
    _mlp,
    'fully connected G and D, any image size (`model.hidden` widths)',
    size_fields=('latent_dim', 'g_width', 'd_width', 'hidden'),
  )
)
register(
  Model(
    'dcgan28',
    _dcgan28,
    'DCGAN for 28x28 images (MNIST)',
    image_size=lambda s: s == 28,
    image_size_need='needs 28; use model.name=dcgan for power-of-two sizes',
    d_options=('pack', 'minibatch_std'),
    conditional=True,
    layer_options=True,
    paper='Radford et al. 2016',
  )
)
register(
  Model(
    'dcgan',
    _dcgan,
    'DCGAN for power-of-two sizes >= 8 (32, 64, ...)',
    image_size=lambda s: s >= 8 and not s & (s - 1),
    image_size_need='needs a power of two >= 8, e.g. 32',
    d_options=('pack', 'minibatch_std'),
    conditional=True,
    layer_options=True,
    paper='Radford et al. 2016',
  )
)
register(
  Model(
    'sngan32',
    _sngan32,
    'SNGAN ResNet for 32x32 images, spectrally normalised D',
    image_size=lambda s: s == 32,
    image_size_need='needs 32',
    conditional=True,
    remat=True,
    layer_options=True,
    paper='Miyato et al. 2018',
  )
)
register(
  R3GANEntry(
    'r3gan',
    _r3gan,
    'R3GAN modern ResNet (grouped inverted bottlenecks, no normalisation), 28, 32, 64, ... px',
    image_size=r3gan.image_size_ok,
    image_size_need='needs 4 * 2^k or 7 * 2^k pixels, k >= 1 (8, 14, 16, 28, 32, 64, ...)',
    conditional=True,
    size_fields=('latent_dim', 'g_width', 'd_width', 'stage_widths', 'stage_blocks', 'expansion'),
    paper='Huang et al. 2024',
  )
)


def build_models(
  model_config: Any, image_shape: tuple[int, int, int], seed: int, *, dtype: str = 'float32'
) -> tuple[nnx.Module, nnx.Module]:
  """Builds the generator and discriminator named by `model_config.name`.

  Args:
    model_config: the config's `model` block: `name` (a key of `MODELS`), `latent_dim`, for
      DCGANs and 'sngan32' `g_width` / `d_width` (for MLPs an optional `hidden` tuple), and
      for the DCGANs optional discriminator fields: `spectral_norm` (default False; True
      spectrally normalises every D layer and drops D's BatchNorm, Miyato et al. 2018),
      `pack` (default 1; m > 1 makes D judge packs of m images and return `[B / m]` logits,
      PacGAN, Lin et al. 2018) and `minibatch_std` (default 0; G > 0 adds a minibatch-stddev
      feature over groups of G, Karras et al. 2018). 'mlp' and 'sngan32' ignore these three
      (`gan_jax.config.validate` rejects pack > 1 and minibatch_std > 0 for them). 'sngan32'
      (SNGAN ResNet, 32x32 only) always normalises D; the paper uses g_width 256, d_width
      128, latent_dim 128.
      Class conditioning (`gan_jax.models.conditional`; 'dcgan28', 'dcgan', 'sngan32'):
      `num_classes` (default 0: unconditional, exactly the models without these fields),
      `g_conditioning` ('cbn' default, or 'concat'), `d_conditioning` ('projection' default,
      'concat' or 'acgan') and `label_embed_dim` (default 0: one-hot labels for 'concat').
      'sngan32' also reads `remat` (default False; True rematerialises G's and D's residual
      blocks in gradients: less memory, the same results to float32 rounding).
      'dcgan28', 'dcgan' and 'sngan32' also read the speed-only layer options `tconv_backward`
      ('autodiff' default, or 'adjoint'), `g_conv_chunk` and `d_conv_chunk` (default 0: whole
      batches; SNGAN-32 has no transposed convolutions) and `conv_kernel_grad` ('xla' default,
      or 'im2col'; stride-1 convolutions, i.e. SNGAN-32's), set on their layers by
      `layers.set_layer_options`
      (`gan_jax.models.registry.LAYER_OPTIONS`).
      'r3gan' (`gan_jax.models.r3gan`, Huang et al. 2024) reads `stage_widths` (default ():
      `g_width` / `d_width` at every stage), `stage_blocks` ((1,)), `expansion` (2) and
      `group_size` (16), and conditions G by 'concat' only.
    image_shape: (H, W, C) of the training images.
    seed: integer seed of the parameter initialisation.
    dtype: the run's `config.dtype`, a key of `DTYPES`: 'float32' (default) or 'bfloat16'
      (mixed precision: the layers compute in bfloat16 and the models return bfloat16;
      parameters and BatchNorm / spectral-norm state are float32 either way, and they are
      initialised to the same values). `gan_jax.core.state.GAN` casts G's images and D's logits
      to float32.

  Returns:
    `(generator, discriminator)`, NNX modules with freshly initialised parameters.

  Raises:
    ValueError: for an unknown model name (listing the valid ones) or dtype, an image shape
      the architecture cannot produce, an invalid `pack` / `minibatch_std`, or invalid
      conditioning fields (including num_classes > 0 for 'mlp', or with pack > 1).
  """
  if model_config.name not in MODELS:
    raise ValueError(
      f'model.name={model_config.name!r} is not a known model; choose one of {sorted(MODELS)}.'
    )
  if dtype not in DTYPES:
    raise ValueError(f'dtype={dtype!r} is not a known dtype; choose one of {sorted(DTYPES)}.')
  model = MODELS[model_config.name]
  k = model_config.get('num_classes', 0)
  if k and not model.conditional:
    raise ValueError(
      f'model.num_classes={k}: model "{model.name}" has no class conditioning; use '
      f'model.name={registry.either(registry.conditional_names())}, or set model.num_classes=0.'
    )
  g, d = model.build(model_config, tuple(image_shape), nnx.Rngs(params=seed), DTYPES[dtype])
  options = {f: model_config.get(f, off) for f, off in registry.LAYER_OPTIONS.items()}
  if options != registry.LAYER_OPTIONS:
    if not model.layer_options:
      raise ValueError(
        f'model "{model.name}" does not support model.tconv_backward / model.g_conv_chunk / '
        f'model.d_conv_chunk / model.conv_kernel_grad; use model.name={registry.either(n for n, e in MODELS.items() if e.layer_options)}.'
      )
    common = dict(tconv_backward=options['tconv_backward'], kernel_grad=options['conv_kernel_grad'])
    layers.set_layer_options(g, batch_chunk=options['g_conv_chunk'], **common)
    layers.set_layer_options(d, batch_chunk=options['d_conv_chunk'], **common)
  return g, d


__all__ = [
  'D_CONDITIONINGS',
  'G_CONDITIONINGS',
  'ConditionalBatchNorm',
  'LabelEmbed',
  'DTYPES',
  'MODELS',
  'Model',
  'register',
  'unregister',
  'build_models',
  'MLPGenerator',
  'MLPDiscriminator',
  'DCGAN28Generator',
  'DCGAN28Discriminator',
  'DCGANGenerator',
  'DCGANDiscriminator',
  'SNGANGenerator',
  'SNGANDiscriminator',
  'R3GANGenerator',
  'R3GANDiscriminator',
  'SpectralNorm',
  'minibatch_stddev',
  'pack_images',
]
