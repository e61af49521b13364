"""The GAN train step as a pure function, and its data-parallel jit over a device mesh.

`make_train_step(gan, ...)` returns `train_step(state, batch) -> (state, metrics)`: `n_critic`
discriminator updates, then one generator update (Goodfellow et al. 2014, Algorithm 1);
`make_train_step_from_config(gan, config)` builds the same from a run config. The step is a
composition of module-level pure functions (`train_step(spec, ...)` with the settings in a
`StepSpec`): the keys (`step_keys`), the real batch (`real_batch`), the latents and G's
labels, `d_update` on `gan_jax.core.objectives.d_objective`, G's update on
`objectives.g_objective` (or `g_adversarial` with `reuse_fakes`), `ema_update` and
`step_metrics`. What D and G minimise lives in `gan_jax.core.objectives`.
`jit_train_step` compiles it once for a mesh with a 'data' axis: the batch is sharded along
its batch dimension, the state is replicated and donated. Under `jax.jit` with sharded
inputs XLA inserts the gradient all-reduce and synchronises BatchNorm statistics over the
global batch, so the result equals the single-device step up to float32 reduction order.

Class-conditional GANs (`gan.num_classes = K > 0`, `model.num_classes`): the batch carries
the real images' labels (`batch['label']`, int32 in [0, K), from TFDS); G's labels are drawn
uniformly over the K classes from the step's key (`fold_in(fold_in(rng, step), _LABEL_SALT)`,
so the latents are those of the unconditional step), D judges real images with their labels
and generated ones with the labels they were made for, and with an AC-GAN discriminator
(Odena et al. 2017) D's loss adds `aux_weight * (CE(real) + CE(fake))` and G's loss
`aux_weight * CE(fake)`, the cross-entropies of D's class predictions
(`gan_jax.core.losses.class_cross_entropy`). Penalties see the same labels: GP and R1 the real
images' labels (WGAN-GP interpolates are judged as the real image's class, as in
StudioGAN), R2 the generated images'. Unconditional GANs run exactly the step they always
did.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from gan_jax.core import ada, objectives, penalties, regularizers
from gan_jax.core.losses import GANLoss, get_loss
from gan_jax.core.objectives import DOutputs, GOutputs, Stabilizers
from gan_jax.core.schedules import Schedules
from gan_jax.core.sharding import batch_sharding, replicated
from gan_jax.core.state import GAN, GANState, make_optimizers

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
TrainStep = Callable[[GANState, Batch], tuple[GANState, Metrics]]

METRIC_NAMES = (
  'd_loss',
  'g_loss',
  'd_real',
  'd_fake',
  'd_grad_norm',
  'g_grad_norm',
  'd_penalty',
  'd_aux_loss',
  'g_aux_loss',
)

# Continuous hyperparameters that `train_step(state, batch, hparams)` takes as (traced) inputs,
# so that replicas of one vmapped step can each have their own (gan_jax.training.replicas).
HPARAM_FIELDS = ('g_lr', 'd_lr', 'b1', 'b2', *penalties.REPLICA_WEIGHT_FIELDS)

# Folded into the step's key for the stabilizers' randomness, so that turning them on leaves
# the latents of every step (drawn from the step's key as before) unchanged.
_AUX_SALT = 0x57AB
# Folded into the step's key for G's class labels (conditional GANs only), for the same reason.
_LABEL_SALT = 0x1ABE1
_OPTIMIZER_FIELDS = ('g_lr', 'd_lr', 'b1', 'b2')
# make_train_step's default: every stabilizer off.
_NO_STABILIZERS = Stabilizers()

# XLA's CPU schedulers for the jitted step (`train.cpu_scheduler`). Both run the same
# operations, so the step's results are bitwise the same (the pinned state hashes of
# tests/test_state_hashes.py hold under both); they differ in the order, which sets how many
# activations are alive at once and how much of the 2 cores the step keeps busy:
# - 'concurrency' (XLA's default, gan_jax's): the faster one for DCGAN-28 at batch 64
#   (1,203 against 1,122 img/s here) and DCGAN-32 at batch 256;
# - 'memory' (XLA's memory-optimised schedule): about half the temporary memory (SNGAN-32 at
#   batch 256: 4,299 -> 2,300 MiB per XLA's memory analysis, benchmarks/memory_analysis.py),
#   and faster for DCGAN-28 at batch 256 (679 against 605 img/s). Issue 21; measured with
#   benchmarks/xla_options.py (`concurrency_sched`, `memory_sched`).
CPU_SCHEDULERS: dict[str, dict[str, str]] = {
  'concurrency': {},
  'memory': {'xla_cpu_scheduler_type': 'CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED'},
}
# The compiler options of `jit_train_step` on CPU when no scheduler is named (benchmarks
# replace it to compare schedulers).
CPU_COMPILER_OPTIONS: dict[str, str] = CPU_SCHEDULERS['concurrency']


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """The static settings of a train step, as `make_train_step` validated them.

  Attributes:
    gan: G and D as pure functions, and their optimizers.
    loss: the adversarial loss pair.
    d_loss: D's adversarial loss (`objectives.discriminator_loss`: `loss.d`, or label-smoothed).
    n_critic: D updates per G update, >= 1.
    ema_decay: decay of the generator EMA in [0, 1); 0 keeps `ema_params == g_params`.
    mesh: the mesh the latents are sharded over, or None.
    stabilizers: the D-side penalties and input transforms.
    aux_weight: weight of the AC-GAN class losses, >= 0.
    reuse_fakes: the G update reuses the last D update's generated batch.
    schedules: the step's schedules and EMA half-life (`gan_jax.core.schedules`); none by
      default.
    penalty_interval: `train.penalty_interval` (lazy regularization, `LazyTrainStep`); with
      an interval > 1 the step reports `d_penalty` (0 where no penalty was computed).
    penalty_scale: the factor on the traced (`hparams`) weights of the lazy penalties: the
      interval in the penalised program of a `LazyTrainStep` (whose `stabilizers` carry the
      multiplied weights), else 1.
  """

  gan: GAN
  loss: GANLoss
  d_loss: Callable[[jax.Array, jax.Array], jax.Array]
  n_critic: int
  ema_decay: float
  mesh: Mesh | None
  stabilizers: Stabilizers
  aux_weight: float
  reuse_fakes: bool
  schedules: Schedules = Schedules()
  penalty_interval: int = 1
  penalty_scale: int = 1

  def objective_args(self) -> dict[str, Any]:
    """The keyword arguments `objectives.g_adversarial` and `g_objective` take."""
    return dict(
      gan=self.gan, loss=self.loss, stabilizers=self.stabilizers, aux_weight=self.aux_weight
    )


class StepKeys(NamedTuple):
  """The PRNG keys of one step, all from `fold_in(state.rng, state.step)`.

  Attributes:
    latent: `[n_critic + 1]` keys, G's latents of each D update and of the G update.
    aux: `[n_critic + 1]` keys for `d_input` and GP (`_AUX_SALT` folded in first).
    label: `[n_critic + 1]` keys for G's classes (`_LABEL_SALT`), or None if unconditional.
  """

  latent: jax.Array
  aux: jax.Array
  label: jax.Array | None


def step_keys(state: GANState, n_critic: int, conditional: bool) -> StepKeys:
  """The step's keys: a step's noise depends only on the state's seed and step count."""
  rng = jax.random.fold_in(state.rng, state.step)
  latent = jax.random.split(rng, n_critic + 1)
  aux = jax.random.split(jax.random.fold_in(rng, _AUX_SALT), n_critic + 1)
  label = None
  if conditional:
    label = jax.random.split(jax.random.fold_in(rng, _LABEL_SALT), n_critic + 1)
  return StepKeys(latent, aux, label)


