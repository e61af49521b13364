"""pix2pix training: the state pytree and a pure, jittable train step (Isola et al. 2017).

The objective (paper, eq. 4): G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G) with

    L_cGAN = E_{x,y}[log D(x, y)] + E_x[log(1 - D(x, G(x)))]     (conditional GAN, eq. 1)
    L_L1   = E_{x,y}[|| y - G(x) ||_1]                           (eq. 3)

and lambda = 100. D is a PatchGAN: its logits `[B, H', W']` are flattened to `[B * H' * W']`
and passed to the library's losses (`gan_jax.core.losses`), which average over the batch, i.e.
over all patches, as the paper's reference code does. 'non_saturating' (the paper: D's binary
cross-entropy, G maximising log D(x, G(x)), section 3.2) is the default; 'least_squares'
(Mao et al. 2017, used by CycleGAN) and the other registered losses work as well. As in the
paper (section 3.2), D's loss is halved "to slow down the rate at which D learns relative to
G". The L1 term is the mean absolute error per pixel and channel, on images in [-1, 1].

One step (`train_step`): G translates the batch once (train mode, dropout on); D takes one
Adam step on real pairs (x, y) against fake pairs (x, stop_gradient(G(x))), judging each in
its own forward pass (so BatchNorm normalises each with its own statistics, as the reference
code does); then G takes one Adam step on adv + lambda * L1, with D's updated parameters,
backpropagated through the same forward pass of G (`jax.vjp`: one forward, one backward).
D's BatchNorm running averages come from the D step only.
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

from gan_jax.core import losses as losses_lib
from gan_jax.models.unet import PatchGANDiscriminator, UNetGenerator, init_fast

PyTree = Any


@flax.struct.dataclass
class Pix2PixState:
  """Everything a pix2pix run updates, as one pytree of arrays.

  Attributes:
    step: int32 scalar, number of completed steps (one D update then one G update).
    rng: uint32 `[2]` PRNG key of the run; step k uses `fold_in(rng, k)` (dropout masks).
    g_params, g_batch_stats: U-Net parameters and BatchNorm running averages (pure dicts).
    d_params, d_batch_stats: PatchGAN parameters and BatchNorm running averages.
    g_opt_state, d_opt_state: Adam states of G and D.
  """

  step: jax.Array
  rng: jax.Array
  g_params: PyTree
  g_batch_stats: PyTree
  d_params: PyTree
  d_batch_stats: PyTree
  g_opt_state: PyTree
  d_opt_state: PyTree


@dataclasses.dataclass(frozen=True, eq=False)
class Pix2Pix:
  """The static half: graph definitions, optimizers, the loss and lambda.

  Attributes:
    g_graphdef, d_graphdef: NNX graph definitions of the U-Net and the PatchGAN.
    g_tx, d_tx: Optax transformations (Adam).
    loss: name of the adversarial loss in `gan_jax.core.losses.LOSSES`.
    l1_weight: lambda, the weight of the L1 term (100 in the paper).
    image_size, in_channels, out_channels: shapes of inputs `[B, S, S, in]` and outputs
      `[B, S, S, out]`.
    b1, b2: Adam's betas (`with_hparams` rebuilds Adam with them).
  """

  g_graphdef: nnx.GraphDef
  d_graphdef: nnx.GraphDef
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  loss: str
  l1_weight: float
  image_size: int
  in_channels: int
  out_channels: int
  b1: float = 0.5
  b2: float = 0.999

  def with_hparams(self, *, lr: Any = None, l1_weight: Any = None) -> Pix2Pix:
    """The same model with Adam's learning rate and/or lambda replaced, by floats or by
    traced float32 scalars (each replica of one compiled step its own:
    `gan_jax.translation.replicas`). The optimizer state keeps its structure, and values
    equal to the model's give the same step."""
    out = self
    if lr is not None:
      out = dataclasses.replace(
        out,
        g_tx=optax.adam(lr, b1=self.b1, b2=self.b2),
        d_tx=optax.adam(lr, b1=self.b1, b2=self.b2),
      )
    if l1_weight is not None:
      out = dataclasses.replace(out, l1_weight=l1_weight)
    return out

  def translate(
    self,
    params: PyTree,
    batch_stats: PyTree,
    inputs: jax.Array,
    *,
    train: bool,
    dropout_rng: jax.Array | None = None,
  ) -> tuple[jax.Array, PyTree]:
    """G as a pure function: (outputs float32 `[B, S, S, out]` in [-1, 1], new batch
    stats). `train` selects batch statistics (True) or running averages; dropout applies
    when `dropout_rng` is given."""
    model = nnx.merge(self.g_graphdef, params, batch_stats, copy=True)
    out = model(inputs, train=train, dropout_rng=dropout_rng).astype(jnp.float32)
    _, _, new_stats = nnx.split(model, nnx.Param, ...)
    return out, nnx.to_pure_dict(new_stats)

  def discriminate(
    self,
    params: PyTree,
    batch_stats: PyTree,
    inputs: jax.Array,
    outputs: jax.Array,
    *,
    train: bool,
  ) -> tuple[jax.Array, PyTree]:
    """D as a pure function: (patch logits float32 `[B, H', W']`, new batch stats)."""
    model = nnx.merge(self.d_graphdef, params, batch_stats, copy=True)
    logits = model(inputs, outputs, train=train).astype(jnp.float32)
    _, _, new_stats = nnx.split(model, nnx.Param, ...)
    return logits, nnx.to_pure_dict(new_stats)


