"""The penalty registry (gan_jax/core/penalties.py): the one list of D penalties that validation,
the replica fields, the step's hyperparameters and the state's extras all read."""

from __future__ import annotations

import inspect

import pytest

from gan_jax import config as config_lib
from gan_jax.core import penalties, regularizers, state, train_step
from gan_jax.training import replicas
from gan_jax.errors import ConfigError


def test_each_entry_names_a_config_field_and_a_regularizer():
  train = config_lib.base_config().train
  assert list(penalties.PENALTIES) == ['gp', 'r1', 'r2', 'lecam']
  for name, p in penalties.PENALTIES.items():
    assert p.name == name and p.paper
    assert train[p.field] == 0.0  # every penalty is off by default
    assert p.fn is getattr(regularizers, p.function) and callable(p.fn)
    # The step's switch for it (Stabilizers) carries the same field.
    assert p.field in {f.name for f in train_step.Stabilizers.__dataclass_fields__.values()}
  assert [p.scale for p in penalties.PENALTIES.values()] == [1.0, 0.5, 0.5, 1.0]  # gamma / 2
  assert inspect.signature(penalties.PENALTIES['lecam'].fn).parameters.keys() >= {
    'real_logits', 'fake_logits'
  }


def test_the_derived_lists_follow_the_registry():
  assert penalties.weight_fields() == ('gp_weight', 'r1_weight', 'r2_weight', 'lecam_weight')
  assert penalties.REPLICA_WEIGHT_FIELDS == ('gp_weight', 'r1_weight', 'r2_weight')
  assert config_lib.REPLICA_FIELDS[4:] == ('train.gp_weight', 'train.r1_weight', 'train.r2_weight')
  assert train_step.HPARAM_FIELDS[4:] == penalties.REPLICA_WEIGHT_FIELDS
  c = config_lib.base_config()
  assert state.initial_extras(c.train) == {}
  c.train.lecam_weight = 0.3
  assert sorted(state.initial_extras(c.train)) == sorted(penalties.PENALTIES['lecam'].state)
  assert [p.name for p in penalties.active(c.train)] == ['lecam']
  assert train_step.Stabilizers.from_config(c.train).penalised


def test_replicas_share_a_step_that_computes_every_penalty_some_replica_uses():
  c = config_lib.base_config()
  c.num_replicas = 3
  c.replica_values = 'train.r1_weight=0,1,10;train.gp_weight=0,0,5'
  shared = replicas.shared_step_config(replicas.replica_configs(c))
  assert (shared.train.r1_weight, shared.train.gp_weight, shared.train.r2_weight) == (10, 5, 0)


@pytest.mark.parametrize('field', ['gp_weight', 'r1_weight', 'r2_weight', 'lecam_weight'])
def test_validate_refuses_a_negative_or_infinite_weight_in_one_line(field):
  for bad in (-1.0, float('inf'), float('nan')):
    c = config_lib.base_config()
    c.train[field] = bad
    with pytest.raises(ConfigError, match=rf'^train\.{field}=.* is invalid: must be >= 0'):
      config_lib.validate(c)


def test_validate_asks_the_registry_which_penalties_need_one_logit_per_image(monkeypatch):
  c = config_lib.base_config()
  c.model.pack = 2
  c.train.r1_weight = 1.0
  with pytest.raises(ConfigError, match=r'model\.pack=2 .* train\.r1_weight=1\.0 needs one logit'):
    config_lib.validate(c)
  c.train.r1_weight, c.train.lecam_weight = 0.0, 0.3  # LeCam reads D's outputs: packs are fine
  config_lib.validate(c)
  # An entry that declares no per-image need is accepted with packs: validate has no list
  # of its own.
  r1 = penalties.PENALTIES['r1']
  monkeypatch.setitem(penalties.PENALTIES, 'r1', r1._replace(per_image=False))
  c.train.r1_weight = 1.0
  config_lib.validate(c)