def step_optimizers(
  gan: GAN, hp: dict[str, jax.Array], schedules: Schedules | None = None
) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """G's and D's optimizers: `gan`'s, or the same Adam rebuilt from traced `g_lr`, `d_lr`,
  `b1`, `b2` in `hp` with the same `schedules` (the optimizer state keeps its structure).

  Raises:
    ValueError: an unknown key in `hp`, or only some of the four optimizer values.
  """
  unknown = sorted(set(hp) - set(HPARAM_FIELDS))
  if unknown:
    raise ValueError(f'unknown hparams {unknown}; the step takes {HPARAM_FIELDS}.')
  if not any(k in hp for k in _OPTIMIZER_FIELDS):
    return gan.g_tx, gan.d_tx
  missing = [k for k in _OPTIMIZER_FIELDS if k not in hp]
  if missing:
    raise ValueError(f'hparams with optimizer values need all of g_lr, d_lr, b1, b2: {missing}')
  return make_optimizers(types.SimpleNamespace(**hp), schedules)


def real_batch(gan: GAN, batch: Batch, n_critic: int) -> tuple[jax.Array, list[jax.Array | None]]:
  """The step's real images, float32 `[n_critic, B, H, W, C]`, and each D update's labels
  (int32 `[B]`, or None for an unconditional GAN); `[B, H, W, C]` and `[B]` are accepted
  when n_critic == 1.

  Raises:
    ValueError: images not `[n_critic, B, H, W, C]`; a conditional GAN's labels missing or
      not `[n_critic, B]`.
  """
  images = batch['image']
  if images.ndim == 4 and n_critic == 1:
    images = images[None]
  if images.ndim != 5 or images.shape[0] != n_critic:
    raise ValueError(
      f"batch['image'] must be [n_critic={n_critic}, B, H, W, C], got {images.shape}."
    )
  if not gan.conditional:
    return images, [None] * n_critic
  labels = batch.get('label')
  if labels is not None and labels.ndim == 1 and n_critic == 1:
    labels = labels[None]
  if labels is None or labels.shape != images.shape[:2]:
    got = 'none' if labels is None else labels.shape
    raise ValueError(
      f"a class-conditional GAN (model.num_classes={gan.num_classes}) needs batch['label'] "
      f'int32 [n_critic={n_critic}, B={images.shape[1]}] in [0, {gan.num_classes}), got {got}.'
    )
  return images, [labels[i].astype(jnp.int32) for i in range(n_critic)]


