"""Evaluation: FID, KID, Inception Score, precision/recall, density/coverage, mode coverage.

Modules:
  features          `FeatureNet`, the pinned feature-network interface
  stats             streaming float64 mean/covariance (`StreamingStats`, `FeatureStats`)
  fid               Frechet distance (Heusel et al. 2017)
  kid               kernel inception distance (Binkowski et al. 2018)
  inception_score   Inception Score (Salimans et al. 2016), batch and streaming
  prdc              improved precision/recall (Kynkaanniemi et al. 2019), density/coverage
                    (Naeem et al. 2020)
  lenet             the pinned MNIST / Fashion-MNIST classifiers ("FID (LeNet)")
  inception         the pytorch-fid InceptionV3 ("FID (Inception)"): `load_inception`, and
                    the public names of the four modules below
  inception_net     its network, in Flax NNX
  torch_pickle      a torch-free, restricted reader of `torch.save` state dicts
  inception_state   torch key names and layouts of its state dict, checked
  inception_weights finding and downloading its weights file
  reference         cached real-data reference features and statistics
  mode_coverage     Stacked-MNIST modes and KL (Srivastava et al. 2017; Lin et al. 2018)
  registry          the metrics: one `Metric` entry each (results, display names, direction,
                    needs, constraints), which `evaluate`, config validation and sweeps ask
  evaluate          one call that samples a generator and computes the configured metrics

The math modules (stats, fid, kid, inception_score, prdc) are plain numpy/scipy and import
no JAX, so they can check features from any framework.
"""
