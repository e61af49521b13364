"""CycleGAN training: the state pytree and a pure, jittable, data-parallel train step.

"Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks" (Zhu, Park,
Isola, Efros, ICCV 2017). Two generators, G: A -> B and F: B -> A (`ResnetGenerator`, keyed
'a2b' and 'b2a'), and two PatchGAN discriminators on single images with instance norm
(`PatchGANDiscriminator(in_channels=0, norm='instance')`): D_B (key 'b') judges domain-B
images, real ones against G's outputs, and D_A (key 'a') domain-A images against F's.

The full objective (paper, eq. 3, with eq. 6 of section 6 for the identity term):

    L = L_GAN(G, D_B) + L_GAN(F, D_A) + lambda L_cyc(G, F) + mu L_idt(G, F)
    L_cyc = E_a ||F(G(a)) - a||_1 + E_b ||G(F(b)) - b||_1                     (eq. 2)
    L_idt = E_b ||G(b) - b||_1 + E_a ||F(a) - a||_1

with lambda = `cycle_weight` = 10 and mu = `identity_ratio` * lambda = 0.5 * 10 (the paper's
"0.5 lambda", `lambda_identity` of the reference code). The adversarial loss is least squares
(section 4, "Training details", after Mao et al. 2017): G minimises E_a[(D_B(G(a)) - 1)^2]
(`g_adversarial`: 2 x `gan_jax.core.losses` 'least_squares' G loss, which carries Mao's 1/2), and
D_B minimises 1/2 (E_b[(D_B(b) - 1)^2] + E[D_B(G(a))^2]) ('least_squares' D loss; the paper
halves D's objective "to slow down the rate at which D learns relative to G"). Patch logits
`[B, H', W']` are averaged over all patches, as the reference code's MSE does. The L1 terms
are mean absolute errors per pixel and channel on images in [-1, 1].

One step (`train_step`, the reference code's order): the generators translate the batch
(G(a), F(G(a)), F(b), G(F(b)), and G(b), F(a) for the identity term) and take one Adam step
on L with the discriminators held fixed; then each fake batch, without gradient, goes
through its discriminator's history (`query_history`: Shrivastava et al. 2017, section 2.3,
50 images) and the discriminators take one Adam step on real images against what the
history returned. The histories live in the state with their fill counts, and their random
draws come from `fold_in(state.rng, state.step)`, so a run resumed from a checkpoint repeats
the uninterrupted one bit for bit.

Adam (lr 2e-4, beta1 0.5) with the learning rate held for `hold_steps` and then decayed
linearly to 0 over `decay_steps` (`lr_schedule`; the paper: 100 epochs each).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from gan_jax.core import losses as losses_lib
from gan_jax.models.resnet_generator import ResnetGenerator, check_resnet_size
from gan_jax.models.unet import PatchGANDiscriminator, init_fast
from gan_jax.core.sharding import batch_sharding, replicated

PyTree = Any
GENERATORS = ('a2b', 'b2a')
DOMAINS = ('a', 'b')


@flax.struct.dataclass
class ImageHistory:
  """A discriminator's history of generated images (Shrivastava et al. 2017, section 2.3).

  Attributes:
    images: float32 `[capacity, S, S, C]`; slots `[0, count)` hold past generated images, the
      rest zeros.
    count: int32 scalar in [0, capacity], the number of filled slots.
  """

  images: jax.Array
  count: jax.Array


def empty_history(capacity: int, image_shape: tuple[int, int, int]) -> ImageHistory:
  """An empty `ImageHistory` of `capacity` >= 0 images of shape (S, S, C)."""
  if capacity < 0:
    raise ValueError(f'history size {capacity} must be >= 0 (0 disables the history).')
  return ImageHistory(
    images=jnp.zeros((capacity, *image_shape), jnp.float32), count=jnp.zeros((), jnp.int32)
  )


def history_draws(key: jax.Array, batch: int, capacity: int) -> tuple[jax.Array, jax.Array]:
  """The random numbers `update_history` consumes for a batch: (u float32 `[batch]` uniform
  in [0, 1), slots int32 `[batch]` uniform in [0, capacity))."""
  key_u, key_s = jax.random.split(key)
  u = jax.random.uniform(key_u, (batch,), jnp.float32)
  slots = jax.random.randint(key_s, (batch,), 0, max(capacity, 1), jnp.int32)
  return u, slots


def update_history(
  history: ImageHistory, images: jax.Array, u: jax.Array, slots: jax.Array
) -> tuple[jax.Array, ImageHistory]:
  """Passes a batch through the history, one image after another (the reference code's
  `ImagePool.query`):

  * while the history is not full, the image is stored in the next free slot and returned;
  * once full, with probability 1/2 (`u[i] > 0.5`) the image replaces the stored one in slot
    `slots[i]`, which is returned instead; otherwise the image itself is returned.

  Args:
    history: the `ImageHistory` (capacity 0: images are returned unchanged).
    images: float32 `[B, S, S, C]`, the generated batch (no gradient flows through).
    u: float32 `[B]` in [0, 1); slots: int32 `[B]` in [0, capacity) (`history_draws`).

  Returns:
    (float32 `[B, S, S, C]` images for the discriminator, the updated history).
  """
  capacity = history.images.shape[0]
  images = jax.lax.stop_gradient(images.astype(jnp.float32))
  if capacity == 0:
    return images, history

  def one(carry, inp):
    buf, count = carry
    image, ui, slot = inp
    filling = count < capacity
    swap = jnp.logical_and(jnp.logical_not(filling), ui > 0.5)
    pos = jnp.where(filling, count, slot)
    old = jax.lax.dynamic_index_in_dim(buf, pos, keepdims=False)
    out = jnp.where(swap, old, image)
    stored = jnp.where(jnp.logical_or(filling, swap), image, old)
    buf = jax.lax.dynamic_update_index_in_dim(buf, stored, pos, 0)
    return (buf, count + filling.astype(jnp.int32)), out

  (buf, count), out = jax.lax.scan(one, (history.images, history.count), (images, u, slots))
  return out, ImageHistory(images=buf, count=count)


def query_history(
  history: ImageHistory, images: jax.Array, key: jax.Array
) -> tuple[jax.Array, ImageHistory]:
  """`update_history` with its random numbers drawn from `key` (`history_draws`)."""
  u, slots = history_draws(key, images.shape[0], history.images.shape[0])
  return update_history(history, images, u, slots)


def lr_schedule(lr: float, hold_steps: int, decay_steps: int | None) -> optax.Schedule:
  """The learning rate of step k (0-based): `lr` for k < hold_steps, then linear to 0,

      lr(k) = lr * max(0, 1 - (k - hold_steps) / decay_steps),

  reaching 0 at k = hold_steps + decay_steps and staying there (`optax.join_schedules` of a
  constant and `optax.linear_schedule`). `decay_steps=None` keeps `lr` for ever. `lr` may be
  a traced float32 scalar (then it is not checked).

  Raises:
    ValueError: for lr <= 0, hold_steps < 0 or decay_steps < 1.
  """
  bad_lr = not isinstance(lr, jax.core.Tracer) and not lr > 0
  if bad_lr or hold_steps < 0 or (decay_steps is not None and decay_steps < 1):
    raise ValueError(
      f'lr={lr} must be > 0, hold_steps={hold_steps} >= 0 and decay_steps={decay_steps} >= 1 '
      '(or None for no decay).'
    )
  if decay_steps is None:
    return optax.constant_schedule(lr)
  return optax.join_schedules(
    [optax.constant_schedule(lr), optax.linear_schedule(lr, 0.0, decay_steps)], [hold_steps]
  )


def g_adversarial(fake_logits: jax.Array) -> jax.Array:
  """G's least-squares loss on D's patch logits `[B, H', W']`: mean((D(G(x)) - 1)^2), a
  float32 scalar (2 x `gan_jax.core.losses` 'least_squares' G loss)."""
  return 2.0 * losses_lib.get_loss('least_squares').g(fake_logits.reshape(-1), None)


def d_adversarial(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """D's least-squares loss, halved: 0.5 (mean((D(y) - 1)^2) + mean(D(G(x))^2)) over patch
  logits `[B, H', W']` (the 'least_squares' D loss of `gan_jax.core.losses`); float32 scalar."""
  return losses_lib.get_loss('least_squares').d(real_logits.reshape(-1), fake_logits.reshape(-1))


@flax.struct.dataclass
class CycleGANState:
  """Everything a CycleGAN run updates, as one pytree of arrays.

  Attributes:
    step: int32 scalar, completed steps (one G update then one D update each).
    rng: uint32 `[2]` PRNG key of the run; step k draws from `fold_in(rng, k)`.
    g_params: {'a2b': G's, 'b2a': F's parameters} (pure dicts; no batch statistics).
    d_params: {'a': D_A's, 'b': D_B's parameters}.
    g_opt_state, d_opt_state: the Adam states of both generators and both discriminators.
    history: {'a': D_A's, 'b': D_B's `ImageHistory`}.
  """

  step: jax.Array
  rng: jax.Array
  g_params: PyTree
  d_params: PyTree
  g_opt_state: PyTree
  d_opt_state: PyTree
  history: PyTree


@dataclasses.dataclass(frozen=True, eq=False)
class CycleGAN:
  """The static half: graph definitions, optimizers and loss weights.

  Attributes:
    g_graphdefs: {'a2b', 'b2a'}: NNX graph definitions of the two ResNet generators.
    d_graphdefs: {'a', 'b'}: those of the two PatchGANs (judging A and B images).
    g_tx, d_tx: Optax Adam with the `lr_schedule`.
    schedule: the learning rate of each step (for logging).
    cycle_weight: lambda (10 in the paper).
    identity_ratio: mu / lambda (0.5 in the paper; 0 leaves the identity term out).
    image_size, a_channels, b_channels: images of A are `[B, S, S, a_channels]`, of B `[B, S,
      S, b_channels]`.
    b1, b2, hold_steps, decay_steps: Adam's betas and the `lr_schedule`'s steps
      (`with_hparams` rebuilds Adam with them).
  """

  g_graphdefs: dict[str, nnx.GraphDef]
  d_graphdefs: dict[str, nnx.GraphDef]
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  schedule: optax.Schedule
  cycle_weight: float
  identity_ratio: float
  image_size: int
  a_channels: int
  b_channels: int
  b1: float = 0.5
  b2: float = 0.999
  hold_steps: int = 0
  decay_steps: int | None = None

  def with_hparams(self, *, lr: Any = None, cycle_weight: Any = None) -> CycleGAN:
    """The same model with the peak learning rate of the `lr_schedule` and/or lambda
    replaced, by floats or by traced float32 scalars (each replica of one compiled step its
    own: `gan_jax.translation.replicas`). The optimizer state keeps its structure, and values
    equal to the model's give the same step."""
    out = self
    if lr is not None:
      schedule = lr_schedule(lr, self.hold_steps, self.decay_steps)
      out = dataclasses.replace(
        out,
        schedule=schedule,
        g_tx=optax.adam(schedule, b1=self.b1, b2=self.b2),
        d_tx=optax.adam(schedule, b1=self.b1, b2=self.b2),
      )
    if cycle_weight is not None:
      out = dataclasses.replace(out, cycle_weight=cycle_weight)
    return out

  def channels(self, domain: str) -> int:
    return self.a_channels if domain == 'a' else self.b_channels

  def translate(self, g_params: PyTree, direction: str, images: jax.Array) -> jax.Array:
    """G ('a2b') or F ('b2a') as a pure function: float32 `[B, S, S, C_in]` in [-1, 1] ->
    float32 `[B, S, S, C_out]` in [-1, 1]."""
    model = nnx.merge(self.g_graphdefs[direction], g_params[direction], copy=True)
    return model(images).astype(jnp.float32)

  def discriminate(self, d_params: PyTree, domain: str, images: jax.Array) -> jax.Array:
    """D_A ('a') or D_B ('b') as a pure function: float32 patch logits `[B, H', W']`."""
    model = nnx.merge(self.d_graphdefs[domain], d_params[domain], copy=True)
    return model(None, images).astype(jnp.float32)