def _data_sharded(x: jax.Array, mesh: Mesh | None) -> jax.Array:
  if mesh is None:
    return x
  return jax.lax.with_sharding_constraint(x, batch_sharding(mesh, batch_axis=0))


def latents(gan: GAN, key: jax.Array, batch_size: int, mesh: Mesh | None) -> jax.Array:
  """G's latents, float32 `[B, latent_dim]`, sharded over the mesh's 'data' axis if given
  (threefry is partitionable: the same values, generated in shards)."""
  return _data_sharded(gan.sample_latents(key, batch_size), mesh)


def fake_labels(gan: GAN, key: jax.Array | None, batch_size: int, mesh: Mesh | None):
  """G's classes, uniform over [0, K), int32 `[B]` (sharded as the latents); None for an
  unconditional GAN (`key` None)."""
  if key is None:
    return None
  return _data_sharded(gan.sample_labels(key, batch_size), mesh)


def check_extras(stabilizers: Stabilizers, extras: dict[str, jax.Array]) -> None:
  """LeCam needs its EMAs in `state.extras`, ADA ('ada') its p and sign counts.

  Raises:
    ValueError: LeCam or ADA is on and `extras` lacks its entries.
  """
  if stabilizers.lecam_weight and not {'lecam_ema_real', 'lecam_ema_fake'} <= set(extras):
    raise ValueError(
      'train.lecam_weight > 0 needs the LeCam EMAs in state.extras: build the state with '
      'the same config (gan_jax.core.state.create_state).'
    )
  if stabilizers.augment == 'ada' and not set(ada.STATE_KEYS) <= set(extras):
    raise ValueError(
      "train.augment='ada' needs ADA's p and sign counts in state.extras: build the state "
      'with the same config (gan_jax.core.state.create_state).'
    )


