"""Data sources and the input pipeline: real images as seeded, resumable batches.

sources        the registry of data sources (TFDS by name, stacked_mnist, folder:)
tfds_images    reading a prepared TFDS build (data dir, checked builder, decode, resize)
stacked_mnist  Stacked MNIST (1,000 modes) built deterministically from TFDS mnist
image_folder   a folder or .zip of your own images (`data.name='folder:/path'`)
translation_sources  paired / unpaired translation data: 'pairs:', 'unpaired:', 'cycle_gan/*'
pipeline       batches from a source: shuffling, n_critic groups, sharding, prefetch
"""