def create_cyclegan(
  image_size: int,
  a_channels: int,
  b_channels: int | None = None,
  *,
  seed: int = 0,
  width: int = 64,
  num_blocks: int = 6,
  d_width: int = 64,
  d_max_width: int = 512,
  patch_layers: int | None = None,
  history_size: int = 50,
  cycle_weight: float = 10.0,
  identity_ratio: float = 0.5,
  lr: float = 2e-4,
  b1: float = 0.5,
  b2: float = 0.999,
  hold_steps: int = 0,
  decay_steps: int | None = None,
) -> tuple[CycleGAN, CycleGANState]:
  """Builds the two ResNet generators, the two PatchGANs, Adam, and the step-0 state with
  empty histories; weights N(0, 0.02) (`init_fast`). Same arguments and seed give
  bitwise-identical states.

  Args:
    image_size: S, a multiple of 4, >= 8 (28 for Fashion-MNIST).
    a_channels, b_channels: channels of domains A and B (b_channels defaults to a_channels).
    seed: seeds the weights and the run's PRNG key.
    width, num_blocks: the generators' k and n (`ResnetGenerator`; 64 and 6 in the paper).
    d_width, d_max_width, patch_layers: the PatchGANs' (`PatchGANDiscriminator`).
    history_size: images in each discriminator's history (50 in the paper; 0 disables it).
    cycle_weight: lambda (10); identity_ratio: mu / lambda (0.5; needs a_channels ==
      b_channels unless 0).
    lr, b1, b2: Adam (2e-4, 0.5, 0.999 in the paper).
    hold_steps, decay_steps: the `lr_schedule` (default: constant lr).

  Raises:
    ValueError: in one line, for an image size the generator cannot take, negative weights
      or history size, an identity term between domains of different channels, or a bad
      schedule.
  """
  b_channels = a_channels if b_channels is None else b_channels
  check_resnet_size(image_size)
  if history_size < 0:
    raise ValueError(f'history_size={history_size} must be >= 0 (0 disables the history).')
  if cycle_weight < 0 or identity_ratio < 0:
    raise ValueError(
      f'cycle_weight={cycle_weight} and identity_ratio={identity_ratio} must be >= 0.'
    )
  if identity_ratio > 0 and a_channels != b_channels:
    raise ValueError(
      f'the identity loss needs domains of equal channels (A has {a_channels}, B {b_channels}); '
      'set identity_ratio=0.'
    )
  schedule = lr_schedule(lr, hold_steps, decay_steps)
  keys = jax.random.split(jax.random.PRNGKey(seed), 5)
  chans = {'a': a_channels, 'b': b_channels}
  g_graphdefs, g_params, d_graphdefs, d_params = {}, {}, {}, {}
  for i, direction in enumerate(GENERATORS):
    c_in, c_out = chans[direction[0]], chans[direction[-1]]
    ctor = functools.partial(
      ResnetGenerator, image_size, c_in, c_out, width=width, num_blocks=num_blocks
    )
    g_graphdefs[direction], g_params[direction], stats = init_fast(
      lambda ctor=ctor: ctor(rngs=nnx.Rngs(0)), keys[i]
    )
    assert not jax.tree.leaves(stats), 'the ResNet generator keeps no statistics'
  for i, domain in enumerate(DOMAINS):
    ctor = functools.partial(
      PatchGANDiscriminator,
      image_size,
      0,
      chans[domain],
      width=d_width,
      max_width=d_max_width,
      patch_layers=patch_layers,
      norm='instance',
    )
    d_graphdefs[domain], d_params[domain], stats = init_fast(
      lambda ctor=ctor: ctor(rngs=nnx.Rngs(0)), keys[2 + i]
    )
    assert not jax.tree.leaves(stats), 'an instance-norm PatchGAN keeps no statistics'
  g_tx = optax.adam(schedule, b1=b1, b2=b2)
  d_tx = optax.adam(schedule, b1=b1, b2=b2)
  model = CycleGAN(
    g_graphdefs=g_graphdefs,
    d_graphdefs=d_graphdefs,
    g_tx=g_tx,
    d_tx=d_tx,
    schedule=schedule,
    cycle_weight=float(cycle_weight),
    identity_ratio=float(identity_ratio),
    image_size=image_size,
    a_channels=a_channels,
    b_channels=b_channels,
    b1=b1,
    b2=b2,
    hold_steps=hold_steps,
    decay_steps=decay_steps,
  )
  state = CycleGANState(
    step=jnp.zeros((), jnp.int32),
    rng=keys[4],
    g_params=g_params,
    d_params=d_params,
    g_opt_state=g_tx.init(g_params),
    d_opt_state=d_tx.init(d_params),
    history={d: empty_history(history_size, (image_size, image_size, chans[d])) for d in DOMAINS},
  )
  return model, state