def apply_gradients(tx: optax.GradientTransformation, grads: Any, opt_state: Any, params: Any):
  """One optimizer update: (new params, new optimizer state)."""
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def d_update(
  spec: StepSpec,
  d_tx: optax.GradientTransformation,
  d_params: Any,
  d_opt_state: Any,
  objective_args: tuple[Any, ...],
  ada_p: jax.Array | None = None,
) -> tuple[Any, Any, Any, DOutputs]:
  """One D update on `objectives.d_objective(d_params, *objective_args)` (its arguments
  after `d_params`: d_stats, real, fake, y_real, y_fake, key, step, hp, extras; `ada_p` the
  step's scheduled ADA p or None), then WGAN weight clipping if on: (new params, new
  optimizer state, D's gradient, `DOutputs`)."""
  d_objective = functools.partial(
    objectives.d_objective,
    gan=spec.gan,
    d_loss=spec.d_loss,
    stabilizers=spec.stabilizers,
    aux_weight=spec.aux_weight,
    ada_p=ada_p,
  )
  (_, out), d_grads = jax.value_and_grad(d_objective, has_aux=True)(d_params, *objective_args)
  d_params, d_opt_state = apply_gradients(d_tx, d_grads, d_opt_state, d_params)
  if spec.stabilizers.clip:
    d_params = regularizers.clip_weights(d_params, spec.stabilizers.clip)
  return d_params, d_opt_state, d_grads, out


def ema_update(g_params: Any, ema_params: Any, decay: float, rate: jax.Array | None = None) -> Any:
  """The generator EMA: `decay * ema + (1 - decay) * g` leafwise; `g_params` itself if 0.
  `rate` (float32 scalar, `Schedules.ema_rate`: 1 - beta of the EMA half-life), when given,
  replaces `1 - decay`."""
  if rate is not None:
    return optax.incremental_update(g_params, ema_params, rate)
  if decay > 0:
    return optax.incremental_update(g_params, ema_params, 1.0 - decay)
  return g_params


def step_metrics(
  spec: StepSpec,
  d_losses: list[jax.Array],
  d_out: DOutputs,
  g_out: GOutputs,
  d_grads: Any,
  g_grads: Any,
) -> Metrics:
  """The step's metrics (see `make_train_step`) from the last D update's and the G
  update's outputs."""
  out = jax.nn.sigmoid if spec.loss.probabilistic else (lambda x: x)
  metrics = {
    'd_loss': jnp.mean(jnp.stack(d_losses)),
    'g_loss': g_out.adv_loss,
    'd_real': jnp.mean(out(d_out.real_logits)),
    'd_fake': jnp.mean(out(d_out.fake_logits)),
    'd_grad_norm': optax.tree.norm(d_grads),
    'g_grad_norm': optax.tree.norm(g_grads),
  }
  if spec.stabilizers.penalised or spec.penalty_interval > 1:
    metrics['d_penalty'] = d_out.penalty
  if spec.gan.acgan:
    metrics['d_aux_loss'] = d_out.class_loss
    metrics['g_aux_loss'] = g_out.class_loss
  return metrics