def create_pix2pix(
  image_size: int,
  in_channels: int,
  out_channels: int,
  *,
  seed: int = 0,
  g_width: int = 64,
  g_max_width: int = 512,
  d_width: int = 64,
  d_max_width: int = 512,
  patch_layers: int | None = None,
  dropout: float = 0.5,
  dropout_layers: int = 3,
  loss: str = 'non_saturating',
  l1_weight: float = 100.0,
  lr: float = 2e-4,
  b1: float = 0.5,
  b2: float = 0.999,
) -> tuple[Pix2Pix, Pix2PixState]:
  """Builds the U-Net, the PatchGAN and Adam (paper, section 3.3: lr 2e-4, b1 0.5), and the
  step-0 state, weights N(0, 0.02) (`gan_jax.models.unet.init_fast`). Same arguments and
  seed give bitwise-identical states.

  Raises:
    ValueError: for an unknown loss, image_size < 4, or patch_layers < 0.
  """
  losses_lib.get_loss(loss)  # validates the name
  key_g, key_d, run_rng = jax.random.split(jax.random.PRNGKey(seed), 3)
  g_graphdef, g_params, g_stats = init_fast(
    lambda: UNetGenerator(
      image_size,
      in_channels,
      out_channels,
      width=g_width,
      max_width=g_max_width,
      dropout=dropout,
      dropout_layers=dropout_layers,
      rngs=nnx.Rngs(0),
    ),
    key_g,
  )
  d_graphdef, d_params, d_stats = init_fast(
    lambda: PatchGANDiscriminator(
      image_size,
      in_channels,
      out_channels,
      width=d_width,
      max_width=d_max_width,
      patch_layers=patch_layers,
      rngs=nnx.Rngs(0),
    ),
    key_d,
  )
  g_tx = optax.adam(lr, b1=b1, b2=b2)
  d_tx = optax.adam(lr, b1=b1, b2=b2)
  model = Pix2Pix(
    g_graphdef=g_graphdef,
    d_graphdef=d_graphdef,
    g_tx=g_tx,
    d_tx=d_tx,
    loss=loss,
    l1_weight=float(l1_weight),
    image_size=image_size,
    in_channels=in_channels,
    out_channels=out_channels,
    b1=b1,
    b2=b2,
  )
  state = Pix2PixState(
    step=jnp.zeros((), jnp.int32),
    rng=run_rng,
    g_params=g_params,
    g_batch_stats=g_stats,
    d_params=d_params,
    d_batch_stats=d_stats,
    g_opt_state=g_tx.init(g_params),
    d_opt_state=d_tx.init(d_params),
  )
  return model, state


def check_batch(model: Pix2Pix, inputs: Any, targets: Any) -> None:
  """Raises a one-line ValueError unless inputs are `[B, S, S, in]` and targets `[B, S, S,
  out]` with the model's S, in and out."""
  s = model.image_size
  want = {'inputs': (s, s, model.in_channels), 'targets': (s, s, model.out_channels)}
  for name, x in (('inputs', inputs), ('targets', targets)):
    shape = tuple(np.shape(x))
    if len(shape) != 4 or shape[1:] != want[name]:
      raise ValueError(f'pix2pix {name} must be [B, {s}, {s}, {want[name][2]}], got {shape}.')
  if np.shape(inputs)[0] != np.shape(targets)[0]:
    raise ValueError(
      f'pix2pix got {np.shape(inputs)[0]} inputs but {np.shape(targets)[0]} targets.'
    )


