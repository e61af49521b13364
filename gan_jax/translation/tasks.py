"""Translation tasks built from the TFDS data on this machine (issue 19): paired ones with
their trivial baselines, and one unpaired task.

Each builder reads the first `num_train` images of the TFDS 'train' split and the first
`num_test` of 'test' (TFDS reads in a fixed order, `shuffle_files=False`, through
`gan_jax.data.pipeline.load_images`), and returns a `PairedTask` of float32 numpy arrays in [-1, 1].
The same arguments always give the same arrays; `seed` draws what is random (the inpainting
squares), from separate streams for the train and test images.

* 'colorize' (CIFAR-10, `cifar10_jpeg`): input the greyscale image `[32, 32, 1]`, luma Y =
  0.2989 R + 0.5870 G + 0.1140 B (ITU-R BT.601, the weights of `tf.image.rgb_to_grayscale`);
  target the colour image `[32, 32, 3]`; baseline the greyscale copied to the 3 channels.
* 'superres' (CIFAR-10), 4x: the 32x32 image is reduced to 8x8 by averaging 4x4 blocks, and
  the input is that 8x8 image upsampled back to 32x32 bicubically (`jax.image.resize`,
  'cubic' = Keys' a = -0.5 kernel, clipped to [-1, 1]) so that the U-Net maps same-size
  images; target the original; baseline the bicubic input itself.
* 'inpaint' (MNIST, Fashion-MNIST or CIFAR-10): a square of side `hole` (default half the
  image side: 14 at 28 px, 16 at 32 px), at a uniformly random position inside the image,
  is hidden and filled with the mean of the image's visible pixels (per channel); the input
  is that mean-filled image plus a mask channel (+1 inside the square, -1 outside), `[S, S,
  C + 1]`; target the original; baseline the mean-filled image (the mean fill).

Unpaired (`build_unpaired_task`, for CycleGAN):

* 'sneakers_boots' (Fashion-MNIST, 28x28x1): domain A the sneakers (class 7), domain B the
  ankle boots (class 9). A's training images come from the first half of the 'train' split
  (`train[:50%]`) and B's from the second (`train[50%:]`), so no A image has a counterpart
  among B's; the first `num_train` of each class in its half, in TFDS order (each half holds
  about 3,000 of each class). Held out: the first `num_test` sneakers and ankle boots of the
  'test' split (1,000 of each).

Your own data (`build_source_task`): any name of `gan_jax.data.translation_sources`
('pairs:/path' gives a `PairedTask` named 'pairs': A the inputs, B the targets, baseline
the input copied; 'unpaired:/a,/b' and 'cycle_gan/<name>' give an `UnpairedTask` without
classes).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

TASKS = ('colorize', 'superres', 'inpaint')
# name: (dataset, class of domain A, class of domain B, class names)
UNPAIRED_TASKS = {'sneakers_boots': ('fashion_mnist', 7, 9, ('sneaker', 'ankle boot'))}
INPAINT_DATASETS = {'mnist': (28, 1), 'fashion_mnist': (28, 1), 'cifar10_jpeg': (32, 3)}
LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)


@dataclasses.dataclass(frozen=True)
class PairedTask:
  """Paired images of one task, float32 numpy in [-1, 1].

  Attributes:
    name: 'colorize', 'superres' or 'inpaint'.
    dataset: the TFDS dataset the images come from.
    train_inputs, train_targets: `[N, S, S, in_channels]`, `[N, S, S, out_channels]`.
    test_inputs, test_targets: the same for the held-out (TFDS 'test') images.
    test_baseline: the trivial baseline's output on the test inputs, `[M, S, S, out]`.
    baseline: what the baseline is ('greyscale copy', 'bicubic', 'mean fill', 'input copy').
  """

  name: str
  dataset: str
  train_inputs: np.ndarray
  train_targets: np.ndarray
  test_inputs: np.ndarray
  test_targets: np.ndarray
  test_baseline: np.ndarray
  baseline: str

  @property
  def image_size(self) -> int:
    return int(self.train_targets.shape[1])

  @property
  def in_channels(self) -> int:
    return int(self.train_inputs.shape[-1])

  @property
  def out_channels(self) -> int:
    return int(self.train_targets.shape[-1])

  def display_inputs(self, inputs: np.ndarray) -> np.ndarray:
    """Inputs as viewable images with the targets' channels: greyscale tiled to RGB for
    'colorize', the mean-filled image without its mask channel for 'inpaint'."""
    return input_as_image(self.name, inputs, self.out_channels)


def input_as_image(task: str, inputs: np.ndarray, out_channels: int) -> np.ndarray:
  """The viewable image of a task's inputs (see `PairedTask.display_inputs`)."""
  if task == 'colorize':
    return np.repeat(inputs, out_channels, axis=-1)
  if task == 'inpaint':
    return inputs[..., :out_channels]
  return inputs


