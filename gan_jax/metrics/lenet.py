"""Pinned LeNet-style domain classifiers for MNIST and Fashion-MNIST ("FID (LeNet)").

The Inception network behind the standard FID (Heusel et al. 2017, "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium") was trained on ImageNet photos;
on 28x28 grayscale digits or clothes its features say little. The usual remedy is a small
classifier trained on the dataset itself (a LeNet, after LeCun et al. 1998, "Gradient-Based
Learning Applied to Document Recognition") whose penultimate activations replace Inception's
pool3 features. Such a "FID (LeNet)" is only comparable with other FIDs computed with the very
same network, which is why the weights are pinned: they ship inside the package, their SHA-256
is checked on every load, and the command that reproduces them is recorded in `WEIGHTS`.

Architecture (`LeNet`), 28x28x1 images in [-1, 1]:

    Conv 3x3x32 SAME + ReLU -> maxpool 2x2      28x28x1  -> 14x14x32
    Conv 3x3x64 SAME + ReLU -> maxpool 2x2      14x14x32 -> 7x7x64
    flatten -> Dense 128 + ReLU                 3136     -> 128   (the FEATURES)
    Dropout 0.5 (training only) -> Dense 10     128      -> 10    (the LOGITS)

No BatchNorm, so the network is stateless: evaluation is a pure function of the images.

Typical use::

    from gan_jax.metrics.lenet import load_lenet, predict

    net = load_lenet('mnist')                 # a FeatureNet, cached per dataset
    features, logits = net.apply(images)      # images float32 [B, 28, 28, 1] in [-1, 1]
    labels = predict(net, images)             # int32 [N], batched argmax of the logits
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.resources
import os

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gan_jax.metrics.features import FeatureNet

__all__ = ['FEATURE_DIM', 'LeNet', 'WEIGHTS', 'LeNetWeights', 'load_lenet', 'predict']

FEATURE_DIM = 128
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)


def _max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max pooling, stride 2: [B, H, W, C] -> [B, H // 2, W // 2, C] (H, W even).

  The same values as `nnx.max_pool(x, (2, 2), (2, 2))`, written as a reshape and a max so
  that its gradient is a cheap broadcast instead of XLA's select-and-scatter, which is slow
  on CPU (training steps were 1.7x slower with it).
  """
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class LeNet(nnx.Module):
  """LeNet-style CNN for 28x28x1 images (the architecture in the module docstring).

  Args:
    rngs: `nnx.Rngs` for the weight initialisation (Flax defaults: LeCun-normal kernels,
      zero biases). The model holds no random state: dropout takes an explicit key.

  Call: `model(images, dropout_key=None)` with images float32 `[B, 28, 28, 1]` in [-1, 1]
  returns `(features float32 [B, 128] >= 0, logits float32 [B, 10])`. Dropout (rate 0.5,
  after the features, so it never changes them) is applied only when `dropout_key`, a JAX
  PRNG key, is given, i.e. in training.
  """

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, (3, 3), padding='SAME', rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, (3, 3), padding='SAME', rngs=rngs)
    self.fc1 = nnx.Linear(7 * 7 * 64, FEATURE_DIM, rngs=rngs)
    self.dropout = nnx.Dropout(0.5)
    self.fc2 = nnx.Linear(FEATURE_DIM, NUM_CLASSES, rngs=rngs)

  def __call__(
    self, images: jax.Array, *, dropout_key: jax.Array | None = None
  ) -> tuple[jax.Array, jax.Array]:
    x = _max_pool_2x2(jax.nn.relu(self.conv1(images)))
    x = _max_pool_2x2(jax.nn.relu(self.conv2(x)))
    features = jax.nn.relu(self.fc1(x.reshape((x.shape[0], -1))))
    x = self.dropout(features, deterministic=dropout_key is None, rngs=dropout_key)
    return features, self.fc2(x)


@dataclasses.dataclass(frozen=True)
class LeNetWeights:
  """One shipped weights file.

  Attributes:
    file: File name in `gan_jax/metrics/weights/`.
    sha256: Hex SHA-256 of that file.
    test_accuracy: Accuracy on the full TFDS 'test' split (10,000 images), in [0, 1],
      measured when the file was written.
    command: The command (run in the repository root) that reproduces the file bit for bit
      on the same platform (XLA CPU; other backends give slightly different floats).
  """

  file: str
  sha256: str
  test_accuracy: float
  command: str


