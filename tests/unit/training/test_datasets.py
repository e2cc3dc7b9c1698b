from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from rluf.errors import DataQualityError
from rluf.schemas import Message
from tests.unit.training.synthetic import make_triples
from training.datasets import (
    PLoveCollator,
    TripleDataset,
    check_columns,
    encode_inputs,
    read_training_set,
    render_context,
    split_frame,
    upsample_positives,
)

CONTEXT = [
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": "hi how can i help"},
    {"role": "user", "content": "what is the capital of france"},
]


def tokens(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(ids)


def test_render_context_one_line_per_turn():
    assert render_context(CONTEXT) == "user: hello\nassistant: hi how can i help\nuser: what is the capital of france"
    assert render_context([Message(role="user", content="hi")]) == "user: hi"
    assert render_context(np.array(CONTEXT[:1], dtype=object)) == "user: hello"
    assert render_context("already rendered") == "already rendered"
    assert render_context(None) == ""


def test_context_truncated_from_the_left_response_kept(tiny_model):
    tok = tiny_model.tokenizer
    response = "paris is the capital"
    full = encode_inputs([CONTEXT], [response], tok, max_length=64)[0]
    assert tokens(tok, full["input_ids"]) == [
        "[CLS]", "user", ":", "hello", "assistant", ":", "hi", "how", "can", "i", "help",
        "user", ":", "what", "is", "the", "capital", "of", "france", "[SEP]",
        "paris", "is", "the", "capital", "[SEP]"]
    # 13 = 3 special + 4 response + 6 context tokens: only the LATEST turn survives, the response is whole
    latest = encode_inputs([CONTEXT], [response], tok, max_length=13)[0]
    assert tokens(tok, latest["input_ids"]) == [
        "[CLS]", "what", "is", "the", "capital", "of", "france", "[SEP]", "paris", "is", "the", "capital", "[SEP]"]
    # one more token of budget: the next-older token (the role separator) comes back, from the left
    short = encode_inputs([CONTEXT], [response], tok, max_length=14)[0]
    assert tokens(tok, short["input_ids"]) == [
        "[CLS]", ":", "what", "is", "the", "capital", "of", "france", "[SEP]", "paris", "is", "the", "capital", "[SEP]"]
    assert short["token_type_ids"] == [0] * 9 + [1] * 5
    assert short["attention_mask"] == [1] * 14


def test_response_alone_over_budget_loses_its_tail_and_all_context(tiny_model):
    tok = tiny_model.tokenizer
    enc = encode_inputs([CONTEXT], ["one two three four five six"], tok, max_length=8)[0]
    # budget 5: the response keeps its first 5 tokens ("four" is spelled in pieces: f ##o ...), no context
    assert tokens(tok, enc["input_ids"]) == ["[CLS]", "[SEP]", "one", "two", "three", "f", "##o", "[SEP]"]


def test_response_exactly_filling_budget_keeps_all_of_it(tiny_model):
    tok = tiny_model.tokenizer
    enc = encode_inputs([CONTEXT], ["one two three one two"], tok, max_length=8)[0]
    assert tokens(tok, enc["input_ids"]) == ["[CLS]", "[SEP]", "one", "two", "three", "one", "two", "[SEP]"]
    one_left = encode_inputs([CONTEXT], ["one two three one"], tok, max_length=8)[0]
    assert tokens(tok, one_left["input_ids"]) == ["[CLS]", "france", "[SEP]", "one", "two", "three", "one", "[SEP]"]


def test_collator_pads_dynamically(tiny_model):
    tok = tiny_model.tokenizer
    frame = pd.DataFrame({"context": [CONTEXT, [{"role": "user", "content": "hi"}]],
                          "response": ["paris", "the answer is here and it is very long"],
                          "label": [1, 0], "weight": [1.0, 0.5]})
    ds = TripleDataset(frame, tok, max_length=64)
    batch = PLoveCollator(tok.pad_token_id)([ds[0], ds[1]])
    lengths = [len(ds[0]["input_ids"]), len(ds[1]["input_ids"])]
    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    short = int(np.argmin(lengths))
    assert (batch["input_ids"][short, lengths[short]:] == tok.pad_token_id).all()
    assert torch.equal(batch["labels"], torch.tensor([1.0, 0.0]))
    assert torch.equal(batch["weights"], torch.tensor([1.0, 0.5]))
    assert batch["index"].tolist() == [0, 1]


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5])
def test_upsampling_hits_the_asked_rate_exactly(rate):
    frame = make_triples(1000, rate=0.03, seed=1)
    out, effective = upsample_positives(frame, rate, seed=7)
    train = out[out["split"] == "train"]
    n_pos = int(train["label"].sum())
    assert abs(n_pos - rate * len(train)) <= 1.0 + 1e-9
    # validation and test are untouched, row for row
    for split in ("validation", "test"):
        pd.testing.assert_frame_equal(out[out["split"] == split].reset_index(drop=True),
                                      frame[frame["split"] == split].reset_index(drop=True))
    # the effective rate is the weighted positive share of the training rows
    assert effective == pytest.approx((train["weight"] * train["label"]).sum() / train["weight"].sum())
    # seeded: same draw twice
    again, _ = upsample_positives(frame, rate, seed=7)
    pd.testing.assert_frame_equal(out, again)


def test_upsampling_keeps_frames_already_above_rate_and_refuses_no_positives():
    frame = make_triples(100, rate=0.5, seed=2)
    out, _ = upsample_positives(frame, 0.1, seed=0)
    assert out is frame
    none = frame.assign(label=0)
    with pytest.raises(ValueError, match="no positives"):
        upsample_positives(none, 0.1, seed=0)
    with pytest.raises(ValueError):
        upsample_positives(frame, 1.0, seed=0)


def test_split_and_check_columns():
    frame = make_triples(40)
    parts = split_frame(frame)
    assert sum(len(p) for p in parts.values()) == 40
    assert set(parts["train"]["split"]) == {"train"}
    with pytest.raises(DataQualityError, match="lacks columns"):
        check_columns(frame.drop(columns=["label"]), ["context", "label"])


def test_read_training_set_with_sidecar_metadata(tmp_path):
    frame = make_triples(20)
    path = tmp_path / "train.parquet"
    frame.to_parquet(path)
    (tmp_path / "train.parquet.meta.json").write_text(json.dumps({"delta_version": 12}))
    loaded, meta = read_training_set(path)
    assert len(loaded) == 20
    assert meta["delta_version"] == 12
    assert meta["rows"] == 20
    # a context read back from parquet (numpy array of dicts) renders like the original
    assert render_context(loaded["context"][0]) == render_context(frame["context"][0])
