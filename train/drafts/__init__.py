"""Draft architectures: one spec file each (see `train.drafts.base`), found by importing every module of
this package. A new architecture is a new file here, plus its head under train/modeling/draft/,
conf/draft/<name>.yaml and its drafter in eval/drafters/."""

import importlib
import pkgutil

from train.drafts.base import SPECS, BuildContext, DraftSpec, spec_for, unused_settings

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # each spec file registers itself

__all__ = ["SPECS", "BuildContext", "DraftSpec", "spec_for", "unused_settings"]
