"""TrialConfig's init, bias, augmentation and weight-decay fields: validation and round trips."""

from __future__ import annotations

import json
import math

import pytest

from lcw import ConfigError, OptimizerConfig, TrialConfig, catalog


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, math.nan, math.inf, -math.inf, True, "2", None])
def test_init_scale_must_be_a_positive_finite_number(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^init_scale: .* must be a finite number > 0"):
        TrialConfig(init_scale=bad)  # type: ignore[arg-type]


def test_gain_rejects_booleans_and_non_finite_values() -> None:
    for bad in (True, math.nan, 0.0):
        with pytest.raises(ConfigError, match=r"^gain: "):
            TrialConfig(gain=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["nope", "None", "", None])
def test_bias_names_the_allowed_modes(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^bias: .* is not one of 'default' or 'none'"):
        TrialConfig(bias=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["yes", 1, 0.0])
def test_augment_is_a_bool_or_null(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^augment: .* must be true, false or null"):
        TrialConfig(augment=bad)  # type: ignore[arg-type]


def test_decay_norm_and_bias_is_a_bool() -> None:
    with pytest.raises(ConfigError, match=r"^optimizer.decay_norm_and_bias: 'no'"):
        OptimizerConfig(decay_norm_and_bias="no")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="optimizer: unknown field"):
        TrialConfig.from_dict({"optimizer": {"decay_norms": True}})


@pytest.mark.parametrize("dataset", list(catalog.DATASETS))
def test_augment_defaults_to_the_dataset_and_is_stored_resolved(dataset: str) -> None:
    model = "vgg11" if catalog.DATASETS[dataset].input_shape == (3, 32, 32) else "mlp"
    cfg = TrialConfig(dataset=dataset, model=model)
    assert cfg.augment is (dataset in ("cifar10", "cifar100"))
    assert cfg.to_dict()["augment"] is cfg.augment  # a stored config does not depend on the catalog
    assert TrialConfig(dataset=dataset, model=model, augment=not cfg.augment).augment is (
        not cfg.augment
    )


def test_new_fields_round_trip_through_json() -> None:
    cfg = TrialConfig(
        dataset="synthetic", method="wn", init_scale=0.5, bias="none", augment=True,
        optimizer=OptimizerConfig(weight_decay=5e-4, decay_norm_and_bias=True),
    )  # fmt: skip
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["init_scale"] == 0.5 and data["bias"] == "none" and data["augment"] is True
    assert data["optimizer"]["decay_norm_and_bias"] is True
    assert TrialConfig.from_dict(data) == cfg
    defaults = TrialConfig.from_dict({})
    assert (defaults.init_scale, defaults.bias, defaults.augment) == (1.0, "default", False)
    assert defaults.optimizer.decay_norm_and_bias is False


def test_pack_key_ignores_exactly_lr_and_seed() -> None:
    from lcw.config import PACK_MEMBER_FIELDS, pack_key

    assert PACK_MEMBER_FIELDS == ("lr", "seed")
    base = TrialConfig(depth=3, width=16)
    # A config and its stored JSON have one key.
    assert (
        pack_key(base)
        == pack_key(base.to_dict())
        == pack_key(json.loads(json.dumps(base.to_dict())))
    )
    assert pack_key(base) == pack_key(TrialConfig(depth=3, width=16, lr=0.5, seed=7))
    others = [
        TrialConfig(depth=4, width=16),
        TrialConfig(depth=3, width=16, init_scale=2.0),
        TrialConfig(depth=3, width=16, optimizer=OptimizerConfig(weight_decay=1e-3)),
        TrialConfig(depth=3, width=16, threads=2),
    ]
    assert len({pack_key(c) for c in [base, *others]}) == 1 + len(others)
