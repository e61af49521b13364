"""Class conditioning for generators and discriminators (class-conditional GANs).

A conditional GAN models p(x | y) for class labels y in [0, K): G(z, y) makes an image of
class y, and D judges (x, y) pairs (or classifies x). The pieces here are shared by the
DCGAN-28, DCGAN, SNGAN-32 and R3GAN models (`gan_jax.models.dcgan`, `gan_jax.models.sngan`,
`gan_jax.models.r3gan`):

Generator conditioning (`model.g_conditioning`, `G_CONDITIONINGS`):

* 'concat': Mirza & Osindero 2014, "Conditional Generative Adversarial Nets", section 4.1:
  y enters G's input layer beside z. y is a one-hot vector (`model.label_embed_dim` 0) or a
  learned embedding of `label_embed_dim` values (`LabelEmbed`), concatenated to z.
* 'cbn': conditional BatchNorm (`ConditionalBatchNorm`; de Vries et al. 2017, Dumoulin et
  al. 2017), as in the generator of Miyato & Koyama 2018, "cGANs with Projection
  Discriminator" (their `CategoricalConditionalBatchNormalization`): each BatchNorm of G
  normalises with batch statistics shared by all classes, then applies a gain and a bias
  picked by y (per-class, learned, initialised to 1 and 0).

Discriminator conditioning (`model.d_conditioning`, `D_CONDITIONINGS`):

* 'concat': Mirza & Osindero 2014: y enters D's input beside x, as constant label maps
  (one-hot, or a learned embedding) concatenated to the image along channels
  (`concat_label_maps`).
* 'projection': Miyato & Koyama 2018, eq. 3: with phi(x) the features D's last dense layer
  reads and psi that layer, the logit is `psi(phi(x)) + <V[y], phi(x)>`, V a learned
  `[K, dim phi]` class embedding (spectrally normalised when D's layers are, as in the
  authors' `SNEmbedID`).
* 'acgan': Odena et al. 2017, "Conditional Image Synthesis with Auxiliary Classifier GANs":
  D does not see y; a second dense head on phi(x) gives class logits `[B, K]`, and the train
  step adds the classification cross-entropy (`gan_jax.core.losses.class_cross_entropy`) of the
  real and the generated images to D's loss and that of the generated images to G's.

`num_classes = 0` means unconditional: the models then build exactly the layers they always
did (same parameters, same state, same computation), and these pieces are not used.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from gan_jax.models.layers import SpectralNorm, batch_norm

Dtype = Any

G_CONDITIONINGS = ('concat', 'cbn')
D_CONDITIONINGS = ('concat', 'projection', 'acgan')


def check_conditioning(
  num_classes: int,
  *,
  g_conditioning: str | None = None,
  d_conditioning: str | None = None,
  embed_dim: int = 0,
  pack: int = 1,
) -> None:
  """Checks the conditioning options of a model; every error is one line.

  Args:
    num_classes: K >= 0 (0: unconditional, the other options are then ignored).
    g_conditioning: one of `G_CONDITIONINGS` (generators), or None for a discriminator.
    d_conditioning: one of `D_CONDITIONINGS` (discriminators), or None for a generator.
    embed_dim: size of a learned label embedding for 'concat', >= 0 (0: one-hot).
    pack: the discriminator's PacGAN degree; conditioning needs 1.

  Raises:
    ValueError: naming the config field and a valid choice.
  """
  if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool):
    raise ValueError(f'model.num_classes={num_classes!r} must be an integer >= 0.')
  if num_classes < 0:
    raise ValueError(
      f'model.num_classes={num_classes} must be >= 0 (0: unconditional; 10 for MNIST).'
    )
  if not num_classes:
    return
  if g_conditioning is not None and g_conditioning not in G_CONDITIONINGS:
    raise ValueError(
      f'model.g_conditioning={g_conditioning!r} is not known; choose one of {G_CONDITIONINGS}.'
    )
  if d_conditioning is not None and d_conditioning not in D_CONDITIONINGS:
    raise ValueError(
      f'model.d_conditioning={d_conditioning!r} is not known; choose one of {D_CONDITIONINGS}.'
    )
  if not isinstance(embed_dim, numbers.Integral) or embed_dim < 0:
    raise ValueError(
      f'model.label_embed_dim={embed_dim!r} must be an integer >= 0 (0: one-hot labels).'
    )
  if pack != 1:
    raise ValueError(
      f'model.pack={pack} cannot be combined with model.num_classes={num_classes}: a pack '
      'mixes images of different classes; set model.pack=1.'
    )


def check_labels(labels: jax.Array | None, batch: int, num_classes: int, who: str) -> jax.Array:
  """The labels a conditional model was called with, checked (static shapes only).

  Args:
    labels: int `[B]` class indices in [0, K) (values are not checked: they may be traced;
      the training loop checks the data's labels on the host), or None.
    batch: B, the batch size of the images or latents.
    num_classes: K > 0.
    who: 'generator' or 'discriminator', for the message.

  Returns:
    int32 `[B]`.

  Raises:
    ValueError: labels missing, not integers, or not `[B]`.
  """
  if labels is None:
    raise ValueError(
      f'this {who} is class-conditional (model.num_classes={num_classes}): pass labels, '
      f'int32 [B] in [0, {num_classes}).'
    )
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.shape != (batch,):
    raise ValueError(
      f'the {who} needs labels int [B={batch}] in [0, {num_classes}), got '
      f'{labels.dtype} {labels.shape}.'
    )
  return labels.astype(jnp.int32)


class LabelEmbed(nnx.Module):
  """A learned table of one vector per class: `y -> kernel[y]`.

  The table is a Param named `kernel`, `[K, features]`, so that `SpectralNorm` can wrap the
  layer (Miyato & Koyama 2018 normalise the projection embedding, their `SNEmbedID`; the
  largest singular value of `[K, F]` is that of its transpose).

  Args:
    num_classes: K.
    features: F, the size of each class's vector.
    init: initializer of the `[K, F]` table.
    dtype: output dtype (None: float32; jnp.bfloat16 casts the looked-up rows).
    rngs: `nnx.Rngs` with a `params` stream.

  Call: `embed(y)`, y int `[B]` in [0, K) -> float32 (or `dtype`) `[B, F]`.
  """

  def __init__(
    self,
    num_classes: int,
    features: int,
    *,
    init: Callable,
    dtype: Dtype = None,
    rngs: nnx.Rngs,
  ):
    self.kernel = nnx.Param(init(rngs.params(), (num_classes, features), jnp.float32))
    self.dtype = dtype

  def __call__(self, y: jax.Array) -> jax.Array:
    out = jnp.take(self.kernel[...], y, axis=0)
    return out if self.dtype is None else out.astype(self.dtype)


def label_vectors(y: jax.Array, num_classes: int, embed: LabelEmbed | None) -> jax.Array:
  """One-hot float32 `[B, K]` labels (`embed` None) or the learned `embed(y)` `[B, E]`."""
  if embed is None:
    return jax.nn.one_hot(y, num_classes, dtype=jnp.float32)
  return embed(y)


def label_width(num_classes: int, embed_dim: int) -> int:
  """Size of `label_vectors`: K for one-hot (embed_dim 0), else embed_dim."""
  return embed_dim or num_classes


def concat_label_maps(x: jax.Array, vectors: jax.Array) -> jax.Array:
  """Appends each sample's label vector as constant feature maps (Mirza & Osindero 2014).

  Args:
    x: images or features `[B, H, W, C]`.
    vectors: `[B, E]` (`label_vectors`).

  Returns:
    `[B, H, W, C + E]` in x's dtype; channels C.. hold `vectors[b]` at every position.
  """
  maps = jnp.broadcast_to(
    vectors.astype(x.dtype)[:, None, None, :], x.shape[:-1] + (vectors.shape[-1],)
  )
  return jnp.concatenate([x, maps], axis=-1)


class ConditionalBatchNorm(nnx.Module):
  """BatchNorm with a per-class gain and bias (conditional BatchNorm).

  `out = (x - mean) / sqrt(var + eps) * gain[y] + bias[y]`: the statistics (batch statistics
  in training, running averages otherwise, PyTorch momentum 0.1 and eps 1e-5 as
  `gan_jax.models.layers.batch_norm`) are shared by all classes; only the affine part depends
  on y (de Vries et al. 2017, "Modulating early visual processing by language"; Dumoulin et
  al. 2017; the generator of Miyato & Koyama 2018, their
  `CategoricalConditionalBatchNormalization`). Gains start at 1 and biases at 0, so at
  initialisation every class gets plain BatchNorm.

  Args:
    features: size of the normalised (last) axis.
    num_classes: K.
    rngs: `nnx.Rngs`.
    dtype: output dtype (None: float32; jnp.bfloat16 for mixed precision: statistics,
      gains and biases stay float32).

  Attributes:
    bn: the `nnx.BatchNorm` without scale and bias (its `mean`/`var` are `nnx.BatchStat`).
    gain, bias: `LabelEmbed` tables `[K, features]`.

  Call: `cbn(x, y, use_running_average=bool)`, x `[B, ..., features]`, y int `[B]` in
  [0, K) -> same shape and dtype as BatchNorm's output.
  """

  def __init__(self, features: int, num_classes: int, rngs: nnx.Rngs, dtype: Dtype = None):
    self.bn = batch_norm(features, rngs, dtype, affine=False)
    self.gain = LabelEmbed(num_classes, features, init=nnx.initializers.ones, rngs=rngs)
    self.bias = LabelEmbed(num_classes, features, init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, x: jax.Array, y: jax.Array, *, use_running_average: bool) -> jax.Array:
    h = self.bn(x, use_running_average=use_running_average)
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    gain, bias = self.gain(y).reshape(shape), self.bias(y).reshape(shape)
    return (h * gain + bias).astype(h.dtype)


def make_batch_norm(
  features: int, num_classes: int, rngs: nnx.Rngs, dtype: Dtype = None
) -> nnx.Module:
  """`ConditionalBatchNorm` when num_classes > 0, else the plain `batch_norm`."""
  if num_classes:
    return ConditionalBatchNorm(features, num_classes, rngs, dtype)
  return batch_norm(features, rngs, dtype)


def apply_batch_norm(
  bn: nnx.Module, x: jax.Array, y: jax.Array | None, use_running_average: bool
) -> jax.Array:
  """Calls a `ConditionalBatchNorm` with y, or a plain BatchNorm without."""
  if isinstance(bn, ConditionalBatchNorm):
    return bn(x, y, use_running_average=use_running_average)
  return bn(x, use_running_average=use_running_average)


def apply_layer(layer: nnx.Module, x: jax.Array, train: bool) -> jax.Array:
  """Calls a plain layer, or a `SpectralNorm` one with `update_stats=train`."""
  if isinstance(layer, SpectralNorm):
    return layer(x, update_stats=train)
  return layer(x)


def discriminator_heads(
  d: nnx.Module,
  phi: jax.Array,
  y: jax.Array | None,
  *,
  train: bool,
  with_class_logits: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  """The outputs of a discriminator from its final features phi(x).

  Reads `d.fc` (psi, a dense layer to 1 output, maybe spectrally normalised),
  `d.num_classes`, `d.conditioning` and, if present, `d.embed` (projection, `LabelEmbed`
  `[K, F]`) and `d.classifier` (AC-GAN head, dense F -> K).

  * unconditional, 'concat': `logit = psi(phi)`.
  * 'projection': `logit = psi(phi) + sum_f V[y, f] phi_f` (Miyato & Koyama 2018, eq. 3).
  * 'acgan': `logit = psi(phi)`, class logits `classifier(phi)` (Odena et al. 2017).

  Args:
    d: the discriminator module.
    phi: features `[B, F]`.
    y: int32 `[B]` labels (needed by 'projection' only).
    train: advance and store spectral-norm power iterations.
    with_class_logits: also return the AC-GAN class logits.

  Returns:
    logits `[B]`, or `(logits [B], class_logits [B, K])` with `with_class_logits`.

  Raises:
    ValueError: `with_class_logits` for a discriminator without an AC-GAN head, or no
      labels for a projection discriminator.
  """
  logits = apply_layer(d.fc, phi, train)[:, 0]
  conditioning = d.conditioning if d.num_classes else ''
  if conditioning == 'projection':
    y = check_labels(y, phi.shape[0], d.num_classes, 'discriminator')
    v = apply_layer(d.embed, y, train)
    logits = logits + jnp.sum(v * phi, axis=-1)
  if not with_class_logits:
    return logits
  if conditioning != 'acgan':
    raise ValueError(
      'class logits need an auxiliary classifier: model.d_conditioning="acgan" with '
      'model.num_classes > 0.'
    )
  return logits, apply_layer(d.classifier, phi, train)


class Discriminator(nnx.Module):
  """Base of the DCGAN-28, DCGAN and SNGAN-32 discriminators: logits from `features`.

  A subclass builds `fc` (dense F -> 1) and calls `init_discriminator_conditioning` and
  `init_discriminator_heads` in its `__init__`, and defines `features(x, y, train=...)`,
  phi(x) `[B', F]`. Calling it then gives `discriminator_heads(self, phi(x), y, ...)`:

  `D(x, y=None, train=True, with_class_logits=False)`, x float32 `[B, H, W, C]` in [-1, 1],
  y int32 `[B]` in [0, K) -> logits `[B']` (B' = B, or B / pack with PacGAN packing), or
  `(logits, class logits [B', K])` with `with_class_logits` (AC-GAN only). Errors are those
  of `features` and `discriminator_heads`.
  """

  def __call__(
    self,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    train: bool = True,
    with_class_logits: bool = False,
  ) -> jax.Array | tuple[jax.Array, jax.Array]:
    phi = self.features(x, y, train=train)
    return discriminator_heads(self, phi, y, train=train, with_class_logits=with_class_logits)

  def features(self, x: jax.Array, y: jax.Array | None = None, *, train: bool = True) -> jax.Array:
    """phi(x), the input of the dense logit `[B', F]`; every subclass defines it."""
    raise NotImplementedError(f'{type(self).__name__} must define features(x, y, train=...)')


def init_generator_conditioning(
  g: nnx.Module,
  num_classes: int,
  conditioning: str,
  embed_dim: int,
  *,
  dtype: Dtype = None,
  rngs: nnx.Rngs,
) -> int:
  """Sets up a generator's conditioning; returns the extra width of its input layer.

  Sets `g.num_classes` and `g.conditioning` ('' when unconditional) and, for 'concat' with
  `embed_dim > 0`, the learned `g.label_embed` (N(0, 1) init, like z). Nothing else: the
  generator builds its BatchNorms with `make_batch_norm(..., K if 'cbn' else 0, ...)`.

  Returns:
    The number of label values concatenated to z: K or embed_dim for 'concat', else 0.

  Raises:
    ValueError: as `check_conditioning`.
  """
  check_conditioning(num_classes, g_conditioning=conditioning, embed_dim=embed_dim)
  g.num_classes = int(num_classes)
  g.conditioning = conditioning if num_classes else ''
  if g.conditioning != 'concat':
    return 0
  if embed_dim:
    g.label_embed = LabelEmbed(
      num_classes, embed_dim, init=nnx.initializers.normal(1.0), dtype=dtype, rngs=rngs
    )
  return label_width(num_classes, embed_dim)


def bn_classes(g: nnx.Module) -> int:
  """K for the BatchNorms of a generator with conditional BatchNorm ('cbn'), else 0."""
  return g.num_classes if g.conditioning == 'cbn' else 0


def generator_input(
  g: nnx.Module, z: jax.Array, y: jax.Array | None
) -> tuple[jax.Array, jax.Array | None]:
  """The input of G's first layer and the checked labels.

  Args:
    g: a generator set up by `init_generator_conditioning`.
    z: latents `[B, latent_dim]`.
    y: int `[B]` labels in [0, K), or None (unconditional only).

  Returns:
    (z, or `[z, label vectors]` for 'concat'; int32 `[B]` labels, or None when
    unconditional).

  Raises:
    ValueError: a conditional generator called without labels (see `check_labels`).
  """
  if not g.num_classes:
    return z, None
  y = check_labels(y, z.shape[0], g.num_classes, 'generator')
  if g.conditioning == 'concat':
    vectors = label_vectors(y, g.num_classes, getattr(g, 'label_embed', None))
    z = jnp.concatenate([z, vectors.astype(z.dtype)], axis=-1)
  return z, y


def init_discriminator_conditioning(
  d: nnx.Module,
  num_classes: int,
  conditioning: str,
  embed_dim: int,
  *,
  pack: int = 1,
  dtype: Dtype = None,
  rngs: nnx.Rngs,
) -> int:
  """Sets up a discriminator's input conditioning; returns its extra input channels.

  Sets `d.num_classes` and `d.conditioning` ('' when unconditional) and, for 'concat' with
  `embed_dim > 0`, the learned `d.label_embed`. The heads come later, from
  `init_discriminator_heads`, once the feature size is known.

  Returns:
    The label-map channels concatenated to the image: K or embed_dim for 'concat', else 0.

  Raises:
    ValueError: as `check_conditioning` (pack > 1 with conditioning included).
  """
  check_conditioning(num_classes, d_conditioning=conditioning, embed_dim=embed_dim, pack=pack)
  d.num_classes = int(num_classes)
  d.conditioning = conditioning if num_classes else ''
  if d.conditioning != 'concat':
    return 0
  if embed_dim:
    d.label_embed = LabelEmbed(
      num_classes, embed_dim, init=nnx.initializers.normal(1.0), dtype=dtype, rngs=rngs
    )
  return label_width(num_classes, embed_dim)


def init_discriminator_heads(
  d: nnx.Module,
  features: int,
  *,
  kernel_init: Callable,
  wrap: Callable[[nnx.Module], nnx.Module],
  dtype: Dtype = None,
  rngs: nnx.Rngs,
) -> None:
  """Adds the class heads on phi(x) `[B, features]`: `d.embed` (projection, V `[K, F]`) or
  `d.classifier` (AC-GAN, dense F -> K); `wrap` is `SpectralNorm` when D's layers are
  normalised (else the identity). Nothing for unconditional or 'concat' discriminators."""
  if d.conditioning == 'projection':
    d.embed = wrap(LabelEmbed(d.num_classes, features, init=kernel_init, dtype=dtype, rngs=rngs))
  elif d.conditioning == 'acgan':
    d.classifier = wrap(
      nnx.Linear(features, d.num_classes, kernel_init=kernel_init, dtype=dtype, rngs=rngs)
    )


def discriminator_input(
  d: nnx.Module, x: jax.Array, y: jax.Array | None
) -> tuple[jax.Array, jax.Array | None]:
  """The input of D's first layer and the checked labels.

  Returns:
    (x, or x with label maps for 'concat'; int32 `[B]` labels for 'concat', None otherwise:
    unconditional, 'projection' (y enters at the end, `discriminator_heads`) and 'acgan'
    (which ignores y)).

  Raises:
    ValueError: a 'concat' discriminator called without labels.
  """
  if d.conditioning != 'concat':
    return x, None
  y = check_labels(y, x.shape[0], d.num_classes, 'discriminator')
  if d.conditioning == 'concat':
    x = concat_label_maps(x, label_vectors(y, d.num_classes, getattr(d, 'label_embed', None)))
  return x, y