WEIGHTS: dict[str, LeNetWeights] = {
  'mnist': LeNetWeights(
    file='lenet_mnist.msgpack',
    sha256='6189f2a95d615832e04d44a2f64b7fab66b44416f8cef0c05d345222c778f7c9',
    test_accuracy=0.9941,
    command=(
      'python scripts/train_classifier.py --dataset mnist --epochs 12 --seed 0 '
      '--out gan_jax/metrics/weights/lenet_mnist.msgpack --data_dir ../shared/tfds'
    ),
  ),
  'fashion_mnist': LeNetWeights(
    file='lenet_fashion_mnist.msgpack',
    sha256='bddd70c994ab2da2f4b3fa20a4e5bcb52099c1d794a1005251a67109874be631',
    test_accuracy=0.9172,
    command=(
      'python scripts/train_classifier.py --dataset fashion_mnist --epochs 20 --seed 0 '
      '--out gan_jax/metrics/weights/lenet_fashion_mnist.msgpack --data_dir ../shared/tfds'
    ),
  ),
}


def params_to_bytes(model: LeNet) -> bytes:
  """Serialises the model's parameters: msgpack of a nested dict of numpy float32 arrays.

  The dict is `nnx.to_pure_dict(nnx.state(model, nnx.Param))`, e.g.
  `{'conv1': {'kernel': [3, 3, 1, 32], 'bias': [32]}, ..., 'fc2': {...}}`.
  """
  pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  pure = jax.tree.map(lambda a: np.asarray(a, np.float32), pure)
  return flax.serialization.msgpack_serialize(pure)


def _abstract_model() -> LeNet:
  """A LeNet whose parameters are shapes only (no initialisation compute)."""
  return nnx.eval_shape(lambda: LeNet(rngs=nnx.Rngs(0)))


