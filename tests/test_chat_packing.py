"""Packed conversations (`data/chat/packing.py`): each conversation in a packed row is computed exactly as it is alone
(no attention across conversations, positions restarting), rows are packed first-fit decreasing, long conversations
are refused or split by the documented rule, and a step's rows are a pure function of (seed, step)."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch

from conftest import MODEL_VARIANTS, randomised
from lmtrain.data.chat.packing import ChatSampler, fit_pieces, pack_rows, packed_batch
from lmtrain.errors import DataError
from lmtrain.model.registry import build_model


def first_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """The textbook algorithm, one row at a time (the reference)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for item in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if free >= lengths[item]:
                rows[r].append(item)
                room[r] -= lengths[item]
                break
        else:
            rows.append([item])
            room.append(capacity - lengths[item])
    return [sorted(r) for r in rows]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rows_are_first_fit_decreasing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 65, size=300)
    rows = pack_rows(lengths, 64)
    assert [r.tolist() for r in rows] == first_fit_decreasing(lengths.tolist(), 64)
    assert sorted(np.concatenate(rows).tolist()) == list(range(300))
    assert sum(lengths) / (64 * len(rows)) > 0.95  # nearly full rows


def conversations(seed: int, count: int, vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 20, size=count)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(0, vocab, size=int(starts[-1]))
    mask = (rng.random(int(starts[-1])) < 0.5).astype(np.uint8)
    mask[starts[:-1]] = 0  # a conversation's first token is never a target
    return ids, mask, starts