def check_batch(model: CycleGAN, images_a: Any, images_b: Any) -> None:
  """Raises a one-line ValueError unless images_a are `[B, S, S, a_channels]` and images_b
  `[B, S, S, b_channels]` with one B."""
  s = model.image_size
  for name, x, c in (('A', images_a, model.a_channels), ('B', images_b, model.b_channels)):
    shape = tuple(np.shape(x))
    if len(shape) != 4 or shape[1:] != (s, s, c):
      raise ValueError(f'CycleGAN images of domain {name} must be [B, {s}, {s}, {c}], got {shape}.')
  if np.shape(images_a)[0] != np.shape(images_b)[0]:
    raise ValueError(
      f'CycleGAN got {np.shape(images_a)[0]} images of A but {np.shape(images_b)[0]} of B; '
      'use batches of one size.'
    )


def generator_loss(
  model: CycleGAN, g_params: PyTree, d_params: PyTree, a: jax.Array, b: jax.Array
) -> tuple[jax.Array, tuple[dict[str, jax.Array], jax.Array, jax.Array]]:
  """The generators' objective L (module docstring) on a batch of A and B images.

  Returns:
    (L float32 scalar, (terms, fake_a = F(b), fake_b = G(a))) with float32 scalar terms
    'g_adv_a2b' (mean (D_B(G(a)) - 1)^2), 'g_adv_b2a', 'cycle_a' (mean |F(G(a)) - a|),
    'cycle_b' (mean |G(F(b)) - b|) and, when identity_ratio > 0, 'identity_a' (mean |F(a) -
    a|) and 'identity_b' (mean |G(b) - b|).
  """
  fake_b = model.translate(g_params, 'a2b', a)
  fake_a = model.translate(g_params, 'b2a', b)
  terms = {
    'g_adv_a2b': g_adversarial(model.discriminate(d_params, 'b', fake_b)),
    'g_adv_b2a': g_adversarial(model.discriminate(d_params, 'a', fake_a)),
    'cycle_a': jnp.mean(jnp.abs(model.translate(g_params, 'b2a', fake_b) - a)),
    'cycle_b': jnp.mean(jnp.abs(model.translate(g_params, 'a2b', fake_a) - b)),
  }
  total = terms['g_adv_a2b'] + terms['g_adv_b2a']
  total += model.cycle_weight * (terms['cycle_a'] + terms['cycle_b'])
  if model.identity_ratio > 0:
    terms['identity_a'] = jnp.mean(jnp.abs(model.translate(g_params, 'b2a', a) - a))
    terms['identity_b'] = jnp.mean(jnp.abs(model.translate(g_params, 'a2b', b) - b))
    mu = model.identity_ratio * model.cycle_weight
    total += mu * (terms['identity_a'] + terms['identity_b'])
  return total, (terms, fake_a, fake_b)