def train_step(
  spec: StepSpec, state: GANState, batch: Batch, hparams: dict[str, jax.Array] | None = None
) -> tuple[GANState, Metrics]:
  """One GAN step: `spec.n_critic` D updates, then one G update and the EMA (the step
  `make_train_step` returns, with its settings `spec` explicit; see there)."""
  gan, n_critic = spec.gan, spec.n_critic
  hp = dict(hparams or {})
  if spec.penalty_scale != 1:  # the penalised program of a LazyTrainStep
    for field in penalties.LAZY_WEIGHT_FIELDS:
      if field in hp:
        hp[field] = hp[field] * spec.penalty_scale
  g_tx, d_tx = step_optimizers(gan, hp, spec.schedules)
  hp = spec.schedules.penalty_weights(hp, spec.stabilizers, state.step)
  ada_p = None  # ADA's p with augment='fixed' and an ada_p schedule, else ada_p_init/state's
  if spec.stabilizers.augment == 'fixed':
    ada_p = spec.schedules.augment_probability(spec.stabilizers.ada_p_init, state.step)
  images, real_labels = real_batch(gan, batch, n_critic)
  batch_size = images.shape[1]
  keys = step_keys(state, n_critic, gan.conditional)
  step = state.step.astype(jnp.float32)

  def g_labels(i: int) -> jax.Array | None:
    return fake_labels(gan, None if keys.label is None else keys.label[i], batch_size, spec.mesh)

  d_params, d_stats, d_opt_state = state.d_params, state.d_batch_stats, state.d_opt_state
  extras = state.extras
  check_extras(spec.stabilizers, extras)
  d_losses = []
  for i in range(n_critic):
    z = latents(gan, keys.latent[i], batch_size, spec.mesh)
    y_fake = g_labels(i)
    if spec.reuse_fakes and i == n_critic - 1:
      # One G forward for this D update and the G update; its backward pass waits in g_vjp.
      fake, g_vjp, g_stats = jax.vjp(
        lambda p, z=z, y=y_fake: gan.generate(p, state.g_batch_stats, z, y, train=True),
        state.g_params,
        has_aux=True,
      )
      g_fake, g_fake_labels = fake, y_fake
    else:
      fake, _ = gan.generate(state.g_params, state.g_batch_stats, z, y_fake, train=True)
    fake = jax.lax.stop_gradient(fake)
    d_args = (d_stats, images[i], fake, real_labels[i], y_fake, keys.aux[i], step, hp, extras)
    d_params, d_opt_state, d_grads, d_out = d_update(
      spec, d_tx, d_params, d_opt_state, d_args, ada_p
    )
    d_stats, extras = d_out.stats, d_out.extras
    d_losses.append(d_out.adv_loss)

  g_args = (d_params, d_stats, images[-1], real_labels[-1], keys.aux[n_critic], step, extras)
  if spec.reuse_fakes:
    g_adversarial = functools.partial(
      objectives.g_adversarial, **spec.objective_args(), ada_p=ada_p
    )
    (_, g_out), fake_cotangent = jax.value_and_grad(g_adversarial, has_aux=True)(
      g_fake, g_fake_labels, *g_args
    )
    (g_grads,) = g_vjp(fake_cotangent)
  else:
    z = latents(gan, keys.latent[n_critic], batch_size, spec.mesh)
    g_objective = functools.partial(objectives.g_objective, **spec.objective_args(), ada_p=ada_p)
    (_, (g_stats, g_out)), g_grads = jax.value_and_grad(g_objective, has_aux=True)(
      state.g_params, state.g_batch_stats, z, g_labels(n_critic), *g_args
    )
  g_params, g_opt_state = apply_gradients(g_tx, g_grads, state.g_opt_state, state.g_params)
  metrics = step_metrics(spec, d_losses, d_out, g_out, d_grads, g_grads)
  st = spec.stabilizers
  if st.augment == 'ada':  # ADA's p update from the counted signs of D(real)
    extras, ada_metrics = ada.adjust(
      extras,
      state.step,
      target=st.ada_target,
      kimg=st.ada_kimg,
      interval=st.ada_interval,
      images_per_step=batch_size * n_critic,
    )
    metrics.update(ada_metrics)
  elif ada_p is not None:  # 'fixed' with a schedule: the p this step used
    metrics['ada_p'] = ada_p
  new_state = state.replace(
    step=state.step + 1,
    g_params=g_params,
    g_batch_stats=g_stats,
    d_params=d_params,
    d_batch_stats=d_stats,
    g_opt_state=g_opt_state,
    d_opt_state=d_opt_state,
    ema_params=ema_update(
      g_params, state.ema_params, spec.ema_decay, spec.schedules.ema_rate(state.step)
    ),
    extras=extras,
  )
  return new_state, metrics


