"""Per-family presets (core/train/family_presets.py): the preset fills the family's values where the user left
the defaults, keeps every value the user set, and its table stays within the fields' limits."""
from dataclasses import replace

import pytest

from kiln.core.net.spec import NetworkSpec
from kiln.core.train.family_presets import AUTO, FAMILY_PRESETS, NONE, apply_family_preset, check_table
from kiln.core.train.loop import TrainConfig
from kiln.core.train.objective import ObjectiveSpec
from kiln.core.train.optim import OptimizerSpec


def test_table_values_are_within_the_fields_limits():
    check_table()
    with pytest.raises(ValueError, match="timestep"):
        check_table({"x": replace(FAMILY_PRESETS["sdxl"], timestep_sampling="weighted")})


@pytest.mark.parametrize("family", sorted(FAMILY_PRESETS))
def test_auto_fills_the_family_values_on_defaults(family):
    p = FAMILY_PRESETS[family]
    net, opt, cfg, note = apply_family_preset(AUTO, family, NetworkSpec(), OptimizerSpec(), TrainConfig())
    assert (net.rank, net.alpha, opt.lr) == (p.rank, p.alpha, p.lr)
    assert cfg.objective.timestep_sampling == p.timestep_sampling and cfg.max_steps == p.steps
    assert family in note


def test_values_the_user_set_are_kept():
    net, opt, cfg, note = apply_family_preset(
        AUTO, "z-image", NetworkSpec(rank=8), OptimizerSpec(lr=3e-4),
        TrainConfig(epochs=4, objective=ObjectiveSpec(timestep_sampling="uniform")))
    assert (net.rank, opt.lr, cfg.objective.timestep_sampling) == (8, 3e-4, "uniform")
    assert cfg.max_steps == 0 and cfg.epochs == 4       # epochs set: no step count imposed
    assert net.alpha == FAMILY_PRESETS["z-image"].alpha == 32.0   # left at its default: filled
    assert "alpha=32.0" in note and "lr=" not in note


def test_none_and_unknown_family_change_nothing():
    args = (NetworkSpec(), OptimizerSpec(), TrainConfig())
    assert apply_family_preset(NONE, "z-image", *args) == (*args, "")
    net, opt, cfg, note = apply_family_preset(AUTO, "somenewmodel", *args)
    assert (net, opt, cfg) == args and "somenewmodel" in note
    with pytest.raises(ValueError, match="unknown preset"):
        apply_family_preset("turbo", "z-image", *args)