def discriminator_loss(
  model: CycleGAN,
  d_params: PyTree,
  a: jax.Array,
  b: jax.Array,
  fake_a: jax.Array,
  fake_b: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Both discriminators' objective: `d_adversarial(D_A(a), D_A(fake_a)) +
  d_adversarial(D_B(b), D_B(fake_b))` (the fakes as the histories returned them).

  Returns:
    (float32 scalar, {'d_loss_a', 'd_loss_b', 'd_real_a', 'd_fake_a', 'd_real_b',
    'd_fake_b'}: the two halves and the mean patch outputs on real and fake images).
  """
  terms = {}
  for domain, real, fake in (('a', a, fake_a), ('b', b, fake_b)):
    real_logits = model.discriminate(d_params, domain, real)
    fake_logits = model.discriminate(d_params, domain, fake)
    terms[f'd_loss_{domain}'] = d_adversarial(real_logits, fake_logits)
    terms[f'd_real_{domain}'] = jnp.mean(real_logits)
    terms[f'd_fake_{domain}'] = jnp.mean(fake_logits)
  return terms['d_loss_a'] + terms['d_loss_b'], terms


def train_step(
  model: CycleGAN, state: CycleGANState, images_a: jax.Array, images_b: jax.Array
) -> tuple[CycleGANState, dict[str, jax.Array]]:
  """One CycleGAN step: one update of both generators, then one of both discriminators
  (module docstring).

  Args:
    model: the static `CycleGAN`.
    state: the current `CycleGANState`.
    images_a: float32 `[B, S, S, a_channels]` in [-1, 1], a batch of domain A.
    images_b: float32 `[B, S, S, b_channels]` in [-1, 1], an unrelated batch of domain B.

  Returns:
    (new state, metrics): float32 scalars 'g_loss' (L), its terms (`generator_loss`),
    'd_loss' and its terms (`discriminator_loss`, after G's update, on the histories'
    images), and 'lr' (this step's learning rate).

  Raises:
    ValueError: (at trace time) for batches of the wrong shape.
  """
  check_batch(model, images_a, images_b)
  a = images_a.astype(jnp.float32)
  b = images_b.astype(jnp.float32)
  key_a, key_b = jax.random.split(jax.random.fold_in(state.rng, state.step))

  (g_loss, (g_terms, fake_a, fake_b)), g_grads = jax.value_and_grad(
    lambda p: generator_loss(model, p, state.d_params, a, b), has_aux=True
  )(state.g_params)
  g_updates, g_opt_state = model.g_tx.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)

  pooled_a, history_a = query_history(state.history['a'], fake_a, key_a)
  pooled_b, history_b = query_history(state.history['b'], fake_b, key_b)
  (d_loss, d_terms), d_grads = jax.value_and_grad(
    lambda p: discriminator_loss(model, p, a, b, pooled_a, pooled_b), has_aux=True
  )(state.d_params)
  d_updates, d_opt_state = model.d_tx.update(d_grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  new_state = state.replace(
    step=state.step + 1,
    g_params=g_params,
    d_params=d_params,
    g_opt_state=g_opt_state,
    d_opt_state=d_opt_state,
    history={'a': history_a, 'b': history_b},
  )
  metrics = {
    'g_loss': g_loss,
    **g_terms,
    'd_loss': d_loss,
    **d_terms,
    'lr': jnp.asarray(model.schedule(state.step), jnp.float32),
  }
  return new_state, metrics


def make_train_step(model: CycleGAN, *, mesh: Mesh | None = None, donate: bool = True):
  """`train_step` bound to `model` and jitted: `step(state, images_a, images_b) -> (state,
  metrics)`, the state donated unless `donate=False`.

  With a `mesh` (`gan_jax.core.sharding.make_mesh`) the step is data-parallel: the batches are
  split along their first axis over the mesh's 'data' axis (`batch_sharding(mesh, 0)`), the
  state and metrics are replicated (place the state with `gan_jax.core.sharding.replicate`). The
  histories are global (one per discriminator, fed the whole batch in order), so the result
  does not depend on the device count beyond float rounding of the sums. The batch size must
  be a multiple of the device count.
  """
  fn = functools.partial(train_step, model)
  donate_argnums = (0,) if donate else ()
  if mesh is None:
    return jax.jit(fn, donate_argnums=donate_argnums)
  rep, split = replicated(mesh), batch_sharding(mesh, batch_axis=0)
  jitted = jax.jit(
    fn, in_shardings=(rep, split, split), out_shardings=(rep, rep), donate_argnums=donate_argnums
  )
  devices = mesh.devices.size

  def step(state, images_a, images_b):
    batch = np.shape(images_a)[0]
    if batch % devices:
      raise ValueError(
        f'CycleGAN batch size {batch} must be a multiple of the {devices} devices of the mesh.'
      )
    return jitted(state, images_a, images_b)

  return step


@functools.lru_cache(maxsize=16)
def _translator(model: CycleGAN, direction: str):
  """The jitted `model.translate` of one direction (compiled once per model and shape)."""
  return jax.jit(lambda params, x: model.translate(params, direction, x))


def translate_batches(
  model: CycleGAN,
  state: CycleGANState,
  images: np.ndarray,
  direction: str,
  *,
  batch_size: int = 256,
) -> np.ndarray:
  """G ('a2b') or F ('b2a') over `images` float32 `[N, S, S, C_in]` in [-1, 1], in batches:
  float32 numpy `[N, S, S, C_out]` in [-1, 1].

  Raises:
    ValueError: for an unknown direction or images of the wrong shape.
  """
  if direction not in GENERATORS:
    raise ValueError(f'direction {direction!r} must be one of {list(GENERATORS)}.')
  s, c_in, c_out = model.image_size, model.channels(direction[0]), model.channels(direction[-1])
  shape = tuple(np.shape(images))
  if len(shape) != 4 or shape[1:] != (s, s, c_in):
    raise ValueError(f'CycleGAN {direction} inputs must be [N, {s}, {s}, {c_in}], got {shape}.')
  run = _translator(model, direction)
  outs = [
    np.asarray(run(state.g_params, jnp.asarray(images[i : i + batch_size])))
    for i in range(0, shape[0], batch_size)
  ]
  return np.concatenate(outs, axis=0) if outs else np.zeros((0, s, s, c_out), np.float32)