def train_step(
  model: Pix2Pix, state: Pix2PixState, inputs: jax.Array, targets: jax.Array
) -> tuple[Pix2PixState, dict[str, jax.Array]]:
  """One pix2pix step: one D update, then one G update (see the module docstring).

  Args:
    model: the static `Pix2Pix`.
    state: the current `Pix2PixState`.
    inputs: float32 `[B, S, S, in_channels]` in [-1, 1], the condition x.
    targets: float32 `[B, S, S, out_channels]` in [-1, 1], the paired y.

  Returns:
    (new state, metrics): float32 scalars 'd_loss' (halved, as optimised), 'g_adv',
    'g_l1' (mean |G(x) - y|), 'g_loss' (g_adv + lambda g_l1), 'd_real' and 'd_fake' (mean
    patch logits on real and fake pairs, before D's update).

  Raises:
    ValueError: (at trace time) for inputs or targets of the wrong shape.
  """
  check_batch(model, inputs, targets)
  gan_loss = losses_lib.get_loss(model.loss)
  rng = jax.random.fold_in(state.rng, state.step)
  inputs = inputs.astype(jnp.float32)
  targets = targets.astype(jnp.float32)

  def generate(g_params):
    return model.translate(g_params, state.g_batch_stats, inputs, train=True, dropout_rng=rng)

  fakes, g_vjp, g_stats = jax.vjp(generate, state.g_params, has_aux=True)

  def d_objective(d_params):
    real_logits, stats = model.discriminate(
      d_params, state.d_batch_stats, inputs, targets, train=True
    )
    fake_logits, stats = model.discriminate(
      d_params, stats, inputs, jax.lax.stop_gradient(fakes), train=True
    )
    loss = 0.5 * gan_loss.d(real_logits.reshape(-1), fake_logits.reshape(-1))
    return loss, (stats, real_logits, fake_logits)

  (d_loss, (d_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
    d_objective, has_aux=True
  )(state.d_params)
  d_updates, d_opt_state = model.d_tx.update(d_grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  def g_objective(fake_images):
    logits, _ = model.discriminate(d_params, d_stats, inputs, fake_images, train=True)
    real = None
    if gan_loss.g_needs_real:
      real, _ = model.discriminate(d_params, d_stats, inputs, targets, train=True)
      real = real.reshape(-1)
    adv = gan_loss.g(logits.reshape(-1), real)
    l1 = jnp.mean(jnp.abs(fake_images - targets))
    return adv + model.l1_weight * l1, (adv, l1)

  (g_loss, (g_adv, g_l1)), fake_grads = jax.value_and_grad(g_objective, has_aux=True)(fakes)
  (g_grads,) = g_vjp(fake_grads)
  g_updates, g_opt_state = model.g_tx.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)

  new_state = state.replace(
    step=state.step + 1,
    g_params=g_params,
    g_batch_stats=g_stats,
    d_params=d_params,
    d_batch_stats=d_stats,
    g_opt_state=g_opt_state,
    d_opt_state=d_opt_state,
  )
  metrics = {
    'd_loss': d_loss,
    'g_adv': g_adv,
    'g_l1': g_l1,
    'g_loss': g_loss,
    'd_real': jnp.mean(real_logits),
    'd_fake': jnp.mean(fake_logits),
  }
  return new_state, metrics


def make_train_step(model: Pix2Pix, donate: bool = True):
  """`train_step` bound to `model` and jitted (the state donated unless `donate=False`):
  `step(state, inputs, targets) -> (state, metrics)`."""
  fn = functools.partial(train_step, model)
  return jax.jit(fn, donate_argnums=(0,) if donate else ())


def translate_batches(
  model: Pix2Pix,
  state: Pix2PixState,
  inputs: np.ndarray,
  *,
  batch_size: int = 256,
  dropout_rng: jax.Array | None = None,
) -> np.ndarray:
  """G in eval mode (BatchNorm running averages; dropout only with `dropout_rng`) over
  `inputs` float32 `[N, S, S, in]` in [-1, 1], in batches: float32 numpy `[N, S, S, out]`.

  Raises:
    ValueError: for inputs of the wrong shape.
  """
  s = model.image_size
  shape = tuple(np.shape(inputs))
  if len(shape) != 4 or shape[1:] != (s, s, model.in_channels):
    raise ValueError(f'pix2pix inputs must be [N, {s}, {s}, {model.in_channels}], got {shape}.')

  @jax.jit
  def run(params, stats, x, key):
    return model.translate(params, stats, x, train=False, dropout_rng=key)[0]

  outs = []
  for i in range(0, shape[0], batch_size):
    key = None if dropout_rng is None else jax.random.fold_in(dropout_rng, i)
    outs.append(
      np.asarray(
        run(state.g_params, state.g_batch_stats, jnp.asarray(inputs[i : i + batch_size]), key)
      )
    )
  return (
    np.concatenate(outs, axis=0) if outs else np.zeros((0, s, s, model.out_channels), np.float32)
  )