@pytest.mark.parametrize("variant", list(MODEL_VARIANTS))
def test_a_packed_conversation_is_computed_as_it_is_alone(variant: str) -> None:
    cfg = dataclasses.replace(MODEL_VARIANTS[variant], max_seq_len=32)
    model = randomised(build_model(cfg)).eval()
    ids, mask, starts = conversations(0, 12, cfg.vocab_size)
    seq_len = 32
    pieces = fit_pieces(starts, mask, seq_len, "refuse", "train")
    rows = pack_rows(pieces[:, 1] - pieces[:, 0] - 1, seq_len)
    assert len(rows) < len(pieces)  # several conversations share a row
    x, y, packing = packed_batch(ids, mask, pieces, rows, seq_len=seq_len, pad_id=0)
    assert packing.segments is not None and not packing.flex  # the CPU attends through the dense mask
    flex = dataclasses.replace(packing, flex=True)  # a GPU's way: FlexAttention's block mask (forward only here)
    with torch.no_grad():
        packed = model.token_losses(model.hidden(x, packing=packing), y).nll  # (B, T)
        _, summed = model(x, y, packing=packing, reduction="sum")
        with warnings.catch_warnings():  # eager FlexAttention (the CPU's) says it is unfused: here only to check it
            warnings.simplefilter("ignore", UserWarning)
            _, through_flex = model(x, y, packing=flex, reduction="sum")
        expected = 0.0
        for start, end in pieces:
            alone_x = torch.from_numpy(ids[start : end - 1]).long()[None]
            alone_y = torch.from_numpy(np.where(mask[start + 1 : end] > 0, ids[start + 1 : end], -100)).long()[None]
            expected += float(model.token_losses(model.hidden(alone_x), alone_y).nll.sum())
    assert int((y != -100).sum()) == int(sum(mask[s + 1 : e].sum() for s, e in pieces))
    torch.testing.assert_close(packed.sum().double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(summed.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(through_flex, summed, rtol=1e-5, atol=1e-4)


def test_a_long_conversation_is_refused_or_split_never_cropped() -> None:
    mask = np.ones(100, dtype=np.uint8)
    mask[60:] = 0  # the last piece of the long one trains nothing
    mask[[0, 50, 90]] = 0
    starts = np.array([0, 50, 90, 100])  # 50, 40 and 10 tokens
    with pytest.raises(
        DataError, match=r"conversation 0 of the train split \(in file order\) is 50 tokens, longer than"
    ):
        fit_pieces(starts, mask, 16, "refuse", "train")
    pieces = fit_pieces(starts, mask, 16, "split", "train")
    # conversation 0 as windows of 17 overlapping by one; conversation 1's pieces after 60 train nothing: left out
    assert pieces.tolist() == [[0, 17], [16, 33], [32, 49], [48, 50], [50, 67], [90, 100]]
    trained = sorted(t for s, e in pieces for t in range(s + 1, e) if mask[t])
    assert trained == [t for t in range(100) if mask[t] and t not in (0, 50, 90)]  # each target once


def test_a_steps_rows_are_a_pure_function_of_seed_and_step() -> None:
    a, b = ChatSampler(10, 3, seed=5), ChatSampler(10, 3, seed=5)
    assert a.steps_per_epoch == 3
    epoch0 = np.concatenate([a.batch_rows(s) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9  # each row at most once an epoch
    assert b.batch_rows(4).tolist() == a.batch_rows(4).tolist()  # resumed mid-run: the same rows
    assert a.batch_rows(0).tolist() != a.batch_rows(3).tolist()  # each epoch in its own order


def test_segments_restart_positions_and_attend_only_within_themselves() -> None:
    from lmtrain.model.packing import Packing

    packing = Packing.of_segments(torch.tensor([[0, 0, 1, 1, 1, 2], [5, 5, 5, 5, 5, 5]]))
    assert packing.positions.tolist() == [[0, 1, 0, 1, 2, 0], [0, 1, 2, 3, 4, 5]]
    mask = packing.mask[:, 0]
    assert mask[0, 3].tolist() == [False, False, True, True, False, False]  # token 3 sees 2..3, its segment's start
    assert mask[1].equal(torch.ones(6, 6, dtype=torch.bool).tril())  # one segment: plain causal attention


@pytest.mark.parametrize("variant", ["gpt2", "modern"])
def test_with_doc_mask_a_document_in_a_window_is_computed_as_it_is_alone(variant: str) -> None:
    """--doc-mask: each document of a training window (from its end-of-document token on) sees only itself."""
    from lmtrain.distributed.world import World
    from lmtrain.train.feed import TextFeed

    cfg = dataclasses.replace(MODEL_VARIANTS[variant], max_seq_len=32)
    model = randomised(build_model(cfg)).eval()
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, cfg.vocab_size, size=400)
    tokens[[5, 19, 40, 77, 130, 200, 260, 333]] = 0  # end-of-document tokens
    feed = TextFeed(tokens, seq_len=32, batch_size=4, seed=0, doc_mask_id=0)
    batch = feed.step_batches(0, world=World(device=torch.device("cpu")), accumulation=1, device="cpu").batches[0]
    with torch.no_grad():
        nll = model.token_losses(model.hidden(batch.x, packing=batch.packing), batch.y).nll
        for row in range(batch.x.size(0)):
            x, y = batch.x[row], batch.y[row]
            starts = [0, *(torch.nonzero(x == 0)[:, 0].tolist())]
            for a, b in zip(starts, [*starts[1:], 32]):
                if a == b:
                    continue
                alone = model.token_losses(model.hidden(x[None, a:b]), y[None, a:b]).nll[0]
                torch.testing.assert_close(nll[row, a:b], alone, rtol=1e-5, atol=1e-5)
    plain = TextFeed(tokens, seq_len=32, batch_size=4, seed=0)
    assert (
        plain.step_batches(0, world=World(device=torch.device("cpu")), accumulation=1, device="cpu").batches[0].packing
        is None
    )


def test_a_run_trains_with_doc_mask(tmp_path) -> None:
    from conftest import SAMPLE, read_jsonl, train_args
    from gguf_helpers import cli

    code, _, err = cli(*train_args(SAMPLE, tmp_path / "run", "--doc-mask", "--max-steps", "3", "--eval-every", "3"))
    assert code == 0, err
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert all(np.isfinite(r["loss"]) for r in records if r["event"] == "step")
    assert np.isfinite(next(r["val_loss"] for r in records if r["event"] == "eval"))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["doc_mask"] is True


def test_validation_rows_are_capped_evenly_over_the_held_out_conversations() -> None:
    from lmtrain.train.feed import ChatFeed

    class Split:  # the one thing ChatFeed reads of a packed split for this: its rows
        def __init__(self, n: int) -> None:
            self.rows, self.seq_len = [[i] for i in range(n)], 32

    every = ChatFeed(Split(8), Split(10), batch_size=2, seed=0, pad_id=0)
    capped = ChatFeed(Split(8), Split(10), batch_size=2, seed=0, pad_id=0, eval_rows=4)
    assert every.val_rows.tolist() == list(range(10)) and every.eval_windows == 10
    assert capped.val_rows.tolist() == [0, 3, 6, 9] and capped.eval_windows == 4  # not the 4 longest-first rows
