"""PyTorch reference of gan_jax's train step, for `benchmarks/throughput.py`.

The same models, losses, optimizer and generator EMA as `gan_jax.core.train_step.make_train_step`
with n_critic = 1, written in PyTorch eager (NCHW, PyTorch's native layout):

  * models (`build_models`): 'mlp', 'dcgan28', 'dcgan' and 'sngan32' of `gan_jax.models`,
    layer for layer: the same layer shapes, biases, BatchNorm placement (BatchNorm1d over the
    projected z where gan_jax normalises the flat dense output), activations, nearest
    upsampling / 2x2 average pooling, and for 'sngan32' spectral normalization of every layer
    of D (`torch.nn.utils.parametrizations.spectral_norm`, one power iteration per training
    call, u and v constants for the gradient, as `gan_jax.models.SpectralNorm`). Stride-2
    4x4 'SAME' (transposed) convolutions are padding 1. The initialisers are gan_jax's too
    (N(0, 0.02) for the DCGANs, LeCun normal for the MLP, Glorot uniform with gain sqrt(2)
    in the residual branches for SNGAN; zero biases). Parameter counts equal gan_jax's
    (`num_params`; tests/test_bench_torch_reference.py checks it);
  * losses: 'non_saturating' (D: softplus(-real) + softplus(fake), G: softplus(-fake)) and
    'hinge' (D: relu(1 - real) + relu(1 + fake), G: -fake), means over the batch;
  * one step (`TorchGAN.step`): draw z, G(z) in training mode without gradient (G's
    BatchNorm uses batch statistics; its running averages are left unchanged, as gan_jax
    discards them here), D on the real batch and on the fakes (two passes, each advancing the
    statistics as gan_jax's), the D loss, backward, Adam step on D; then a fresh z, G(z), D on
    the fakes (training mode, D's running statistics and power iterations left as they were,
    D's parameters without gradient), the G loss, backward, Adam step on G, and the EMA
    `ema <- ema + (1 - decay) (g - ema)` (`torch._foreach_lerp_`). Like gan_jax's step it
    also computes the metrics: the mean sigmoid (or raw) D outputs and the global gradient
    norms of D and G;
  * Adam (`torch.optim.Adam`, eps 1e-8 as optax) with the config's learning rates and betas;
    the fused CPU kernel by default (`adam='fused'`), or 'foreach' / 'for-loop'.

Not replicated (no effect on the work per step): BatchNorm running variances are unbiased in
PyTorch and biased in Flax; PyTorch's spectral norm runs 15 power iterations once at
construction; random numbers differ (torch.Generator vs JAX keys).

The benchmark drives it as a worker process (`--worker`), so that PyTorch never shares a
process (threads, allocator) with JAX: one JSON object per line on stdin, one reply per line
on stdout:

  {"cmd": "setup", "spec": {...}, "batch_size": 64, "seed": 0, "threads": 2,
   "adam": "fused", "compile": false, "device": "cpu"}
                                                -> {"num_params": ..., "setup_s": ...}
  {"cmd": "warmup", "n": 3}                     -> {"first_step_s": ..., "warmup_s": ...}
  {"cmd": "run", "n": 5}                        -> {"times": [seconds per step, ...]}
  {"cmd": "exit"}                               -> {"final_metrics": {...}, "peak_rss_mib": ...,
                                                    "device_peak_bytes_allocated": ...}

`device` (default "cpu") may name a CUDA device ("cuda"): the models, Adam, EMA, latents and
the batch then live there, cuDNN's autotuner is on (`cudnn.benchmark`, as XLA autotunes), and
each timed step ends with `torch.cuda.synchronize()`.

`spec` is `throughput.torch_spec(config)`: model name, latent_dim, widths, MLP hidden,
image shape (H, W, C), loss, g_lr, d_lr, b1, b2, ema_decay. This module imports only torch
and numpy (never jax or gan_jax).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import sys
import time
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

LOSSES = ('non_saturating', 'hinge')
ADAM_IMPLS = ('fused', 'foreach', 'for-loop')


# --- initialisers (gan_jax's) -----------------------------------------------------------------


def _init_normal(module: nn.Module, std: float = 0.02) -> nn.Module:
  nn.init.normal_(module.weight, 0.0, std)
  if module.bias is not None:
    nn.init.zeros_(module.bias)
  return module


def _init_lecun(module: nn.Linear) -> nn.Linear:
  """Flax's default dense init: LeCun normal, truncated at 2 std (std corrected to 1/fan_in)."""
  std = math.sqrt(1.0 / module.in_features) / 0.87962566103423978
  nn.init.trunc_normal_(module.weight, 0.0, std, -2 * std, 2 * std)
  nn.init.zeros_(module.bias)
  return module