class LazyTrainStep:
  """A train step with lazy regularization: two programs, one chosen for each step.

  Lazy regularization (Karras et al. 2020, "Analyzing and Improving the Image Quality of
  StyleGAN", section 4; StyleGAN2 computes R1 every 16 minibatches): the penalties of
  `penalties.LAZY_WEIGHT_FIELDS` (GP, R1, R2) are computed only in the steps where
  `state.step % interval == 0`, with their weights multiplied by the interval, so that their
  expected contribution per step is unchanged; D's loss has no gradient penalty in the other
  steps. StyleGAN2 also runs its lazy R1 as a separate optimizer step; here it joins that
  step's D updates (every D update of a penalised step is penalised).

  The two programs are separate functions, and the step number picks one on the host:
  `jax.lax.cond` would pick on the device, but XLA's CPU backend runs the convolutions inside
  a conditional ~50x slower than outside (a DCGAN-28 conv and its gradient: 349 against
  7 ms here, jaxlib 0.10.2). Called with concrete arrays, `__call__` reads `state.step` on the
  host only when the state is not the one it returned last (a fresh, restored or rolled-back
  state), so consecutive steps keep being dispatched asynchronously. Traced (inside a caller's
  `jax.jit` or `jax.vmap`) it falls back to `jax.lax.cond` on the first element of
  `state.step`: the same result, at the conditional's speed.

  `jit_train_step` and `gan_jax.training.replicas` compile and replicate each program (`map`);
  `lower(...).compile()` works as on a jitted function.

  Attributes:
    penalised: `step(state, batch, hparams=None)` with the lazy penalties at x`interval`
      their weights (traced `hparams` weights too).
    plain: the same step without them (`d_penalty` is then 0, or LeCam's term).
    interval: k >= 2, `train.penalty_interval`.
  """

  def __init__(self, penalised: Any, plain: Any, interval: int):
    self.penalised, self.plain, self.interval = penalised, plain, interval
    self._last_step: Any = None  # the `step` array of the state this object last returned
    self._next = 0  # ... and its value

  def map(self, fn: Callable[[Any], Any]) -> LazyTrainStep:
    """`fn` applied to both programs (jit, vmap, lower, compile), same interval."""
    return LazyTrainStep(fn(self.penalised), fn(self.plain), self.interval)

  def lower(self, *args: Any, **kwargs: Any) -> LazyTrainStep:
    """Both programs lowered (jitted programs only); `.compile()` then compiles both."""
    return self.map(lambda f: f.lower(*args, **kwargs))

  def compile(self) -> LazyTrainStep:
    return self.map(lambda f: f.compile())

  def __call__(self, state: GANState, batch: Batch, *hparams: Any) -> tuple[GANState, Metrics]:
    step = state.step
    if isinstance(step, jax.core.Tracer):
      return jax.lax.cond(
        jnp.ravel(step)[0] % self.interval == 0,
        lambda: self.penalised(state, batch, *hparams),
        lambda: self.plain(state, batch, *hparams),
      )
    if self._last_step is None or step is not self._last_step:
      local = step.addressable_data(0) if isinstance(step, jax.Array) else step
      self._next = int(np.ravel(np.asarray(local))[0])  # replicas: all at the same step
    program = self.penalised if self._next % self.interval == 0 else self.plain
    new_state, metrics = program(state, batch, *hparams)
    self._last_step, self._next = new_state.step, self._next + 1
    return new_state, metrics


