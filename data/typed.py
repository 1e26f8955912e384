"""The one converter from composed YAML (a DictConfig or a plain dict) to a typed dataclass schema.

Used by `python -m train`, `python -m eval`, `python -m train.pipeline` and `python -m data` alike, so that
an unknown key, an ill-typed value or a missing mandatory value fails the same way everywhere: a
`ConfigError` naming the key. It lives in `data/` (the ground floor) because `data` imports neither train
nor eval, and all three read configs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, reported with the offending key."""


def to_typed(
    schema: type[T],
    cfg: DictConfig | Mapping[str, Any],
    what: str = "config",
    hints: Mapping[str, str] | None = None,
) -> T:
    """Merge `cfg` onto `schema` (strict: an unknown key is an error), resolve interpolations, build the
    dataclasses (their `__post_init__` checks run). `what` names the config in messages ("eval config");
    `hints` adds a word of help after a missing mandatory key's message."""
    if isinstance(cfg, DictConfig):
        # Plain, resolved data first: a node Hydra already typed keeps a key added with `+` that the merge
        # would not see as unknown, and an interpolation that stands for a whole node (a recipe's
        # `prepare: ["${regenerate_step}"]`) must be that node before it meets its typed field.
        cfg = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        OmegaConf.resolve(merged)
        typed = OmegaConf.to_object(merged)
    except ConfigKeyError as err:
        raise ConfigError(f"unknown {what} key {err.full_key!r}: {str(err.msg).splitlines()[0]}") from None
    except MissingMandatoryValue as err:
        hint = f" ({hints[err.full_key]})" if hints and err.full_key in hints else ""
        raise ConfigError(f"{what} key {err.full_key!r} must be set{hint}") from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"{what} key {err.full_key!r}: {str(err.msg).splitlines()[0]}") from None
    except ValueError as err:  # raised by a __post_init__ check; it names its own key
        raise ConfigError(str(err)) from None
    assert isinstance(typed, schema)
    return typed