def _init_glorot(module: nn.Module, gain: float = 1.0) -> nn.Module:
  nn.init.xavier_uniform_(module.weight, gain)
  if module.bias is not None:
    nn.init.zeros_(module.bias)
  return module


def _sn(module: nn.Module) -> nn.Module:
  return parametrizations.spectral_norm(module, n_power_iterations=1, eps=1e-12)


# --- MLP ----------------------------------------------------------------------------------------


class MLPGenerator(nn.Module):
  """gan_jax.models.MLPGenerator: z -> hidden (ReLU) -> H*W*C, tanh."""

  def __init__(self, image_shape, latent_dim: int, hidden: tuple[int, ...]):
    super().__init__()
    h, w, c = image_shape
    self.out_shape = (c, h, w)
    dims = (latent_dim, *hidden)
    self.hidden = nn.ModuleList(_init_lecun(nn.Linear(a, b)) for a, b in zip(dims[:-1], dims[1:]))
    self.out = _init_lecun(nn.Linear(dims[-1], h * w * c))

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = z
    for layer in self.hidden:
      x = F.relu(layer(x))
    return torch.tanh(self.out(x)).view(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
  """gan_jax.models.MLPDiscriminator: H*W*C -> hidden (LeakyReLU 0.2) -> 1 logit."""

  def __init__(self, image_shape, hidden: tuple[int, ...]):
    super().__init__()
    dims = (math.prod(image_shape), *hidden)
    self.hidden = nn.ModuleList(_init_lecun(nn.Linear(a, b)) for a, b in zip(dims[:-1], dims[1:]))
    self.out = _init_lecun(nn.Linear(dims[-1], 1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1)
    for layer in self.hidden:
      x = F.leaky_relu(layer(x), 0.2)
    return self.out(x)[:, 0]


# --- DCGAN --------------------------------------------------------------------------------------


def _bn1d(features: int) -> nn.BatchNorm1d:
  return nn.BatchNorm1d(features, eps=1e-5, momentum=0.1)


def _bn2d(features: int) -> nn.BatchNorm2d:
  return nn.BatchNorm2d(features, eps=1e-5, momentum=0.1)


def _up(cin: int, cout: int, bias: bool) -> nn.ConvTranspose2d:
  """Stride-2 4x4 transposed convolution doubling H and W (Flax 'SAME')."""
  return _init_normal(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias))


def _down(cin: int, cout: int, bias: bool) -> nn.Conv2d:
  """Stride-2 4x4 convolution halving H and W (Flax 'SAME')."""
  return _init_normal(nn.Conv2d(cin, cout, 4, 2, 1, bias=bias))


class DCGAN28Generator(nn.Module):
  """gan_jax.models.DCGAN28Generator: dense 7x7x2w, BN, ReLU, ConvT w, BN, ReLU, ConvT C, tanh."""

  def __init__(self, image_shape, latent_dim: int, width: int):
    super().__init__()
    self.width = width
    self.fc = _init_normal(nn.Linear(latent_dim, 7 * 7 * 2 * width, bias=False))
    self.bn0 = _bn1d(7 * 7 * 2 * width)
    self.up1 = _up(2 * width, width, bias=False)
    self.bn1 = _bn2d(width)
    self.up2 = _up(width, image_shape[2], bias=True)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.bn0(self.fc(z))).view(z.shape[0], 2 * self.width, 7, 7)
    x = F.relu(self.bn1(self.up1(x)))
    return torch.tanh(self.up2(x))


