"""One spec per draft algorithm, found by listing train/drafts/: every name (aliases too) is a Hydra option
built from its config class, an alias is declared once, a setting the chosen algorithm's config lacks is
refused by name; Medusa builds a real dynamic tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from data.paths import CONF_DIR, REPO_ROOT, register_resolvers
from eval.drafters import DraftSettings
from tests.conftest import TINY_LLAMA
from train.config import ConfigError, to_typed
from train.draft_factory import build_draft
from train.drafts.medusa.drafter import MedusaDrafter
from train.drafts.registry import SPECS, algorithms, formats
from train.modeling.target import FrozenTarget

register_resolvers()


def config(tmp_path: Path, *overrides: str):  # noqa: ANN201
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_typed(compose("train", overrides=[f"output_dir={tmp_path}", "logger=none", *overrides]))


def test_every_folder_is_one_spec_and_every_name_composes() -> None:
    folders = {p.parent.name for p in (REPO_ROOT / "train" / "drafts").glob("*/__init__.py")}
    assert {spec.name for spec in algorithms()} == folders  # one spec per folder, named as the folder
    assert not (CONF_DIR / "draft").exists()  # the config classes are the only defaults: no yaml copies
    assert SPECS["scylla"] is SPECS["eagle3"]  # an alias is one spec, declared once
    for name, spec in SPECS.items():  # Hydra's option is the config class, with the alias's values
        cfg = config(Path("/tmp/unused"), f"draft={name}")
        assert isinstance(cfg.draft, spec.config) and cfg.draft == spec.default_config(name)
    assert config(Path("/tmp/unused"), "draft=scylla").draft.num_layers == 2
    for spec in algorithms():  # each engine's format is one the algorithm itself declares
        assert all(fmt in {m.NAME for m in spec.formats} for fmt, _ in spec.serve.values()), spec.name
    assert len(formats()) == sum(len(s.formats) for s in algorithms())  # no format claimed twice


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["draft=eagle", "+draft.medusa_heads=3"], "medusa_heads"),
        (["draft=medusa", "+draft.ttt_steps=5"], "ttt_steps"),
        (["draft=dense", "+draft.draft_vocab_size=64"], "draft_vocab_size"),
    ],
)
def test_a_setting_the_draft_does_not_read_is_refused(
    overrides: list[str], named: str, tmp_path: Path
) -> None:
    """Without `+` Hydra itself refuses the key (the composed draft section has only the algorithm's keys);
    with it, the typed conversion names the key and the keys the algorithm reads."""
    with pytest.raises(ConfigError, match=rf"unknown draft={overrides[0][6:]} key '{named}'.*reads: "):
        config(tmp_path, *overrides)


def test_specs_and_objectives_do_not_import_the_run_config() -> None:
    """The old circle was config -> stages -> objectives -> config; now config sits above the specs."""
    code = "import sys, train.drafts.registry, train.objectives; assert 'train.config' not in sys.modules, 'circle'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_medusa_tree_is_dynamic(tmp_path: Path) -> None:
    """With every head equal (zero-initialised heads copy the target's next-token distribution p), EAGLE-2's
    search over depth 2 x top-2 scores the six paths log p(a), log p(a) + log p(b), ...; the tree keeps the
    `budget` best of them, not a fixed shape."""
    target = FrozenTarget.load(str(TINY_LLAMA))
    d = MedusaDrafter(build_draft(config(tmp_path, "draft=medusa"), target).eval(), target)
    ids = torch.tensor([target.tokenizer("Lists are")["input_ids"]])
    feats = target.features(ids)
    d.start(1)
    d.observe(ids, feats.hidden, torch.ones_like(ids, dtype=torch.bool))
    logp = torch.log_softmax(feats.logits[0, -1].float(), -1)
    (l1, l2), (a, b) = logp.topk(2)
    paths = {(a,): l1, (b,): l2, (a, a): 2 * l1, (a, b): l1 + l2, (b, a): l2 + l1, (b, b): 2 * l2}
    budget = 3
    ranked = sorted(paths, key=lambda p: -float(paths[p]))
    assert float(paths[ranked[budget - 1]]) > float(paths[ranked[budget]]) + 1e-4  # no tie at the cut
    with torch.no_grad():
        tree = d.propose(feats.logits[:, -1].argmax(-1), DraftSettings(depth=2, topk=2, budget=budget), None)
    assert tree.size == budget
    kept = set()
    for i in range(tree.size):
        tok, par = int(tree.tokens[0, i]), int(tree.parents[0, i])
        kept.add((int(tree.tokens[0, par]), tok) if par >= 0 else (tok,))
    assert kept == {tuple(int(t) for t in p) for p in ranked[:budget]}