def make_train_step(
  gan: GAN,
  loss: GANLoss,
  *,
  n_critic: int = 1,
  ema_decay: float = 0.0,
  mesh: Mesh | None = None,
  stabilizers: Stabilizers = _NO_STABILIZERS,
  aux_weight: float = 1.0,
  reuse_fakes: bool = False,
  schedules: Schedules | None = None,
  penalty_interval: int = 1,
) -> TrainStep:
  """Builds the (unjitted) train step.

  Each step draws its noise from `fold_in(state.rng, state.step)`, so a step's result depends
  only on the state and the batch: same config + same seed = same bits.

  Args:
    gan: static G/D definitions and optimizers (from `gan_jax.core.state.create_state`).
    loss: the adversarial loss pair (`gan_jax.core.losses.get_loss`).
    n_critic: discriminator updates per generator update (1 for DCGAN, 5 for WGAN), >= 1.
    ema_decay: decay of the generator EMA in [0, 1); 0 keeps `ema_params == g_params`.
    mesh: the mesh the step will run on (`jit_train_step`'s). When given, the latent batch
      is sharded over 'data' like the real batch, so each device generates only its share
      of the fakes; without it XLA may compute G on the full batch on every device.
    stabilizers: penalties, clipping, label smoothing, instance noise, DiffAugment and ADA
      (`Stabilizers`; all off by default).
    aux_weight: weight of the AC-GAN classification losses (Odena et al. 2017 add them with
      weight 1), >= 0; used only when D is an AC-GAN discriminator (`gan.acgan`).
    reuse_fakes: the G update reuses the last D update's generated batch (its z and labels)
      and its generator forward pass: one G forward, kept for its backward pass with
      `jax.vjp`, serves both updates, as in PyTorch's DCGAN example, instead of a second
      forward on fresh latents. It saves one G forward per step (DCGAN-28: 9.11 -> 8.29
      GFLOP per step at batch 64) but changes the algorithm (G's gradient then comes from
      the very samples D was just updated on), so it is off by default.
    schedules: schedules of the penalty weights, the EMA half-life and ADA's fixed p, as
      functions of `state.step` (`gan_jax.core.schedules.Schedules.from_config`), and of the
      learning rates and beta2 when the optimizers are rebuilt from `hparams`; None: none (the
      learning-rate and beta2 schedules live in `gan`'s optimizers, `make_optimizers`).
    penalty_interval: lazy regularization (Karras et al. 2020, StyleGAN2, section 4; they use
      16 for R1): GP, R1 and R2 are computed only in the steps where `state.step %
      penalty_interval == 0`, weighted x penalty_interval; 1 (default): every step. With an
      interval > 1 and one of them on, the result is a `LazyTrainStep` (two programs).

  Returns:
    `train_step(state, batch, hparams=None) -> (new_state, metrics)`. `hparams` optionally
    replaces continuous hyperparameters by (traced) float32 scalars: `g_lr`, `d_lr`, `b1`,
    `b2` (all four together: Adam is rebuilt from them, same state structure) and the
    penalty weights `gp_weight`, `r1_weight`, `r2_weight` (a penalty is computed only if its
    weight in `stabilizers` is non-zero; the value here then multiplies it, 0 included;
    a scheduled weight is this value times the schedule's factor at `state.step`).
    `gan_jax.training.replicas` vmaps over them to give each replica its own. `batch['image']` is float32
    `[n_critic, B, H, W, C]` in [-1, 1] (one real batch per D update; `[B, H, W, C]` is
    accepted when n_critic == 1); a conditional GAN also needs `batch['label']`, int32
    `[n_critic, B]` (or `[B]`) in [0, K). Metrics are float32 scalars:
    d_loss (the adversarial part, mean over the n_critic D updates), g_loss,
    d_real = mean D(x) and d_fake = mean D(G(z)) (last D update: probabilities in [0, 1] for
    the cross-entropy losses, mean raw scores for the others), d_grad_norm, g_grad_norm
    (global L2 norms of the last D gradient and of the G gradient), and d_penalty (the
    weighted penalties added to the last D loss) when a penalty is on; with an AC-GAN D,
    d_aux_loss (CE of D's class predictions on the real plus the generated images, last D
    update) and g_aux_loss (CE on G's images in the G update), unweighted; with
    `stabilizers.augment == 'ada'`, ada_p (p after this step) and ada_rt (E[sign(D(real))]
    since the last p adjustment, `gan_jax.core.ada.adjust`); with 'fixed' and an `ada_p`
    schedule, ada_p (the p this step used, `Schedules.augment_probability`).

  Raises:
    ValueError: if n_critic < 1, ema_decay is outside [0, 1), aux_weight < 0, an unknown
      `stabilizers.augment`, or label smoothing is asked of a loss that is not a cross-entropy; at trace time, a conditional
      GAN's batch without labels of shape `[n_critic, B]`.
  """
  if n_critic < 1:
    raise ValueError(f'train.n_critic={n_critic} must be >= 1.')
  if not aux_weight >= 0:
    raise ValueError(f'train.aux_weight={aux_weight} must be >= 0 (AC-GAN uses 1).')
  if not 0.0 <= ema_decay < 1.0:
    raise ValueError(f'train.ema_decay={ema_decay} must be in [0, 1); 0 disables the EMA.')
  if stabilizers.augment not in ada.MODES:
    raise ValueError(f'train.augment={stabilizers.augment!r} must be one of {ada.MODES}.')
  if (
    isinstance(penalty_interval, bool)
    or not isinstance(penalty_interval, int)
    or penalty_interval < 1
  ):
    raise ValueError(f'train.penalty_interval={penalty_interval!r} must be an integer >= 1.')
  spec = StepSpec(
    gan=gan,
    loss=loss,
    d_loss=objectives.discriminator_loss(loss, stabilizers),
    n_critic=n_critic,
    ema_decay=ema_decay,
    mesh=mesh,
    stabilizers=stabilizers,
    aux_weight=aux_weight,
    reuse_fakes=reuse_fakes,
    schedules=schedules or Schedules(),
    penalty_interval=penalty_interval,
  )

  def build(spec: StepSpec) -> TrainStep:
    def step(
      state: GANState, batch: Batch, hparams: dict[str, jax.Array] | None = None
    ) -> tuple[GANState, Metrics]:
      return train_step(spec, state, batch, hparams)

    return step

  lazy = [f for f in penalties.LAZY_WEIGHT_FIELDS if getattr(stabilizers, f)]
  if penalty_interval == 1 or not lazy:
    return build(spec)
  k = penalty_interval

  def weights(factor: int) -> StepSpec:
    st = dataclasses.replace(stabilizers, **{f: getattr(stabilizers, f) * factor for f in lazy})
    return dataclasses.replace(spec, stabilizers=st, penalty_scale=factor or 1)

  return LazyTrainStep(build(weights(k)), build(weights(0)), k)


