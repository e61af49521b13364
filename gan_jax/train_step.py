"""The GAN train step as a pure function, and its data-parallel jit over a device mesh.

`make_train_step(gan, ...)` returns `train_step(state, batch) -> (state, metrics)`: `n_critic`
discriminator updates, then one generator update (Goodfellow et al. 2014, Algorithm 1).
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
(`gan_jax.losses.class_cross_entropy`). Penalties see the same labels: GP and R1 the real
images' labels (WGAN-GP interpolates are judged as the real image's class, as in
StudioGAN), R2 the generated images'. Unconditional GANs run exactly the step they always
did.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from gan_jax import penalties, regularizers
from gan_jax.augment import diff_augment
from gan_jax.losses import GANLoss, class_cross_entropy, smoothed_d_minimax_loss
from gan_jax.sharding import batch_sharding, replicated
from gan_jax.state import GAN, GANState, make_optimizers

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
# so that replicas of one vmapped step can each have their own (gan_jax.replicas).
HPARAM_FIELDS = ('g_lr', 'd_lr', 'b1', 'b2', *penalties.REPLICA_WEIGHT_FIELDS)

# Folded into the step's key for the stabilizers' randomness, so that turning them on leaves
# the latents of every step (drawn from the step's key as before) unchanged.
_AUX_SALT = 0x57AB
# Folded into the step's key for G's class labels (conditional GANs only), for the same reason.
_LABEL_SALT = 0x1ABE1


@dataclasses.dataclass(frozen=True)
class Stabilizers:
  """The discriminator-side regularizers and stabilizers of one train step (all off = 0/'').

  Attributes:
    gp_weight: lambda of the gradient penalty on real/fake interpolates (Gulrajani et al.
      2017, eq. 3; they use 10 with the Wasserstein loss).
    r1_weight: gamma of R1 on real images: adds gamma/2 * E||grad_x D(x)||^2 (Mescheder et
      al. 2018, eq. 9).
    r2_weight: gamma of R2, the same on generated images (Mescheder et al. 2018, eq. 10).
    clip: WGAN weight clipping, every D parameter into [-clip, clip] after each D update
      (Arjovsky et al. 2017, Algorithm 1, c = 0.01); 0 disables.
    label_smoothing: one-sided label smoothing s: real target 1 - s (Salimans et al. 2016,
      section 3.4); cross-entropy losses only.
    instance_noise: sigma of Gaussian noise added to every D input, real and generated, in
      pixel units of [-1, 1] images (Sonderby et al. 2017; Arjovsky & Bottou 2017).
    instance_noise_steps: sigma decays linearly to 0 over this many steps; 0 keeps it fixed.
    diffaugment: DiffAugment policy applied to every D input, real and generated, in the D
      and the G step (Zhao et al. 2020), e.g. 'color,translation,cutout'; '' disables.
    lecam_weight: lambda of the LeCam regularizer on D's outputs (Tseng et al. 2021, eq. 3):
      adds lambda * R_LC, anchored to EMAs of D's mean real and fake outputs kept in
      `state.extras` and updated (with `lecam_decay`) from each D update's outputs first,
      as in the authors' code.
    lecam_decay: decay of those EMAs (0.99 in the paper).
  """

  gp_weight: float = 0.0
  r1_weight: float = 0.0
  r2_weight: float = 0.0
  clip: float = 0.0
  label_smoothing: float = 0.0
  instance_noise: float = 0.0
  instance_noise_steps: int = 0
  diffaugment: str = ''
  lecam_weight: float = 0.0
  lecam_decay: float = 0.99

  @classmethod
  def from_config(cls, train_config: Any) -> Stabilizers:
    """From a config's `train` block (missing fields count as off)."""
    return cls(**{f.name: train_config.get(f.name, f.default) for f in dataclasses.fields(cls)})

  @property
  def penalised(self) -> bool:
    """Whether any penalty of `gan_jax.penalties.PENALTIES` is on (weight > 0)."""
    return any(getattr(self, p.field) for p in penalties.PENALTIES.values())