def _load(name: str, split: str, data_dir: str | None, size: int, channels: int) -> np.ndarray:
  from gan_jax.data.pipeline import load_images  # imports TensorFlow; only when data is read

  ds = load_images(name, split, data_dir=data_dir, image_size=size, channels=channels)
  batches = [b['image'] for b in ds.batch(1024).as_numpy_iterator()]
  return np.concatenate(batches, axis=0).astype(np.float32)


def greyscale(images: np.ndarray) -> np.ndarray:
  """BT.601 luma of RGB images in [-1, 1]: `[N, H, W, 3]` -> `[N, H, W, 1]`, in [-1, 1]."""
  y = np.tensordot(np.asarray(images, np.float32), LUMA, axes=([-1], [0]))[..., None]
  return np.clip(y, -1.0, 1.0).astype(np.float32)


def downsample_box(images: np.ndarray, factor: int) -> np.ndarray:
  """Averages `factor` x `factor` blocks: `[N, H, W, C]` -> `[N, H/f, W/f, C]`."""
  n, h, w, c = images.shape
  if h % factor or w % factor:
    raise ValueError(f'image size {h}x{w} is not a multiple of the factor {factor}.')
  x = images.reshape(n, h // factor, factor, w // factor, factor, c)
  return x.mean(axis=(2, 4)).astype(np.float32)


def upsample_bicubic(images: np.ndarray, size: int) -> np.ndarray:
  """Bicubic resize (`jax.image.resize`, 'cubic') to `[N, size, size, C]`, clipped to [-1, 1]."""
  n, _, _, c = images.shape
  up = jax.image.resize(jnp.asarray(images), (n, size, size, c), method='cubic')
  return np.clip(np.asarray(up, np.float32), -1.0, 1.0)


def hide_squares(
  images: np.ndarray, hole: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """Hides one random `hole` x `hole` square per image and fills it with the mean of the
  image's visible pixels (per channel).

  Returns:
    (mean-filled images `[N, S, S, C]`, mask float32 `[N, S, S, 1]`, 1 inside the square).
  """
  n, s, _, c = images.shape
  if not 1 <= hole < s:
    raise ValueError(f'inpainting hole={hole} must be in [1, {s - 1}] for {s}x{s} images.')
  tops = rng.integers(0, s - hole + 1, size=n)
  lefts = rng.integers(0, s - hole + 1, size=n)
  mask = np.zeros((n, s, s, 1), np.float32)
  for i in range(n):
    mask[i, tops[i] : tops[i] + hole, lefts[i] : lefts[i] + hole] = 1.0
  visible = 1.0 - mask
  means = (images * visible).sum(axis=(1, 2), keepdims=True) / visible.sum(
    axis=(1, 2), keepdims=True
  )
  filled = images * visible + means * mask
  return filled.astype(np.float32), mask


def build_task(
  task: str,
  *,
  data_dir: str | None = None,
  dataset: str | None = None,
  num_train: int = 4096,
  num_test: int = 512,
  seed: int = 0,
  hole: int | None = None,
) -> PairedTask:
  """Builds a paired task (see the module docstring).

  Args:
    task: 'colorize', 'superres' or 'inpaint'.
    data_dir: TFDS data dir (None: `$TFDS_DATA_DIR`, as `gan_jax.data.pipeline.load_images`).
    dataset: 'inpaint' only: 'mnist' (default), 'fashion_mnist' or 'cifar10_jpeg'; the
      other tasks use 'cifar10_jpeg' (None or that name).
    num_train, num_test: how many images of the 'train' and 'test' splits (>= 1).
    seed: seeds the random squares of 'inpaint'.
    hole: 'inpaint' only: side of the hidden square (default image side // 2).

  Returns:
    A `PairedTask`.

  Raises:
    ValueError: for an unknown task or dataset, sizes < 1, or a hole that does not fit.
    gan_jax.data.pipeline.DatasetNotFoundError: if the TFDS dataset is not in the data dir.
  """
  if task not in TASKS:
    raise ValueError(f'unknown translation task {task!r}; choose one of {list(TASKS)}.')
  if num_train < 1 or num_test < 1:
    raise ValueError(f'num_train={num_train} and num_test={num_test} must be >= 1.')
  if task == 'inpaint':
    dataset = dataset or 'mnist'
    if dataset not in INPAINT_DATASETS:
      raise ValueError(f'inpaint dataset {dataset!r} is not one of {sorted(INPAINT_DATASETS)}.')
  elif dataset not in (None, 'cifar10_jpeg'):
    raise ValueError(f"task {task!r} uses 'cifar10_jpeg', got dataset={dataset!r}.")
  else:
    dataset = 'cifar10_jpeg'
  size, channels = INPAINT_DATASETS[dataset]
  train = _load(dataset, f'train[:{num_train}]', data_dir, size, channels)
  test = _load(dataset, f'test[:{num_test}]', data_dir, size, channels)

  def make(images: np.ndarray, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, baseline) of a set of target images."""
    if task == 'colorize':
      grey = greyscale(images)
      return grey, np.repeat(grey, 3, axis=-1)
    if task == 'superres':
      up = upsample_bicubic(downsample_box(images, 4), size)
      return up, up
    rng = np.random.default_rng([seed, stream])
    filled, mask = hide_squares(images, hole if hole is not None else size // 2, rng)
    return np.concatenate([filled, 2.0 * mask - 1.0], axis=-1), filled

  train_inputs, _ = make(train, 0)
  test_inputs, test_baseline = make(test, 1)
  return PairedTask(
    name=task,
    dataset=dataset,
    train_inputs=train_inputs,
    train_targets=train,
    test_inputs=test_inputs,
    test_targets=test,
    test_baseline=test_baseline,
    baseline={'colorize': 'greyscale copy', 'superres': 'bicubic', 'inpaint': 'mean fill'}[task],
  )


@dataclasses.dataclass(frozen=True)
class UnpairedTask:
  """Two unpaired image domains, float32 numpy `[N, S, S, C]` in [-1, 1].

  Attributes:
    name: the task ('sneakers_boots'; 'unpaired' or 'cycle_gan' for `build_source_task`).
    dataset: the TFDS dataset the images come from (or the data's name).
    train_a, train_b: training images of domains A and B (from disjoint halves of 'train');
      their counts may differ for your own data.
    test_a, test_b: held-out images of A and B (from 'test').
    class_a, class_b: the dataset's class labels of A and B (7 and 9); None for data without
      a domain classifier (your own).
    names: readable names of A and B.
    source: for `build_source_task`, the data's description
      (`TranslationImages.describe`); None for the built-in task.
  """

  name: str
  dataset: str
  train_a: np.ndarray
  train_b: np.ndarray
  test_a: np.ndarray
  test_b: np.ndarray
  class_a: int | None
  class_b: int | None
  names: tuple[str, str]
  source: dict[str, Any] | None = None

  @property
  def image_size(self) -> int:
    return int(self.train_a.shape[1])

  @property
  def channels(self) -> int:
    return int(self.train_a.shape[-1])


def _load_class(
  name: str, split: str, label: int, count: int, data_dir: str | None, size: int, channels: int
) -> np.ndarray:
  """The first `count` images of class `label` in `split`, in TFDS order."""
  from gan_jax.data.pipeline import load_images  # imports TensorFlow; only when data is read

  ds = load_images(name, split, data_dir=data_dir, image_size=size, channels=channels)
  ds = ds.filter(lambda e: e['label'] == label).take(count)
  batches = [b['image'] for b in ds.batch(1024).as_numpy_iterator()]
  images = np.concatenate(batches, axis=0).astype(np.float32) if batches else None
  if images is None or images.shape[0] < count:
    got = 0 if images is None else images.shape[0]
    raise ValueError(f"'{name}' {split} has only {got} images of class {label}, asked for {count}.")
  return images


def build_unpaired_task(
  task: str = 'sneakers_boots',
  *,
  data_dir: str | None = None,
  num_train: int = 2048,
  num_test: int = 1000,
) -> UnpairedTask:
  """Builds an unpaired task (see the module docstring); the same arguments always give the
  same arrays.

  Args:
    task: 'sneakers_boots'.
    data_dir: TFDS data dir (None: `$TFDS_DATA_DIR`).
    num_train: training images per domain, 1 ... 2,900 (each half of the 'train' split
      holds about 3,000 of each class).
    num_test: held-out images per domain, 1 ... 1,000.

  Returns:
    An `UnpairedTask`.

  Raises:
    ValueError: for an unknown task, or sizes out of range.
    gan_jax.data.pipeline.DatasetNotFoundError: if the TFDS dataset is not in the data dir.
  """
  if task not in UNPAIRED_TASKS:
    raise ValueError(f'unknown unpaired task {task!r}; choose one of {list(UNPAIRED_TASKS)}.')
  if not 1 <= num_train <= 2900 or not 1 <= num_test <= 1000:
    raise ValueError(
      f'num_train={num_train} must be in [1, 2900] and num_test={num_test} in [1, 1000].'
    )
  dataset, class_a, class_b, names = UNPAIRED_TASKS[task]
  size, channels = INPAINT_DATASETS[dataset]

  def load(split: str, label: int, count: int) -> np.ndarray:
    return _load_class(dataset, split, label, count, data_dir, size, channels)

  return UnpairedTask(
    name=task,
    dataset=dataset,
    train_a=load('train[:50%]', class_a, num_train),
    train_b=load('train[50%:]', class_b, num_train),
    test_a=load('test', class_a, num_test),
    test_b=load('test', class_b, num_test),
    class_a=class_a,
    class_b=class_b,
    names=names,
  )


def _to_unit(images: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [-1, 1] (x / 127.5 - 1, as the input pipeline maps pixels)."""
  return np.asarray(images, np.float32) / 127.5 - 1.0


def build_source_task(
  name: str,
  *,
  kind: str,
  image_size: int,
  channels: int | None = None,
  num_train: int,
  num_test: int,
  data_dir: str | None = None,
  download: bool = False,
) -> PairedTask | UnpairedTask:
  """A task of your own data, read by `gan_jax.data.translation_sources.load`.

  Args:
    name: 'pairs:/path', 'unpaired:/a,/b' or 'cycle_gan/<name>'.
    kind: 'paired' (pix2pix: a `PairedTask`) or 'unpaired' (CycleGAN: an `UnpairedTask`).
    image_size, channels, num_train, num_test, data_dir, download: as `load`'s.

  Returns:
    A `PairedTask` named 'pairs' (inputs A, targets B, baseline the input copied) or an
    `UnpairedTask` named after its source, with no classes; float32 in [-1, 1].

  Raises:
    gan_jax.errors.ConfigError, gan_jax.data.tfds_images.DatasetNotFoundError: as `load`.
  """
  from gan_jax.data import translation_sources  # pylint: disable=g-import-not-at-top

  data = translation_sources.load(
    name,
    image_size=image_size,
    channels=channels,
    num_train=num_train,
    num_test=num_test,
    kind=kind,
    data_dir=data_dir,
    download=download,
  )
  if data.kind == translation_sources.PAIRED:
    test_inputs = _to_unit(data.test_a)
    return PairedTask(
      name=data.source,
      dataset=data.name,
      train_inputs=_to_unit(data.train_a),
      train_targets=_to_unit(data.train_b),
      test_inputs=test_inputs,
      test_targets=_to_unit(data.test_b),
      test_baseline=test_inputs,
      baseline='input copy',
    )
  return UnpairedTask(
    name=data.source,
    dataset=data.name,
    train_a=_to_unit(data.train_a),
    train_b=_to_unit(data.train_b),
    test_a=_to_unit(data.test_a),
    test_b=_to_unit(data.test_b),
    class_a=None,
    class_b=None,
    names=data.domains,
    source=data.describe(),
  )


def reversed_pairs(task: PairedTask) -> PairedTask:
  """The task read B -> A (pix2pix's `--direction BtoA`): the targets become the inputs and
  the inputs the targets; the baseline is the new input copied (so for a task whose inputs
  and targets have other channels, e.g. 'colorize', it is not defined: use your own pairs).

  Raises:
    ValueError: inputs and targets of different channels.
  """
  if task.in_channels != task.out_channels:
    raise ValueError(
      f'cannot reverse task {task.name!r}: its inputs have {task.in_channels} channels and its '
      f'targets {task.out_channels}.'
    )
  return dataclasses.replace(
    task,
    train_inputs=task.train_targets,
    train_targets=task.train_inputs,
    test_inputs=task.test_targets,
    test_targets=task.test_inputs,
    test_baseline=task.test_targets,
    baseline='input copy',
  )


def describe_unpaired(task: UnpairedTask) -> dict[str, Any]:
  """A JSON-able summary of an unpaired task's shapes and provenance."""
  if task.source is not None:
    return {'task': task.name, 'dataset': task.dataset, **task.source,
            'num_train': int(task.train_a.shape[0]), 'num_test': int(task.test_a.shape[0])}  # fmt: skip
  return {
    'task': task.name,
    'dataset': task.dataset,
    'image_size': task.image_size,
    'channels': task.channels,
    'domains': {
      'a': {'name': task.names[0], 'class': task.class_a, 'train_split': 'train[:50%]'},
      'b': {'name': task.names[1], 'class': task.class_b, 'train_split': 'train[50%:]'},
    },
    'num_train': int(task.train_a.shape[0]),
    'num_test': int(task.test_a.shape[0]),
  }


def describe(task: PairedTask) -> dict[str, Any]:
  """A JSON-able summary of a task's shapes and provenance."""
  return {
    'task': task.name,
    'dataset': task.dataset,
    'image_size': task.image_size,
    'in_channels': task.in_channels,
    'out_channels': task.out_channels,
    'num_train': int(task.train_inputs.shape[0]),
    'num_test': int(task.test_inputs.shape[0]),
    'baseline': task.baseline,
  }