class DCGAN28Discriminator(nn.Module):
  """gan_jax.models.DCGAN28Discriminator: Conv w s2, Conv 2w s2 (LeakyReLU 0.2), dense 1."""

  def __init__(self, image_shape, width: int):
    super().__init__()
    self.conv1 = _down(image_shape[2], width, bias=True)
    self.conv2 = _down(width, 2 * width, bias=True)
    self.fc = _init_normal(nn.Linear(7 * 7 * 2 * width, 1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = F.leaky_relu(self.conv1(x), 0.2)
    x = F.leaky_relu(self.conv2(x), 0.2)
    return self.fc(x.flatten(1))[:, 0]


def _levels(resolution: int) -> int:
  n = int(round(math.log2(resolution / 4))) if resolution >= 8 else 0
  if resolution < 8 or 4 * 2**n != resolution:
    raise ValueError(f'dcgan needs a power-of-two image size >= 8, got {resolution}.')
  return n


class DCGANGenerator(nn.Module):
  """gan_jax.models.DCGANGenerator: dense 4x4x(w 2^(n-1)), BN, ReLU, (ConvT, BN, ReLU) x (n-1),
  ConvT C, tanh."""

  def __init__(self, image_shape, latent_dim: int, width: int):
    super().__init__()
    n = _levels(image_shape[0])
    self.c0 = width * 2 ** (n - 1)
    self.fc = _init_normal(nn.Linear(latent_dim, 4 * 4 * self.c0, bias=False))
    self.bn0 = _bn1d(4 * 4 * self.c0)
    layers: list[nn.Module] = []
    c = self.c0
    for _ in range(n - 1):
      layers += [_up(c, c // 2, bias=False), _bn2d(c // 2), nn.ReLU()]
      c //= 2
    self.ups = nn.Sequential(*layers)
    self.out = _up(c, image_shape[2], bias=True)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.bn0(self.fc(z))).view(z.shape[0], self.c0, 4, 4)
    return torch.tanh(self.out(self.ups(x)))


class DCGANDiscriminator(nn.Module):
  """gan_jax.models.DCGANDiscriminator (no spectral norm, no packing, no minibatch stddev):
  Conv w s2, LeakyReLU, (Conv 2c s2 without bias, BN, LeakyReLU) x (n-1), dense 1."""

  def __init__(self, image_shape, width: int):
    super().__init__()
    n = _levels(image_shape[0])
    layers: list[nn.Module] = [_down(image_shape[2], width, bias=True), nn.LeakyReLU(0.2)]
    c = width
    for _ in range(n - 1):
      layers += [_down(c, 2 * c, bias=False), _bn2d(2 * c), nn.LeakyReLU(0.2)]
      c *= 2
    self.convs = nn.Sequential(*layers)
    self.fc = _init_normal(nn.Linear(4 * 4 * c, 1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.fc(self.convs(x).flatten(1))[:, 0]


# --- SNGAN --------------------------------------------------------------------------------------


def _conv3(cin: int, cout: int, gain: float) -> nn.Conv2d:
  return _init_glorot(nn.Conv2d(cin, cout, 3, 1, 1), gain)


def _conv1(cin: int, cout: int) -> nn.Conv2d:
  return _init_glorot(nn.Conv2d(cin, cout, 1, 1, 0), 1.0)


def _upsample(x: torch.Tensor) -> torch.Tensor:
  return F.interpolate(x, scale_factor=2, mode='nearest')


class GBlock(nn.Module):
  """gan_jax.models.sngan.GBlock: BN, ReLU, up, conv3, BN, ReLU, conv3 + up, conv1."""

  def __init__(self, cin: int, cout: int):
    super().__init__()
    self.bn1 = _bn2d(cin)
    self.conv1 = _conv3(cin, cout, math.sqrt(2))
    self.bn2 = _bn2d(cout)
    self.conv2 = _conv3(cout, cout, math.sqrt(2))
    self.shortcut = _conv1(cin, cout)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h = self.conv1(_upsample(F.relu(self.bn1(x))))
    h = self.conv2(F.relu(self.bn2(h)))
    return h + self.shortcut(_upsample(x))


class DBlock(nn.Module):
  """gan_jax.models.sngan.DBlock, every convolution spectrally normalised."""

  def __init__(self, cin: int, cout: int, *, downsample: bool, optimized: bool = False):
    super().__init__()
    self.downsample = downsample or optimized
    self.optimized = optimized
    self.conv1 = _sn(_conv3(cin, cout, math.sqrt(2)))
    self.conv2 = _sn(_conv3(cout, cout, math.sqrt(2)))
    learnable = optimized or downsample or cin != cout
    self.shortcut = _sn(_conv1(cin, cout)) if learnable else None

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h = x if self.optimized else F.relu(x)
    h = self.conv2(F.relu(self.conv1(h)))
    if self.downsample:
      h = F.avg_pool2d(h, 2)
    s = x
    if self.optimized:
      s = self.shortcut(F.avg_pool2d(s, 2))
    elif self.shortcut is not None:
      s = self.shortcut(s)
      if self.downsample:
        s = F.avg_pool2d(s, 2)
    return h + s


class SNGANGenerator(nn.Module):
  """gan_jax.models.SNGANGenerator: dense 4x4xw, 3 GBlocks, BN, ReLU, conv3 C, tanh."""

  def __init__(self, image_shape, latent_dim: int, width: int):
    super().__init__()
    self.width = width
    self.fc = _init_glorot(nn.Linear(latent_dim, 4 * 4 * width))
    self.blocks = nn.Sequential(*(GBlock(width, width) for _ in range(3)))
    self.bn = _bn2d(width)
    self.out = _conv3(width, image_shape[2], 1.0)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = self.blocks(self.fc(z).view(z.shape[0], self.width, 4, 4))
    return torch.tanh(self.out(F.relu(self.bn(x))))


class SNGANDiscriminator(nn.Module):
  """gan_jax.models.SNGANDiscriminator: 4 SN ResBlocks, ReLU, sum pooling, SN dense 1."""

  def __init__(self, image_shape, width: int):
    super().__init__()
    self.blocks = nn.Sequential(
      DBlock(image_shape[2], width, downsample=True, optimized=True),
      DBlock(width, width, downsample=True),
      DBlock(width, width, downsample=False),
      DBlock(width, width, downsample=False),
    )
    self.fc = _sn(_init_glorot(nn.Linear(width, 1)))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.blocks(x)).sum(dim=(2, 3))
    return self.fc(x)[:, 0]


# --- models, losses, the step -------------------------------------------------------------------


def build_models(spec: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
  """(G, D) for a spec (`throughput.torch_spec`), on the CPU, in training mode."""
  name, shape = spec['name'], tuple(spec['image_shape'])
  for field, off in (('spectral_norm', False), ('pack', 1), ('minibatch_std', 0)):
    if spec.get(field, off) != off and name != 'sngan32':
      raise ValueError(f'model.{field}={spec[field]!r} is not replicated in torch_reference.')
  if name == 'mlp':
    hidden = tuple(spec['hidden'])
    return MLPGenerator(shape, spec['latent_dim'], hidden), MLPDiscriminator(shape, hidden)
  if name == 'dcgan28':
    return (
      DCGAN28Generator(shape, spec['latent_dim'], spec['g_width']),
      DCGAN28Discriminator(shape, spec['d_width']),
    )
  if name == 'dcgan':
    return (
      DCGANGenerator(shape, spec['latent_dim'], spec['g_width']),
      DCGANDiscriminator(shape, spec['d_width']),
    )
  if name == 'sngan32':
    return (
      SNGANGenerator(shape, spec['latent_dim'], spec['g_width']),
      SNGANDiscriminator(shape, spec['d_width']),
    )
  raise ValueError(f'model {name!r} has no PyTorch reference; choose mlp, dcgan28, dcgan, sngan32.')


def num_params(module: nn.Module) -> int:
  """Trainable parameters (a spectrally normalised weight counts once, as `original`)."""
  return sum(p.numel() for p in module.parameters())


def d_loss_fn(loss: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
  if loss == 'non_saturating':
    return F.softplus(-real).mean() + F.softplus(fake).mean()
  if loss == 'hinge':
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
  raise ValueError(f'loss {loss!r}: choose one of {LOSSES}.')


def g_loss_fn(loss: str, fake: torch.Tensor) -> torch.Tensor:
  if loss == 'non_saturating':
    return F.softplus(-fake).mean()
  if loss == 'hinge':
    return -fake.mean()
  raise ValueError(f'loss {loss!r}: choose one of {LOSSES}.')


@contextlib.contextmanager
def frozen_state(module: nn.Module) -> Iterator[None]:
  """Runs `module` in training mode but leaves its state as it was, as gan_jax discards the
  statistics of these passes: BatchNorm with momentum 0 (batch statistics used, running
  averages unchanged) and spectral-norm power-iteration vectors restored afterwards."""
  bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
  momenta = [bn.momentum for bn in bns]
  tracked = [bn.num_batches_tracked.clone() for bn in bns]
  sn_buffers = [
    (b, b.clone()) for name, b in module.named_buffers() if name.endswith(('._u', '._v'))
  ]
  for bn in bns:
    bn.momentum = 0.0
  try:
    yield
  finally:
    for bn, momentum, count in zip(bns, momenta, tracked):
      bn.momentum = momentum
      bn.num_batches_tracked.copy_(count)
    with torch.no_grad():
      for buffer, saved in sn_buffers:
        buffer.copy_(saved)


def _adam(params, spec: dict[str, Any], lr: float, impl: str) -> torch.optim.Adam:
  if impl not in ADAM_IMPLS:
    raise ValueError(f'adam={impl!r}: choose one of {ADAM_IMPLS}.')
  kwargs = {'fused': True} if impl == 'fused' else {'foreach': impl == 'foreach'}
  return torch.optim.Adam(params, lr=lr, betas=(spec['b1'], spec['b2']), eps=1e-8, **kwargs)


def _grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
  return torch.linalg.vector_norm(torch.stack(torch._foreach_norm([p.grad for p in params])))


class TorchGAN:
  """G, D, their Adams and G's EMA; `step(real)` is one D update then one G update.

  Args:
    spec: `throughput.torch_spec(config)`.
    seed: seeds parameter initialisation and the latents.
    adam: 'fused' (default), 'foreach' or 'for-loop' Adam.
    compile: wrap G and D in `torch.compile` (inductor; needs a C++ compiler on a CPU, Triton
      on a GPU).
    device: 'cpu' (default) or a CUDA device such as 'cuda': where the models, optimizer
      state, EMA, latents and the real batch live.
  """

  def __init__(
    self,
    spec: dict[str, Any],
    seed: int = 0,
    adam: str = 'fused',
    compile=False,
    device: str = 'cpu',
  ):
    if spec['loss'] not in LOSSES:
      raise ValueError(f"loss {spec['loss']!r} has no PyTorch reference; choose one of {LOSSES}.")
    torch.manual_seed(seed)
    self.spec = spec
    self.loss = spec['loss']
    self.latent_dim = spec['latent_dim']
    self.ema_decay = float(spec['ema_decay'])
    self.device = torch.device(device)
    self.G, self.D = (m.to(self.device) for m in build_models(spec))
    self.G.train()
    self.D.train()
    self.g_params = list(self.G.parameters())
    self.d_params = list(self.D.parameters())
    self.num_params = {'g': num_params(self.G), 'd': num_params(self.D)}
    self.ema = [p.detach().clone() for p in self.g_params]
    self.opt_g = _adam(self.g_params, spec, spec['g_lr'], adam)
    self.opt_d = _adam(self.d_params, spec, spec['d_lr'], adam)
    self.gen_fn, self.disc_fn = self.G, self.D
    if compile:
      self.gen_fn, self.disc_fn = torch.compile(self.G), torch.compile(self.D)
    self.rng = torch.Generator(device=self.device).manual_seed(seed + 1)
    self.metrics: dict[str, torch.Tensor] = {}

  def step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
    """One train step on a real batch float32 [B, C, H, W]; returns the metric tensors."""
    b = real.shape[0]
    # Discriminator update on G's samples (no gradient to G).
    z = torch.randn(b, self.latent_dim, generator=self.rng, device=self.device)
    with torch.no_grad(), frozen_state(self.G):
      fake = self.gen_fn(z)
    real_logits = self.disc_fn(real)
    fake_logits = self.disc_fn(fake)
    d_loss = d_loss_fn(self.loss, real_logits, fake_logits)
    self.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    d_grad_norm = _grad_norm(self.d_params)
    self.opt_d.step()
    # Generator update on fresh latents; no gradient to D's parameters, D's state unchanged.
    z = torch.randn(b, self.latent_dim, generator=self.rng, device=self.device)
    self.D.requires_grad_(False)
    try:
      with frozen_state(self.D):
        g_fake_logits = self.disc_fn(self.gen_fn(z))
        g_loss = g_loss_fn(self.loss, g_fake_logits)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
    finally:
      self.D.requires_grad_(True)
    g_grad_norm = _grad_norm(self.g_params)
    self.opt_g.step()
    with torch.no_grad():
      torch._foreach_lerp_(self.ema, [p.detach() for p in self.g_params], 1.0 - self.ema_decay)
      out = torch.sigmoid if self.loss == 'non_saturating' else (lambda x: x)
      self.metrics = {
        'd_loss': d_loss.detach(),
        'g_loss': g_loss.detach(),
        'd_real': out(real_logits.detach()).mean(),
        'd_fake': out(fake_logits.detach()).mean(),
        'd_grad_norm': d_grad_norm,
        'g_grad_norm': g_grad_norm,
      }
    return self.metrics


def fixed_batch(
  spec: dict[str, Any], batch_size: int, seed: int, device: str = 'cpu'
) -> torch.Tensor:
  """float32 [B, C, H, W] uniform in [-1, 1] (one fixed batch, as the JAX side), drawn on
  the CPU and moved to `device`."""
  h, w, c = spec['image_shape']
  gen = torch.Generator().manual_seed(seed)
  return (torch.rand(batch_size, c, h, w, generator=gen) * 2.0 - 1.0).to(device)


def peak_rss_mib() -> float:
  """Peak resident set size of this process's address space so far, MiB.

  Linux: VmHWM of /proc/self/status. Not `ru_maxrss`: Linux carries the parent's peak RSS
  into a child across fork + exec, so a worker started by a large process would report at
  least the parent's peak. Elsewhere: ru_maxrss (bytes on macOS, KiB on other systems).
  """
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss / 2**20 if sys.platform == 'darwin' else rss / 1024


# --- worker -------------------------------------------------------------------------------------


class Worker:
  """The state of a `--worker` process: one TorchGAN and its fixed batch."""

  def __init__(self) -> None:
    self.gan: TorchGAN | None = None
    self.real: torch.Tensor | None = None
    self.cuda = False

  def sync(self) -> None:
    """Waits for the device: CUDA runs asynchronously, so a step is timed up to here."""
    if self.cuda:
      torch.cuda.synchronize()

  def setup(self, msg: dict[str, Any]) -> dict[str, Any]:
    threads = int(msg.get('threads') or len(os.sched_getaffinity(0)))
    torch.set_num_threads(threads)
    device = msg.get('device') or 'cpu'
    self.cuda = device.startswith('cuda')
    if self.cuda:
      if not torch.cuda.is_available():
        raise RuntimeError(f'device {device!r} asked for, but torch.cuda.is_available() is False')
      # Fixed shapes: let cuDNN pick its fastest algorithms, as XLA autotunes at compile time.
      torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    self.gan = TorchGAN(
      msg['spec'],
      seed=msg.get('seed', 0),
      adam=msg.get('adam', 'fused'),
      compile=msg['compile'],
      device=device,
    )
    self.real = fixed_batch(msg['spec'], msg['batch_size'], msg.get('seed', 0), device)
    self.sync()
    return {
      'setup_s': time.perf_counter() - t0,
      'num_params': self.gan.num_params,
      'threads': torch.get_num_threads(),
      'interop_threads': torch.get_num_interop_threads(),
      'torch_version': torch.__version__,
      'mkldnn': torch.backends.mkldnn.is_available(),
      'peak_rss_mib': peak_rss_mib(),
      'device': device,
      'device_name': torch.cuda.get_device_name(self.gan.device) if self.cuda else None,
      'cudnn_benchmark': torch.backends.cudnn.benchmark if self.cuda else None,
      'cudnn_allow_tf32': torch.backends.cudnn.allow_tf32 if self.cuda else None,
      'matmul_allow_tf32': torch.backends.cuda.matmul.allow_tf32 if self.cuda else None,
    }

  def warmup(self, n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    self.gan.step(self.real)
    self.sync()
    t1 = time.perf_counter()
    for _ in range(n - 1):
      self.gan.step(self.real)
    self.sync()
    return {'first_step_s': t1 - t0, 'warmup_s': time.perf_counter() - t0}

  def run(self, n: int) -> dict[str, Any]:
    times = []
    for _ in range(n):
      start = time.perf_counter()
      self.gan.step(self.real)  # Eager CPU: the step has finished when it returns.
      self.sync()  # CUDA: wait for the step's kernels.
      times.append(time.perf_counter() - start)
    return {'times': times}

  def finish(self) -> dict[str, Any]:
    metrics = {k: float(v) for k, v in self.gan.metrics.items()} if self.gan else {}
    peak_device = torch.cuda.max_memory_allocated() if self.cuda else None
    return {
      'final_metrics': metrics,
      'peak_rss_mib': peak_rss_mib(),
      'device_peak_bytes_allocated': peak_device,
    }


def serve(stdin=sys.stdin, stdout=None) -> None:
  """The `--worker` loop: a JSON command per line in, a JSON reply per line out.

  The replies go to the original stdout; anything else printed to stdout (by Python or by C
  code, e.g. a compiler) goes to stderr, so it cannot break the protocol.
  """
  if stdout is None:
    sys.stdout.flush()
    stdout = os.fdopen(os.dup(1), 'w')
    os.dup2(2, 1)
  worker = Worker()
  for line in stdin:
    msg = json.loads(line)
    cmd = msg['cmd']
    try:
      if cmd == 'setup':
        reply = worker.setup(msg)
      elif cmd == 'warmup':
        reply = worker.warmup(int(msg['n']))
      elif cmd == 'run':
        reply = worker.run(int(msg['n']))
      elif cmd == 'exit':
        reply = worker.finish()
      else:
        raise ValueError(f'unknown command {cmd!r}')
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises.
      reply = {'error': f'{type(err).__name__}: {err}'}
    stdout.write(json.dumps(reply) + '\n')
    stdout.flush()
    if cmd == 'exit':
      return


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    '--worker', action='store_true', help='Serve JSON commands on stdin (see the docstring).'
  )
  args = parser.parse_args(argv)
  if not args.worker:
    parser.error('run benchmarks/throughput.py (it starts this file as --worker).')
  serve()


if __name__ == '__main__':
  main()