def make_train_step(
  gan: GAN,
  loss: GANLoss,
  *,
  n_critic: int = 1,
  ema_decay: float = 0.0,
  mesh: Mesh | None = None,
  stabilizers: Stabilizers = Stabilizers(),
  aux_weight: float = 1.0,
  reuse_fakes: bool = False,
) -> TrainStep:
  """Builds the (unjitted) train step.

  Each step draws its noise from `fold_in(state.rng, state.step)`, so a step's result depends
  only on the state and the batch: same config + same seed = same bits.

  Args:
    gan: static G/D definitions and optimizers (from `gan_jax.state.create_state`).
    loss: the adversarial loss pair (`gan_jax.losses.get_loss`).
    n_critic: discriminator updates per generator update (1 for DCGAN, 5 for WGAN), >= 1.
    ema_decay: decay of the generator EMA in [0, 1); 0 keeps `ema_params == g_params`.
    mesh: the mesh the step will run on (`jit_train_step`'s). When given, the latent batch
      is sharded over 'data' like the real batch, so each device generates only its share
      of the fakes; without it XLA may compute G on the full batch on every device.
    stabilizers: penalties, clipping, label smoothing, instance noise and DiffAugment
      (`Stabilizers`; all off by default).
    aux_weight: weight of the AC-GAN classification losses (Odena et al. 2017 add them with
      weight 1), >= 0; used only when D is an AC-GAN discriminator (`gan.acgan`).
    reuse_fakes: the G update reuses the last D update's generated batch (its z and labels)
      and its generator forward pass: one G forward, kept for its backward pass with
      `jax.vjp`, serves both updates, as in PyTorch's DCGAN example, instead of a second
      forward on fresh latents. It saves one G forward per step (DCGAN-28: 9.11 -> 8.29
      GFLOP per step at batch 64) but changes the algorithm (G's gradient then comes from
      the very samples D was just updated on), so it is off by default.

  Returns:
    `train_step(state, batch, hparams=None) -> (new_state, metrics)`. `hparams` optionally
    replaces continuous hyperparameters by (traced) float32 scalars: `g_lr`, `d_lr`, `b1`,
    `b2` (all four together: Adam is rebuilt from them, same state structure) and the
    penalty weights `gp_weight`, `r1_weight`, `r2_weight` (a penalty is computed only if its
    weight in `stabilizers` is non-zero; the value here then multiplies it, 0 included).
    `gan_jax.replicas` vmaps over them to give each replica its own. `batch['image']` is float32
    `[n_critic, B, H, W, C]` in [-1, 1] (one real batch per D update; `[B, H, W, C]` is
    accepted when n_critic == 1); a conditional GAN also needs `batch['label']`, int32
    `[n_critic, B]` (or `[B]`) in [0, K). Metrics are float32 scalars:
    d_loss (the adversarial part, mean over the n_critic D updates), g_loss,
    d_real = mean D(x) and d_fake = mean D(G(z)) (last D update: probabilities in [0, 1] for
    the cross-entropy losses, mean raw scores for the others), d_grad_norm, g_grad_norm
    (global L2 norms of the last D gradient and of the G gradient), and d_penalty (the
    weighted penalties added to the last D loss) when a penalty is on; with an AC-GAN D,
    d_aux_loss (CE of D's class predictions on the real plus the generated images, last D
    update) and g_aux_loss (CE on G's images in the G update), unweighted.

  Raises:
    ValueError: if n_critic < 1, ema_decay is outside [0, 1), aux_weight < 0, or label
      smoothing is asked of a loss that is not a cross-entropy; at trace time, a conditional
      GAN's batch without labels of shape `[n_critic, B]`.
  """
  if n_critic < 1:
    raise ValueError(f'train.n_critic={n_critic} must be >= 1.')
  if not aux_weight >= 0:
    raise ValueError(f'train.aux_weight={aux_weight} must be >= 0 (AC-GAN uses 1).')
  conditional, acgan = gan.conditional, gan.acgan
  if not 0.0 <= ema_decay < 1.0:
    raise ValueError(f'train.ema_decay={ema_decay} must be in [0, 1); 0 disables the EMA.')
  st = stabilizers
  d_loss_of = loss.d
  if st.label_smoothing:
    if not loss.probabilistic:
      raise ValueError(
        f'train.label_smoothing={st.label_smoothing} needs a cross-entropy loss '
        "(train.loss='non_saturating' or 'minimax')."
      )
    d_loss_of = smoothed_d_minimax_loss(st.label_smoothing)

  def d_input(images, key, step):
    """What D sees: DiffAugment, then instance noise (both off by default)."""
    k_aug, k_noise = jax.random.split(key)
    if st.diffaugment:
      images = diff_augment(images, k_aug, st.diffaugment)
    if st.instance_noise:
      sigma = jnp.float32(st.instance_noise)
      if st.instance_noise_steps:
        sigma = sigma * jnp.maximum(0.0, 1.0 - step / st.instance_noise_steps)
      images = images + sigma * jax.random.normal(k_noise, images.shape, images.dtype)
    return images

  def d_loss_fn(d_params, d_stats, real, fake, y_real, y_fake, key, step, hp, extras):
    # y_real, y_fake: int32 [B] labels of a conditional GAN, None otherwise.
    k_real, k_fake, k_gp = jax.random.split(key, 3)
    real, fake = d_input(real, k_real, step), d_input(fake, k_fake, step)
    stats_in = d_stats
    d_aux = jnp.float32(0.0)
    if acgan:
      real_logits, real_cls, d_stats = gan.discriminate_with_classes(
        d_params, d_stats, real, train=True
      )
      fake_logits, fake_cls, d_stats = gan.discriminate_with_classes(
        d_params, d_stats, fake, train=True
      )
      d_aux = class_cross_entropy(real_cls, y_real) + class_cross_entropy(fake_cls, y_fake)
    else:
      real_logits, d_stats = gan.discriminate(d_params, d_stats, real, y_real, train=True)
      fake_logits, d_stats = gan.discriminate(d_params, d_stats, fake, y_fake, train=True)
    d_loss = d_loss_of(real_logits, fake_logits)
    penalty = jnp.float32(0.0)
    if st.penalised:
      # Input gradients of D as a function of its parameters (statistics of this pass are
      # discarded; with BatchNorm in train mode the samples of a batch are coupled).
      def d_apply_as(labels):
        return lambda p, x: gan.discriminate(p, stats_in, x, labels, train=True)[0]

      d_apply = d_apply_as(y_real)
      if st.gp_weight:
        gp = regularizers.gradient_penalty(d_apply, d_params, real, fake, k_gp)
        penalty += hp.get('gp_weight', st.gp_weight) * gp
      if st.r1_weight:
        r1 = regularizers.r1_penalty(d_apply, d_params, real)
        penalty += 0.5 * hp.get('r1_weight', st.r1_weight) * r1
      if st.r2_weight:
        r2 = regularizers.r2_penalty(d_apply_as(y_fake), d_params, fake)
        penalty += 0.5 * hp.get('r2_weight', st.r2_weight) * r2
    if st.lecam_weight:
      extras = {
        'lecam_ema_real': regularizers.update_lecam_ema(
          extras['lecam_ema_real'], real_logits, st.lecam_decay
        ),
        'lecam_ema_fake': regularizers.update_lecam_ema(
          extras['lecam_ema_fake'], fake_logits, st.lecam_decay
        ),
      }
      lecam = regularizers.lecam_penalty(
        real_logits, fake_logits, extras['lecam_ema_real'], extras['lecam_ema_fake']
      )
      penalty += st.lecam_weight * lecam
    total = d_loss + penalty
    if acgan:
      total = total + aux_weight * d_aux
    return total, (d_stats, real_logits, fake_logits, penalty, d_loss, extras, d_aux)

  def g_loss_fn(g_params, g_stats, d_params, d_stats, z, y_fake, real, y_real, key, step):
    fake, g_stats = gan.generate(g_params, g_stats, z, y_fake, train=True)
    total, (g_loss, g_aux) = g_adversarial(fake, y_fake, d_params, d_stats, real, y_real, key, step)
    return total, (g_stats, g_loss, g_aux)

  def g_adversarial(fake, y_fake, d_params, d_stats, real, y_real, key, step):
    """G's loss as a function of its images: (total, (adversarial loss, AC-GAN CE))."""
    k_fake, k_real = jax.random.split(key)
    fake = d_input(fake, k_fake, step)
    g_aux = jnp.float32(0.0)
    # D's statistics from this pass are discarded: the G step does not change D.
    if acgan:
      fake_logits, fake_cls, _ = gan.discriminate_with_classes(d_params, d_stats, fake, train=True)
      g_aux = class_cross_entropy(fake_cls, y_fake)
    else:
      fake_logits, _ = gan.discriminate(d_params, d_stats, fake, y_fake, train=True)
    real_logits = None
    if loss.g_needs_real:
      real_in = d_input(real, k_real, step)
      real_logits, _ = gan.discriminate(d_params, d_stats, real_in, y_real, train=True)
    g_loss = loss.g(fake_logits, real_logits)
    total = g_loss + aux_weight * g_aux if acgan else g_loss
    return total, (g_loss, g_aux)

  def latents(key: jax.Array, batch_size: int) -> jax.Array:
    z = gan.sample_latents(key, batch_size)
    if mesh is not None:  # threefry is partitionable: same values, generated in shards
      z = jax.lax.with_sharding_constraint(z, batch_sharding(mesh, batch_axis=0))
    return z

  def fake_labels(key: jax.Array, batch_size: int) -> jax.Array:
    """G's classes, uniform over [0, K), int32 [B] (sharded as the latents)."""
    y = gan.sample_labels(key, batch_size)
    if mesh is not None:
      y = jax.lax.with_sharding_constraint(y, batch_sharding(mesh, batch_axis=0))
    return y

  def train_step(
    state: GANState, batch: Batch, hparams: dict[str, jax.Array] | None = None
  ) -> tuple[GANState, Metrics]:
    hp = dict(hparams or {})
    unknown = sorted(set(hp) - set(HPARAM_FIELDS))
    if unknown:
      raise ValueError(f'unknown hparams {unknown}; the step takes {HPARAM_FIELDS}.')
    g_tx, d_tx = gan.g_tx, gan.d_tx
    if any(k in hp for k in ('g_lr', 'd_lr', 'b1', 'b2')):
      missing = [k for k in ('g_lr', 'd_lr', 'b1', 'b2') if k not in hp]
      if missing:
        raise ValueError(f'hparams with optimizer values need all of g_lr, d_lr, b1, b2: {missing}')
      # The same Adam with traced values: the optimizer state has the same structure.
      g_tx, d_tx = make_optimizers(types.SimpleNamespace(**hp))
    images = batch['image']
    if images.ndim == 4 and n_critic == 1:
      images = images[None]
    if images.ndim != 5 or images.shape[0] != n_critic:
      raise ValueError(
        f"batch['image'] must be [n_critic={n_critic}, B, H, W, C], got {images.shape}."
      )
    batch_size = images.shape[1]
    rng = jax.random.fold_in(state.rng, state.step)
    keys = jax.random.split(rng, n_critic + 1)
    aux = jax.random.split(jax.random.fold_in(rng, _AUX_SALT), n_critic + 1)
    step = state.step.astype(jnp.float32)
    real_labels = [None] * n_critic
    label_keys = None
    if conditional:
      labels = batch.get('label')
      if labels is not None and labels.ndim == 1 and n_critic == 1:
        labels = labels[None]
      if labels is None or labels.shape != images.shape[:2]:
        got = 'none' if labels is None else labels.shape
        raise ValueError(
          f"a class-conditional GAN (model.num_classes={gan.num_classes}) needs batch['label'] "
          f'int32 [n_critic={n_critic}, B={batch_size}] in [0, {gan.num_classes}), got {got}.'
        )
      real_labels = [labels[i].astype(jnp.int32) for i in range(n_critic)]
      label_keys = jax.random.split(jax.random.fold_in(rng, _LABEL_SALT), n_critic + 1)

    def g_labels(i: int) -> jax.Array | None:
      return fake_labels(label_keys[i], batch_size) if conditional else None

    d_params, d_stats, d_opt_state = state.d_params, state.d_batch_stats, state.d_opt_state
    extras = state.extras
    if st.lecam_weight and set(extras) != {'lecam_ema_real', 'lecam_ema_fake'}:
      raise ValueError(
        'train.lecam_weight > 0 needs the LeCam EMAs in state.extras: build the state with '
        'the same config (gan_jax.state.create_state).'
      )
    d_losses = []
    for i in range(n_critic):
      z = latents(keys[i], batch_size)
      y_fake = g_labels(i)
      if reuse_fakes and i == n_critic - 1:
        # One G forward for this D update and the G update; its backward pass waits in g_vjp.
        g_fake, g_vjp, g_stats = jax.vjp(
          lambda p, z=z, y=y_fake: gan.generate(p, state.g_batch_stats, z, y, train=True),
          state.g_params,
          has_aux=True,
        )
        fake, g_fake_labels = g_fake, y_fake
      else:
        fake, _ = gan.generate(state.g_params, state.g_batch_stats, z, y_fake, train=True)
      fake = jax.lax.stop_gradient(fake)
      (_, (d_stats, real_logits, fake_logits, penalty, d_loss, extras, d_aux)), d_grads = (
        jax.value_and_grad(d_loss_fn, has_aux=True)(
          d_params, d_stats, images[i], fake, real_labels[i], y_fake, aux[i], step, hp, extras
        )
      )
      updates, d_opt_state = d_tx.update(d_grads, d_opt_state, d_params)
      d_params = optax.apply_updates(d_params, updates)
      if st.clip:
        d_params = regularizers.clip_weights(d_params, st.clip)
      d_losses.append(d_loss)

    if reuse_fakes:
      (_, (g_loss, g_aux)), fake_cotangent = jax.value_and_grad(g_adversarial, has_aux=True)(
        g_fake, g_fake_labels, d_params, d_stats, images[-1], real_labels[-1], aux[n_critic], step
      )
      (g_grads,) = g_vjp(fake_cotangent)
    else:
      z = latents(keys[n_critic], batch_size)
      (_, (g_stats, g_loss, g_aux)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        state.g_params,
        state.g_batch_stats,
        d_params,
        d_stats,
        z,
        g_labels(n_critic),
        images[-1],
        real_labels[-1],
        aux[n_critic],
        step,
      )
    updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    if ema_decay > 0:
      ema_params = optax.incremental_update(g_params, state.ema_params, 1.0 - ema_decay)
    else:
      ema_params = g_params

    new_state = state.replace(
      step=state.step + 1,
      g_params=g_params,
      g_batch_stats=g_stats,
      d_params=d_params,
      d_batch_stats=d_stats,
      g_opt_state=g_opt_state,
      d_opt_state=d_opt_state,
      ema_params=ema_params,
      extras=extras,
    )
    out = jax.nn.sigmoid if loss.probabilistic else (lambda x: x)
    metrics = {
      'd_loss': jnp.mean(jnp.stack(d_losses)),
      'g_loss': g_loss,
      'd_real': jnp.mean(out(real_logits)),
      'd_fake': jnp.mean(out(fake_logits)),
      'd_grad_norm': optax.tree.norm(d_grads),
      'g_grad_norm': optax.tree.norm(g_grads),
    }
    if st.penalised:
      metrics['d_penalty'] = penalty
    if acgan:
      metrics['d_aux_loss'] = d_aux
      metrics['g_aux_loss'] = g_aux
    return new_state, metrics

  return train_step


def jit_train_step(train_step: TrainStep, mesh: Mesh, *, donate: bool = True) -> TrainStep:
  """Compiles `train_step` data-parallel over `mesh`.

  Args:
    train_step: from `make_train_step`.
    mesh: a mesh with a 'data' axis (`make_mesh()`).
    donate: donate the input state's buffers to the output (the caller must not reuse the
      state it passed in).

  Returns:
    The jitted step. Inputs: a replicated `GANState` and a batch whose arrays are sharded
    along axis 1 (`batch_sharding(mesh)`); outputs: the replicated new state and replicated
    scalar metrics.
  """
  rep = replicated(mesh)
  return jax.jit(
    train_step,
    in_shardings=(rep, batch_sharding(mesh)),
    out_shardings=(rep, rep),
    donate_argnums=(0,) if donate else (),
  )
