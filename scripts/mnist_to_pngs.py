"""Writes a TFDS image dataset's split as PNG files in class folders, for folder-vs-TFDS runs.

    python scripts/mnist_to_pngs.py --out /data/mnist_png            # MNIST train, 60,000 PNGs
    python scripts/mnist_to_pngs.py --out /tmp/f --dataset fashion_mnist --split 'train[:1000]'

Writes `OUT/<label>/<index:05d>.png` (lossless, so the images equal the TFDS ones), one
folder per class (the ImageFolder convention gan_jax's `folder:` datasets read labels
from). Then train the same config on both sources and compare their FID:

    gan-jax train --config experiments/mnist_dcgan.py --workdir runs/tfds
    gan-jax train --config experiments/mnist_dcgan.py --workdir runs/folder \\
        --config.data.name=folder:/data/mnist_png --config.eval.feature_net=lenet_mnist

(With 'auto', a folder is scored with Inception; `lenet_mnist` makes the FIDs comparable.)
The folder's examples come in sorted-path order (class by class), not TFDS's, so the two
runs see different shuffles: compare them within the spread over seeds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True, help='folder to write (created; must be empty)')
  parser.add_argument('--dataset', default='mnist', help='TFDS image dataset (default mnist)')
  parser.add_argument('--split', default='train', help="TFDS split (default 'train')")
  parser.add_argument('--data-dir', default=None, help='TFDS data dir (default $TFDS_DATA_DIR)')
  args = parser.parse_args(argv)

  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from gan_jax.data import pipeline as data  # pylint: disable=g-import-not-at-top

  if os.path.isdir(args.out) and os.listdir(args.out):
    print(f'error: --out {args.out} is not empty; choose a new folder.', file=sys.stderr)
    return 2
  data_dir = data.resolve_data_dir(args.data_dir)
  builder = tfds.builder(args.dataset, data_dir=data_dir)
  ds = builder.as_dataset(split=args.split, shuffle_files=False)
  t0 = time.perf_counter()
  n = 0
  for n, example in enumerate(tfds.as_numpy(ds), 1):
    image = np.asarray(example['image'])
    label = int(example['label']) if 'label' in example else None
    folder = args.out if label is None else os.path.join(args.out, str(label))
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
      os.path.join(folder, f'{n - 1:05d}.png')
    )
  print(
    f'wrote {n} PNGs of {args.dataset} {args.split} to {args.out} '
    f'in {time.perf_counter() - t0:.0f} s'
  )
  return 0


if __name__ == '__main__':
  sys.exit(main())