def model_from_bytes(data: bytes) -> LeNet:
  """Builds a LeNet from `params_to_bytes` output.

  Raises:
    ValueError: The bytes are not msgpack, or the parameter names/shapes do not match `LeNet`.
  """
  try:
    pure = flax.serialization.msgpack_restore(data)
  except Exception as err:  # msgpack raises several unrelated exception types.
    raise ValueError(f'not a msgpack parameter file ({type(err).__name__}: {err})') from err
  model = _abstract_model()
  state = nnx.state(model, nnx.Param)
  expected = {
    jax.tree_util.keystr(path): tuple(leaf.shape)
    for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(state))
  }
  if not isinstance(pure, dict):
    raise ValueError(f'expected a dict of parameters, got {type(pure).__name__}')
  found = {
    jax.tree_util.keystr(path): tuple(np.shape(leaf))
    for path, leaf in jax.tree_util.tree_leaves_with_path(pure)
  }
  if found != expected:
    raise ValueError(f'parameters {found} do not match the LeNet architecture {expected}')
  nnx.replace_by_pure_dict(state, jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), pure))
  nnx.update(model, state)
  return model


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _make_apply(model: LeNet):
  """A jitted, eval-mode `apply(images) -> (features, logits)` closing over the parameters."""
  graphdef, params = nnx.split(model)

  @functools.partial(jax.jit, static_argnums=0)
  def forward(graphdef, params, images):
    net = nnx.merge(graphdef, params)
    return net(jnp.asarray(images, jnp.float32))

  def apply(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """images float32 [B, 28, 28, 1] in [-1, 1] -> (features [B, 128], logits [B, 10])."""
    return forward(graphdef, params, images)

  return apply


def _load_from_path(path: str | os.PathLike, dataset: str) -> FeatureNet:
  """Loads the weights file at `path` for `dataset`, verifying it against `WEIGHTS[dataset]`.

  Raises:
    RuntimeError: The file is missing, its SHA-256 differs from the registry (corrupted or
      replaced), or it does not hold LeNet parameters. The message gives the command that
      reproduces the file.
  """
  entry = WEIGHTS[dataset]
  fix = (
    f'Reinstall gan_jax, or regenerate the file in the repository root with `{entry.command}` '
    f'(expected SHA-256 {entry.sha256}).'
  )
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as err:
    raise RuntimeError(
      f'Cannot read the LeNet weights for {dataset!r} at {path}: {err}. {fix}'
    ) from err
  digest = _sha256(data)
  if digest != entry.sha256:
    raise RuntimeError(
      f'The LeNet weights file for {dataset!r} at {path} is corrupted or was replaced: its '
      f'SHA-256 is {digest}, expected {entry.sha256}. FID (LeNet) values are only comparable '
      f'with the pinned weights. {fix}'
    )
  try:
    model = model_from_bytes(data)
  except ValueError as err:
    raise RuntimeError(f'The LeNet weights file at {path} is unusable: {err}. {fix}') from err
  return FeatureNet(
    name=f'lenet_{dataset}',
    label='LeNet',
    weights_sha256=digest,
    feature_dim=FEATURE_DIM,
    num_classes=NUM_CLASSES,
    image_shape=IMAGE_SHAPE,
    apply=_make_apply(model),
  )


def weights_path(dataset: str):
  """The shipped weights file of `dataset` (an importlib.resources Traversable)."""
  _check_dataset(dataset)
  return importlib.resources.files('gan_jax.metrics') / 'weights' / WEIGHTS[dataset].file


def _check_dataset(dataset: str) -> None:
  if dataset not in WEIGHTS:
    raise ValueError(
      f'No pinned LeNet for dataset {dataset!r}; choices: {", ".join(map(repr, WEIGHTS))}. '
      'For other datasets use the Inception feature network (gan_jax.metrics.inception).'
    )


@functools.cache
def load_lenet(dataset: str = 'mnist') -> FeatureNet:
  """Loads the pinned LeNet domain classifier of `dataset` as a `FeatureNet`.

  Reads the weights shipped in the package, checks their SHA-256 against `WEIGHTS`, and
  returns a net whose `apply(images)` maps float32 `[B, 28, 28, 1]` images in [-1, 1] to
  `(features float32 [B, 128], logits float32 [B, 10])`: a pure, jitted, eval-mode (no
  dropout) function of the images. Loads are cached per dataset.

  Args:
    dataset: 'mnist' or 'fashion_mnist' (the TFDS names of the training data).

  Returns:
    A `FeatureNet` named 'lenet_mnist' or 'lenet_fashion_mnist', label 'LeNet'.

  Raises:
    ValueError: Unknown dataset (the message lists the choices).
    RuntimeError: The weights file is missing, corrupted or replaced (the message gives the
      command that reproduces it).
  """
  _check_dataset(dataset)
  with importlib.resources.as_file(weights_path(dataset)) as path:
    return _load_from_path(path, dataset)


def predict(net: FeatureNet, images: np.ndarray | jax.Array, batch_size: int = 1000) -> np.ndarray:
  """Class predictions of a feature network: argmax of its logits, in batches.

  Args:
    net: A `FeatureNet`, e.g. `load_lenet('mnist')`.
    images: float32 `[N, H, W, C]` in [-1, 1] with `(H, W, C) == net.image_shape`
      (`[N, 28, 28, 1]` for LeNet).
    batch_size: Images per `net.apply` call, >= 1 (the last batch may be smaller).

  Returns:
    int32 `[N]` numpy array of class indices in [0, net.num_classes).

  Raises:
    ValueError: Wrong image shape (see `FeatureNet.check_images`), integer images (scale
      uint8 [0, 255] to float [-1, 1] as x / 127.5 - 1 first), or batch_size < 1.
  """
  net.check_images(images)
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(
      f'{net.name} needs float images in [-1, 1], got dtype {images.dtype}; '
      'scale uint8 images as x / 127.5 - 1.'
    )
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size!r} must be >= 1.')
  out = []
  for start in range(0, images.shape[0], batch_size):
    _, logits = net.apply(images[start : start + batch_size])
    out.append(np.asarray(jnp.argmax(logits, axis=-1), np.int32))
  return np.concatenate(out) if out else np.zeros((0,), np.int32)
