"""Issue 22 item 6: the tokenizer check refuses only ids that can really occur. The target is one a user
brings (tests/own_target.py: build_bpe_target): Qwen2 weights with 3,000 embedding rows, its own 3,000-token
byte-level BPE, and AutoTokenizer's default unk `<|endoftext|>` appended as id 3,000."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from data.draft_vocab import maps_for
from data.target_io import load_target, load_tokenizer
from data.token_reach import UnreachableTokenWarning, check_vocab, reachable_ids, unk_emittable
from tests.own_target import BPE_ROWS, build_bpe_target

TEXT = ["the cat sat on the mat", "a dog ate the bone", "def f(x): return x"]


@pytest.fixture(scope="module")
def bpe_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bpe_target(tmp_path_factory.mktemp("bpe") / "my-bpe-target")


def test_the_quirk_is_real(bpe_target: Path) -> None:
    # What the user saw: AutoTokenizer adds an unk one past the embedding, and the old rule counted it.
    tok = load_tokenizer(str(bpe_target), warn=False)
    assert (tok.unk_token, tok.unk_token_id, len(tok)) == ("<|endoftext|>", BPE_ROWS, BPE_ROWS + 1)
    assert not unk_emittable(tok)
    assert BPE_ROWS not in reachable_ids(tok)
    # A draft vocabulary built for it leaves that id out, even when every other id is kept.
    d2t, _, _ = maps_for(tok, np.ones(len(tok), dtype=np.int64), BPE_ROWS)
    assert len(d2t) == BPE_ROWS and int(d2t.max()) == BPE_ROWS - 1


def test_an_unk_a_byte_level_bpe_never_emits_is_warned_not_refused(bpe_target: Path) -> None:
    with pytest.warns(UnreachableTokenWarning, match=r"unk '<\|endoftext\|>' is id 3000.*can never emit it"):
        model, tok = load_target(str(bpe_target))
    assert model.get_input_embeddings().weight.shape[0] == BPE_ROWS
    # Any text tokenizes inside the embedding: the bytes of every character have tokens.
    ids = tok("naïve café ﬁle \x00\x7f 漢字 🙂")["input_ids"]
    assert ids and max(ids) < BPE_ROWS


def test_the_same_unk_written_by_the_chat_template_is_refused(bpe_target: Path, tmp_path: Path) -> None:
    quirky = tmp_path / "templated"
    shutil.copytree(bpe_target, quirky)
    template = (quirky / "chat_template.jinja").read_text()
    (quirky / "chat_template.jinja").write_text(template + "{{- '<|endoftext|>' }}")
    with pytest.raises(
        ValueError, match=r"can produce id 3000 \(special token '<\|endoftext\|>' \(written by"
    ):
        load_target(str(quirky))


def test_an_unk_a_tokenizer_can_emit_is_refused(bpe_target: Path) -> None:
    # A character-level BPE with an unk token: text with an unseen character becomes unk. Its unk is the
    # last id, one past a target cut to the other ids.
    chars = sorted(set("".join(TEXT)) - {" "})
    vocab = {c: i for i, c in enumerate(chars)} | {"<unk>": len(chars)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    assert unk_emittable(fast)
    assert fast.convert_ids_to_tokens(fast("the zebra")["input_ids"]).count("<unk>") == 1  # z
    model = AutoModelForCausalLM.from_pretrained(bpe_target, dtype="float32")
    model.resize_token_embeddings(len(chars), mean_resizing=False)
    with pytest.raises(ValueError, match=rf"can produce id {len(chars)} \(unk_token '<unk>'\)"):
        check_vocab(model, fast, "cut-target", "char-bpe")
