"""The registry: every folder under train/drafts/ that defines `SPEC` is an algorithm, under its name and
its aliases. Nothing else keeps a table keyed by a draft's name: config options (Hydra's `draft/<name>`),
objectives, drafters, export formats and serving methods are all read from the spec found here."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict
from types import ModuleType

from hydra.core.config_store import ConfigStore

import train.drafts
from train.drafts.spec import DraftSpec

DEFAULT_DRAFT = "eagle"  # what `python -m train` trains and `draft_path=random` drafts with when not told


def _discover() -> dict[str, DraftSpec]:
    specs: dict[str, DraftSpec] = {}
    for found in sorted(pkgutil.iter_modules(train.drafts.__path__), key=lambda m: m.name):
        if not found.ispkg:
            continue
        module = importlib.import_module(f"train.drafts.{found.name}")
        spec = getattr(module, "SPEC", None)
        if not isinstance(spec, DraftSpec):
            raise TypeError(f"train/drafts/{found.name}/__init__.py: defines no SPEC = DraftSpec(...)")
        if spec.name != found.name:
            raise ValueError(
                f"train/drafts/{found.name}: SPEC.name is {spec.name!r}; it must be the folder name"
            )
        for name in (spec.name, *spec.aliases):
            if name in specs:
                raise ValueError(f"draft {name!r} is registered twice ({specs[name].name}, {spec.name})")
            specs[name] = spec
    return specs


SPECS: dict[str, DraftSpec] = _discover()  # name or alias -> spec


def spec_for(name: str) -> DraftSpec:
    if name not in SPECS:
        raise ValueError(f"unknown draft architecture {name!r}; known: {sorted(SPECS)}")
    return SPECS[name]


def algorithms() -> list[DraftSpec]:
    """Each algorithm once (aliases left out), by name."""
    return sorted({s.name: s for s in SPECS.values()}.values(), key=lambda s: s.name)


def formats() -> dict[str, ModuleType]:
    """Format name -> module, in detection order: a format whose folders are less marked sets a higher
    `DETECT_ORDER` (default 0), so that the specific layouts are tried first."""
    mods = [m for spec in algorithms() for m in spec.formats]
    mods.sort(key=lambda m: getattr(m, "DETECT_ORDER", 0))
    out: dict[str, ModuleType] = {}
    for m in mods:
        if m.NAME in out:
            raise ValueError(f"export format {m.NAME!r} is declared by two algorithms")
        out[m.NAME] = m
    return out


def spec_of_format(name: str) -> DraftSpec:
    """The algorithm an export format belongs to."""
    for spec in algorithms():
        if any(m.NAME == name for m in spec.formats):
            return spec
    raise ValueError(f"unknown export format {name!r}; known: {sorted(formats())}")


def register_configs() -> None:
    """Hydra's `draft/<name>` options, straight from each spec's config class (and its aliases' values)."""
    store = ConfigStore.instance()
    for name, spec in SPECS.items():
        store.store(group="draft", name=name, node=asdict(spec.default_config(name)))


register_configs()
