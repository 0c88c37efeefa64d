"""What the doctor says about a run on conversations (--dataset chat): how full the packed rows are, the share of
computed tokens that is trained, and whether the end-of-turn token is trained at all (a model never trained on it
never stops)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmtrain.findings import Finding


@dataclass(frozen=True)
class ConversationStats:
    """The train split's conversations as the run packs them."""

    conversations: int
    pieces: int
    """Conversations, and the pieces of those split under --chat-overflow split, as packed."""
    rows: int
    seq_len: int
    filled: float
    """Share of the rows' positions holding conversation tokens (the rest is padding)."""
    trained: float
    """Share of the rows' positions whose target is trained (assistant tokens and end of turn)."""
    end_of_turn_trained: int
    """Trained targets that are end-of-turn ids."""


def conversation_stats(feed) -> ConversationStats:  # noqa: ANN001 - a ChatFeed
    """The stats of a ChatFeed's train split."""
    packed = feed.train
    positions = len(packed.rows) * feed.seq_len
    ids, mask = np.asarray(packed.ids), np.asarray(packed.mask).astype(bool)
    ends = np.isin(ids[mask], np.asarray(sorted(packed.end_of_turn), dtype=ids.dtype))
    return ConversationStats(
        conversations=packed.conversations,
        pieces=len(packed.pieces),
        rows=len(packed.rows),
        seq_len=feed.seq_len,
        filled=float((packed.pieces[:, 1] - packed.pieces[:, 0] - 1).sum()) / positions,
        trained=float(packed.row_trained.sum()) / positions,
        end_of_turn_trained=int(ends.sum()),
    )


def conversations_finding(c: ConversationStats) -> Finding:
    what = (
        f"{c.conversations:,} training conversations packed into {c.rows:,} rows of {c.seq_len} tokens "
        f"({c.filled:.0%} filled, each attending only to itself); {c.trained:.0%} of the computed tokens are trained "
        f"(assistant replies and their end-of-turn tokens)"
    )
    if c.pieces > c.conversations:
        what += (
            f"; long conversations were split into {c.pieces - c.conversations:,} more pieces (--chat-overflow split)"
        )
    if c.end_of_turn_trained == 0:
        return Finding(
            "WARN",
            "context",
            f"{what}; but no end-of-turn token is ever trained, so the model will not learn to stop; use a chat "
            f"template whose assistant turns end with one",
        )
    return Finding("OK", "context", what)
