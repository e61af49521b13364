"""The training state pytree and how it is created.

`GANState` holds everything that changes during training, as plain nested dicts of arrays
(the pure-dict form of Flax NNX state), so that it is an ordinary JAX pytree: it goes through
`jax.jit` with donation, shards with `NamedSharding`, and saves with Orbax as it is.
`GAN` holds what does not change: the NNX graph definitions of G and D and the two Optax
transformations. Together they give G and D as pure functions (`GAN.generate`,
`GAN.discriminate`): `nnx.merge(graphdef, params, batch_stats)` happens at trace time inside
the jitted step, the module is called, and the new BatchNorm statistics are split out again.

A class-conditional GAN (`model.num_classes = K > 0`) takes labels: `GAN.generate(..., z,
labels)` makes images of the given classes, `GAN.discriminate(..., images, labels)` judges
(image, label) pairs ('concat' and 'projection' discriminators), and
`GAN.discriminate_with_classes` also returns the class logits of an AC-GAN discriminator.
Unconditional GANs are called exactly as before (labels None).

With `config.dtype='bfloat16'` (mixed precision) the graph definitions compute in bfloat16
while every array of `GANState` stays float32; `GAN.generate` and `GAN.discriminate` cast
G's images and D's logits to float32, so that losses, penalties, metrics, sampling and
evaluation all work in float32.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from gan_jax.core import ada, penalties
from gan_jax.core.schedules import Schedules
from gan_jax.models import build_models

PyTree = Any


@flax.struct.dataclass
class GANState:
  """Everything a GAN run updates, as one pytree.

  Attributes:
    step: int32 scalar, number of completed train steps (one step = `n_critic` D updates
      followed by one G update).
    rng: uint32 `[2]` raw PRNG key of the run; step k uses `fold_in(rng, k)`, so the key
      never changes and resuming needs no RNG bookkeeping.
    g_params: generator parameters (nested dict of float32 arrays).
    g_batch_stats: generator non-trainable state (BatchNorm running mean/var), possibly empty.
    d_params: discriminator parameters.
    d_batch_stats: discriminator non-trainable state, possibly empty.
    g_opt_state: Optax state of the generator optimizer (Adam by default).
    d_opt_state: Optax state of the discriminator optimizer.
    ema_params: exponential moving average of `g_params` (Yazici et al. 2019), used for
      sampling when `train.ema_decay > 0`; equal to `g_params` when the decay is 0.
    extras: state of optional ingredients, {} unless one is on: with `train.lecam_weight >
      0`, float32 scalars 'lecam_ema_real' and 'lecam_ema_fake' (the EMAs of D's mean outputs
      that LeCam anchors to, Tseng et al. 2021); with `train.augment='ada'`, 'ada_p',
      'ada_sign_sum' and 'ada_sign_count' (ADA's p and the signs of D(real) since its last
      update, Karras et al. 2020; `gan_jax.core.ada`). Empty, it adds nothing to a
      checkpoint, so runs written before it existed still restore.
  """

  step: jax.Array
  rng: jax.Array
  g_params: PyTree
  g_batch_stats: PyTree
  d_params: PyTree
  d_batch_stats: PyTree
  g_opt_state: PyTree
  d_opt_state: PyTree
  ema_params: PyTree
  extras: PyTree = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, eq=False)
class GAN:
  """The static half of a GAN: graph definitions, optimizers and shapes.

  Attributes:
    g_graphdef: NNX graph definition of the generator.
    d_graphdef: NNX graph definition of the discriminator.
    g_tx: Optax transformation of the generator.
    d_tx: Optax transformation of the discriminator.
    latent_dim: size of z.
    image_shape: (H, W, C) of generated and real images.
    num_classes: K > 0 for a class-conditional GAN (`model.num_classes`), 0 otherwise.
    d_conditioning: how D uses the class (`model.d_conditioning`: 'concat', 'projection'
      or 'acgan'); '' for an unconditional GAN.
  """

  g_graphdef: nnx.GraphDef
  d_graphdef: nnx.GraphDef
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  latent_dim: int
  image_shape: tuple[int, int, int]
  num_classes: int = 0
  d_conditioning: str = ''

  @property
  def conditional(self) -> bool:
    """True for a class-conditional GAN (num_classes > 0)."""
    return self.num_classes > 0

  @property
  def acgan(self) -> bool:
    """True when D has an auxiliary classifier (AC-GAN, Odena et al. 2017)."""
    return self.conditional and self.d_conditioning == 'acgan'

  def generate(
    self,
    params: PyTree,
    batch_stats: PyTree,
    z: jax.Array,
    labels: jax.Array | None = None,
    *,
    train: bool,
  ) -> tuple[jax.Array, PyTree]:
    """Runs G as a pure function.

    Args:
      params: generator parameters (`GANState.g_params` or `.ema_params`).
      batch_stats: generator BatchNorm statistics.
      z: latent vectors, float32 `[B, latent_dim]`, usually N(0, I).
      labels: the classes to generate, int32 `[B]` in [0, num_classes); required for a
        conditional GAN, must be None for an unconditional one.
      train: True uses batch statistics in BatchNorm (and returns updated running
        averages); False uses the running averages.

    Returns:
      (images float32 `[B, H, W, C]` in [-1, 1], new batch_stats). With mixed precision G
      computes in bfloat16 and its images are cast to float32 here (a no-op for float32).

    Raises:
      ValueError: labels missing for a conditional GAN, or given to an unconditional one.
    """
    self._check_labels(labels, 'generate')
    model = nnx.merge(self.g_graphdef, params, batch_stats, copy=True)
    if labels is None:
      images = model(z, train=train)
    else:
      images = model(z, labels, train=train)
    images = images.astype(jnp.float32)
    _, _, new_stats = nnx.split(model, nnx.Param, ...)
    return images, nnx.to_pure_dict(new_stats)

  def batch_statistics(
    self,
    params: PyTree,
    batch_stats: PyTree,
    z: jax.Array,
    labels: jax.Array | None = None,
  ) -> PyTree:
    """The BatchNorm statistics G computes on one batch of latents, exactly.

    G runs in training mode (each BatchNorm normalises with its batch's mean and biased
    variance) with every BatchNorm's momentum set to 0, so the returned running averages are
    that batch's statistics and do not depend on `batch_stats`. The building block of
    standing statistics (`gan_jax.core.sampling.standing_batch_stats`).

    Args:
      params: generator parameters (`GANState.g_params` or `.ema_params`).
      batch_stats: generator BatchNorm statistics (only their structure is used).
      z: float32 `[B, latent_dim]`.
      labels: int32 `[B]` in [0, num_classes) for a conditional GAN, else None.

    Returns:
      A pytree like `batch_stats`: per BatchNorm, 'mean' and 'var' (float32) of its input
      over this batch (and the spatial axes).

    Raises:
      ValueError: labels missing for a conditional GAN, or given to an unconditional one.
    """
    self._check_labels(labels, 'generate')
    model = nnx.merge(self.g_graphdef, params, batch_stats, copy=True)
    for _, module in nnx.iter_modules(model):
      if isinstance(module, nnx.BatchNorm):
        module.momentum = 0.0  # running average <- 0 * old + 1 * this batch's statistic
    if labels is None:
      model(z, train=True)
    else:
      model(z, labels, train=True)
    _, _, new_stats = nnx.split(model, nnx.Param, ...)
    return nnx.to_pure_dict(new_stats)

  def discriminate(
    self,
    params: PyTree,
    batch_stats: PyTree,
    images: jax.Array,
    labels: jax.Array | None = None,
    *,
    train: bool,
  ) -> tuple[jax.Array, PyTree]:
    """Runs D as a pure function.

    Args:
      params: discriminator parameters.
      batch_stats: discriminator BatchNorm statistics.
      images: float32 `[B, H, W, C]` in [-1, 1].
      labels: the classes the images are judged as, int32 `[B]` in [0, num_classes):
        required for a conditional GAN (an AC-GAN discriminator ignores them), must be None
        for an unconditional one.
      train: as in `generate`.

    Returns:
      (logits float32 `[B]`, new batch_stats). With mixed precision D computes in bfloat16
      and its logits are cast to float32 here (a no-op for float32).

    Raises:
      ValueError: labels missing for a conditional GAN, or given to an unconditional one.
    """
    self._check_labels(labels, 'discriminate')
    model = nnx.merge(self.d_graphdef, params, batch_stats, copy=True)
    if labels is None:
      logits = model(images, train=train)
    else:
      logits = model(images, labels, train=train)
    logits = logits.astype(jnp.float32)
    _, _, new_stats = nnx.split(model, nnx.Param, ...)
    return logits, nnx.to_pure_dict(new_stats)

  def discriminate_with_classes(
    self, params: PyTree, batch_stats: PyTree, images: jax.Array, *, train: bool
  ) -> tuple[jax.Array, jax.Array, PyTree]:
    """Runs an AC-GAN D (Odena et al. 2017): real/fake logits and class logits, one pass.

    Args:
      params, batch_stats, images, train: as in `discriminate`.

    Returns:
      (logits float32 `[B]`, class logits float32 `[B, num_classes]` (softmax gives
      P(C = c | x)), new batch_stats).

    Raises:
      ValueError: if D has no auxiliary classifier (`model.d_conditioning != 'acgan'`).
    """
    if not self.acgan:
      raise ValueError(
        'discriminate_with_classes needs an AC-GAN discriminator: model.num_classes > 0 '
        "and model.d_conditioning='acgan'."
      )
    model = nnx.merge(self.d_graphdef, params, batch_stats, copy=True)
    logits, class_logits = model(images, train=train, with_class_logits=True)
    _, _, new_stats = nnx.split(model, nnx.Param, ...)
    return (
      logits.astype(jnp.float32),
      class_logits.astype(jnp.float32),
      nnx.to_pure_dict(new_stats),
    )

  def _check_labels(self, labels: jax.Array | None, method: str) -> None:
    if self.conditional and labels is None and not (method == 'discriminate' and self.acgan):
      raise ValueError(
        f'GAN.{method} of a class-conditional GAN (model.num_classes={self.num_classes}) '
        f'needs labels, int32 [B] in [0, {self.num_classes}).'
      )
    if not self.conditional and labels is not None:
      raise ValueError(
        f'GAN.{method} got labels, but this GAN is unconditional (model.num_classes=0).'
      )

  def sample_latents(self, rng: jax.Array, num: int) -> jax.Array:
    """Draws z ~ N(0, I), float32 `[num, latent_dim]`."""
    return jax.random.normal(rng, (num, self.latent_dim), jnp.float32)

  def sample_labels(self, rng: jax.Array, num: int) -> jax.Array:
    """Draws classes uniformly from [0, num_classes), int32 `[num]` (conditional GANs)."""
    if not self.conditional:
      raise ValueError('sample_labels needs a class-conditional GAN (model.num_classes > 0).')
    return jax.random.randint(rng, (num,), 0, self.num_classes, jnp.int32)


def initial_extras(train_config: Any) -> dict[str, jax.Array]:
  """`GANState.extras` at step 0 for a config's `train` block: the state entries of each
  penalty that is on (`gan_jax.core.penalties.Penalty.state`, float32 scalars 0), e.g. the LeCam
  EMAs when `lecam_weight > 0`, and ADA's p and sign counts (`gan_jax.core.ada.initial_state`)
  when `augment == 'ada'`; {} when none keeps state."""
  extras = {
    key: jnp.zeros((), jnp.float32) for p in penalties.active(train_config) for key in p.state
  }
  return {**extras, **ada.initial_state(train_config)}


def make_optimizers(
  train_config: Any, schedules: Schedules | None = None
) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """Adam for G and for D (Kingma & Ba 2015), with separate learning rates (TTUR).

  Defaults in the configs follow Radford et al. 2016: lr 2e-4, b1 0.5, b2 0.999.
  Separate `g_lr` and `d_lr` give the two time-scale update rule (Heusel et al. 2017).
  With `train.schedules` (`gan_jax.core.schedules`) a scheduled learning rate is an optax
  schedule of the optimizer's update count (`optax.adam(learning_rate=fn)`, whose state
  then holds that count), and a scheduled `b2` goes through `optax.inject_hyperparams`
  (another state structure); D's schedules read its count // n_critic, the train step.
  Without schedules the optimizers, and their states, are exactly plain Adam's.

  Args:
    train_config: the config's `train` block with `g_lr`, `d_lr`, `b1`, `b2` (and
      `schedules`, `batch_size`, `n_critic` when schedules are set); or a namespace of
      those four, possibly traced float32 scalars (per-replica values).
    schedules: the run's schedules; None reads them from `train_config`.

  Returns:
    (generator optimizer, discriminator optimizer).

  Raises:
    ConfigError: a malformed `train.schedules`.
  """
  t = train_config
  if schedules is None:
    schedules = Schedules.from_config(t)
  if not any(schedules.factor(f) for f in ('g_lr', 'd_lr', 'b2')):
    g_tx = optax.adam(t.g_lr, b1=t.b1, b2=t.b2)
    d_tx = optax.adam(t.d_lr, b1=t.b1, b2=t.b2)
    return g_tx, d_tx

  def adam(lr_field: str, per_step: int) -> optax.GradientTransformation:
    lr = schedules.optimizer_value(lr_field, getattr(t, lr_field), per_step=per_step)
    if schedules.factor('b2') is None:
      return optax.adam(lr, b1=t.b1, b2=t.b2)
    # Every hyperparameter a schedule: inject_hyperparams would otherwise keep numeric ones
    # in its state, and a rebuilt optimizer (rollback, per-replica values) would not apply.
    b1 = t.b1
    return optax.inject_hyperparams(optax.adam)(
      learning_rate=lr if callable(lr) else (lambda count: lr),
      b1=lambda count: b1,
      b2=schedules.optimizer_value('b2', t.b2, per_step=per_step),
    )

  return adam('g_lr', 1), adam('d_lr', schedules.n_critic)


def image_shape_of(config: Any) -> tuple[int, int, int]:
  """(H, W, C) of the training images: `data.image_size` squared, `data.channels`."""
  return (config.data.image_size, config.data.image_size, config.data.channels)


def create_state(config: Any) -> tuple[GAN, GANState]:
  """Builds G, D and their optimizers from a config and initialises the training state.

  The state is created on the default device, unsharded; `gan_jax.core.sharding.replicate`
  places it on a mesh. Same config and seed give bitwise-identical states.

  Args:
    config: a full run config (`gan_jax.config.base_config()` layout): uses `seed`,
      `model`, `data.image_size`, `data.channels`, `train` and `dtype` ('float32' when the
      config has none, e.g. an older run's config.json). The dtype changes the graph
      definitions only: the state is float32 and bitwise the same for either dtype. The
      conditioning fields (`model.num_classes`, ...) may be missing too (older runs):
      unconditional.

  Returns:
    (GAN, GANState) with `state.step == 0`.

  Raises:
    ValueError: for an unknown model name or dtype, or an image shape the model cannot make.
  """
  image_shape = image_shape_of(config)
  init_rng, run_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  param_seed = int(jax.random.randint(init_rng, (), 0, 2**31 - 1))
  dtype = config.get('dtype', 'float32')
  g, d = build_models(config.model, image_shape, param_seed, dtype=dtype)
  g_graphdef, g_params, g_stats = nnx.split(g, nnx.Param, ...)
  d_graphdef, d_params, d_stats = nnx.split(d, nnx.Param, ...)
  g_params, g_stats = nnx.to_pure_dict(g_params), nnx.to_pure_dict(g_stats)
  d_params, d_stats = nnx.to_pure_dict(d_params), nnx.to_pure_dict(d_stats)
  g_tx, d_tx = make_optimizers(config.train)
  gan = GAN(
    g_graphdef=g_graphdef,
    d_graphdef=d_graphdef,
    g_tx=g_tx,
    d_tx=d_tx,
    latent_dim=config.model.latent_dim,
    image_shape=image_shape,
    num_classes=int(config.model.get('num_classes', 0)),
    d_conditioning=(
      config.model.get('d_conditioning', 'projection') if config.model.get('num_classes', 0) else ''
    ),
  )
  state = GANState(
    step=jnp.zeros((), jnp.int32),
    rng=run_rng,
    g_params=g_params,
    g_batch_stats=g_stats,
    d_params=d_params,
    d_batch_stats=d_stats,
    g_opt_state=g_tx.init(g_params),
    d_opt_state=d_tx.init(d_params),
    ema_params=jax.tree.map(jnp.copy, g_params),
    extras=initial_extras(config.train),
  )
  return gan, state