def make_train_step_from_config(gan: GAN, config: Any, *, mesh: Mesh | None = None) -> TrainStep:
  """`make_train_step` with every setting read from a run config.

  The loss is `get_loss(config.train.loss)`; `n_critic`, `ema_decay`, `aux_weight` (1 if
  absent), `reuse_fakes` (False if absent) and `penalty_interval` (1 if absent) are the
  `train` fields of those names, the stabilizers are `Stabilizers.from_config(config.train)`
  and the schedules `Schedules.from_config(config.train)`. For K replicas in one step
  pass `gan_jax.training.replicas.shared_step_config(configs)`, whose penalty weights are the
  replicas' largest.

  Args:
    gan: static G/D definitions and optimizers (`gan_jax.core.state.create_state`).
    config: a validated run config (`gan_jax.config.validate`).
    mesh: as in `make_train_step`.

  Returns:
    The unjitted `train_step(state, batch, hparams=None)` of `make_train_step`.

  Raises:
    ValueError: as `make_train_step` and `gan_jax.core.losses.get_loss` do.
  """
  t = config.train
  return make_train_step(
    gan,
    get_loss(t.loss),
    n_critic=t.n_critic,
    ema_decay=t.ema_decay,
    mesh=mesh,
    stabilizers=Stabilizers.from_config(t),
    aux_weight=t.get('aux_weight', 1.0),
    reuse_fakes=t.get('reuse_fakes', False),
    schedules=Schedules.from_config(t),
    penalty_interval=t.get('penalty_interval', 1),
  )


def jit_train_step(
  train_step: TrainStep, mesh: Mesh, *, donate: bool = True, cpu_scheduler: str | None = None
) -> TrainStep:
  """Compiles `train_step` data-parallel over `mesh`.

  Args:
    train_step: from `make_train_step`.
    mesh: a mesh with a 'data' axis (`make_mesh()`).
    donate: donate the input state's buffers to the output (the caller must not reuse the
      state it passed in).
    cpu_scheduler: on a CPU mesh, XLA's scheduler: 'concurrency' or 'memory'
      (`CPU_SCHEDULERS`: the same results, about half the temporary memory with 'memory');
      None: `CPU_COMPILER_OPTIONS` ('concurrency'). Ignored on GPU and TPU.

  Returns:
    The jitted step (for a `LazyTrainStep`, one of two jitted programs). Inputs: a
    replicated `GANState` and a batch whose arrays are sharded along axis 1
    (`batch_sharding(mesh)`); outputs: the replicated new state and replicated scalar
    metrics.

  Raises:
    ValueError: for another `cpu_scheduler`.
  """
  if isinstance(train_step, LazyTrainStep):
    return train_step.map(
      lambda f: jit_train_step(f, mesh, donate=donate, cpu_scheduler=cpu_scheduler)
    )
  if cpu_scheduler is not None and cpu_scheduler not in CPU_SCHEDULERS:
    raise ValueError(
      f'train.cpu_scheduler={cpu_scheduler!r}: use one of {sorted(CPU_SCHEDULERS)} '
      "('memory' halves the step's temporary memory on CPU, 'concurrency' is XLA's default)."
    )
  options = CPU_COMPILER_OPTIONS if cpu_scheduler is None else CPU_SCHEDULERS[cpu_scheduler]
  rep = replicated(mesh)
  on_cpu = mesh.devices.flat[0].platform == 'cpu'
  return jax.jit(
    train_step,
    in_shardings=(rep, batch_sharding(mesh)),
    out_shardings=(rep, rep),
    donate_argnums=(0,) if donate else (),
    compiler_options=dict(options) if on_cpu and options else None,
  )
