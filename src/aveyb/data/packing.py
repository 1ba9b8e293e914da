"""Tokenise documents and pack them into fixed-length sequences (SPEC section 9).

Default (the paper's recipe): documents are joined into one stream, each followed by EOS,
and cut every ``seq_len`` tokens; no padding, a document may run across two sequences.
With ``keep_boundaries=True`` a sequence starts at a document start and holds whole
documents only; the rest is padded (``attention_mask`` 0). A document longer than a
sequence is cut into full-length pieces.

The packer's position is ``(epoch, documents read, tokens waiting)``: small, JSON-friendly,
and enough to continue exactly (:meth:`SequencePacker.state_dict`). Every data-parallel
rank reads the same global stream and keeps its own slice of each global batch
(:func:`rank_slice`), so the batches of a run do not depend on the number of ranks and two
ranks never see the same sequence.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np

from aveyb.data.sources import SourceStats, iter_documents


class SequencePacker:
    """An endless (``repeat=True``) or one-pass stream of packed sequences.

    ``holdout_every=n`` splits documents: those whose index (in source order) is a multiple
    of ``n`` form the validation stream (``role="val"``), the others the training stream.
    Yields ``(input_ids, attention_mask)``, int64 arrays of length ``seq_len``.
    """

    def __init__(self, sources: list[dict], tokenizer, seq_len: int, *, keep_boundaries: bool = False,
                 holdout_every: int = 0, role: str = "train", repeat: bool = True, encode_batch: int = 64):
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {seq_len}")
        if role not in ("train", "val"):
            raise ValueError(f"role must be 'train' or 'val', got {role!r}")
        if role == "val" and holdout_every <= 0:
            raise ValueError("a validation stream needs holdout_every > 0")
        self.sources = sources
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.keep_boundaries = keep_boundaries
        self.holdout_every = holdout_every
        self.role = role
        self.repeat = repeat
        self.encode_batch = encode_batch
        self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id)
        self.stats = SourceStats()
        self.epoch = 0
        self.docs_read = 0      # documents consumed (all roles) in the current epoch
        self.current: list[int] = []
        self.pending: deque[list[int]] = deque()
        self.sequences = 0      # sequences yielded so far (the global sequence index)

    # ---- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "docs_read": self.docs_read, "current": list(self.current),
                "pending": [list(p) for p in self.pending], "sequences": self.sequences,
                "stats": self.stats.as_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.docs_read = int(state["docs_read"])
        self.current = [int(t) for t in state["current"]]
        self.pending = deque([int(t) for t in p] for p in state["pending"])
        self.sequences = int(state["sequences"])
        for key, value in state.get("stats", {}).items():
            setattr(self.stats, key, value)

    # ---- documents -----------------------------------------------------------------------
    def _keep(self, index: int) -> bool:
        if self.holdout_every <= 0:
            return True
        held_out = index % self.holdout_every == 0
        return held_out if self.role == "val" else not held_out

    def _encode(self, texts: list[str]) -> list[list[int]]:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:
            return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _documents(self) -> Iterator[list[int]]:
        """Token lists of this role's documents from the saved position on; advances docs_read."""
        if self.epoch == 0:  # count each document once (the skip below recounts the first ones)
            self.stats = stats = SourceStats()
        else:
            stats = SourceStats()
        docs = iter_documents(self.sources, stats, eos_token_id=self.eos_id)
        for _ in range(self.docs_read):  # skip what was consumed before a resume (no tokenising)
            if next(docs, None) is None:
                break
        index = self.docs_read
        batch: list[tuple[int, object]] = []

        def flush():
            texts = [d for _, d in batch if isinstance(d, str)]
            encoded = iter(self._encode(texts)) if texts else iter(())
            for i, d in batch:
                if d is None:
                    ids = None
                elif isinstance(d, str):
                    ids = next(encoded)
                else:
                    ids = d.tolist() if hasattr(d, "tolist") else [int(t) for t in d]
                yield i, ids

        for doc in docs:
            if self._keep(index):
                batch.append((index, doc))
            else:
                batch.append((index, None))
            index += 1
            if len(batch) >= self.encode_batch:
                yield from self._consume(flush())
                batch = []
        yield from self._consume(flush())

    def _consume(self, items) -> Iterator[list[int]]:
        for i, ids in items:
            self.docs_read = i + 1
            if ids is not None:
                yield ids

    # ---- packing -------------------------------------------------------------------------
    def _add(self, ids: list[int]) -> None:
        T = self.seq_len
        doc = list(ids) + [self.eos_id]
        if not self.keep_boundaries:
            self.current.extend(doc)
            full = len(self.current) // T
            if full:  # cut every full sequence at once (one copy, not one per sequence)
                self.pending.extend(self.current[i * T:(i + 1) * T] for i in range(full))
                self.current = self.current[full * T:]
            return
        if len(self.current) + len(doc) > T and self.current:
            self.pending.append(self.current)
            self.current = []
        if len(doc) > T:
            pieces = (len(doc) - 1) // T  # full pieces; the rest (1..T tokens) stays
            self.pending.extend(doc[i * T:(i + 1) * T] for i in range(pieces))
            doc = doc[pieces * T:]
        if doc == [self.eos_id]:  # the document filled its last piece exactly: no lone separator
            return
        self.current.extend(doc)
        if len(self.current) == T:
            self.pending.append(self.current)
            self.current = []

    def _emit(self, seq: list[int]) -> tuple[np.ndarray, np.ndarray]:
        n = len(seq)
        ids = np.full(self.seq_len, self.pad_id, dtype=np.int64)
        ids[:n] = seq
        mask = np.zeros(self.seq_len, dtype=np.int64)
        mask[:n] = 1
        self.sequences += 1
        return ids, mask

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            while self.pending:
                yield self._emit(self.pending.popleft())
            produced_any, started_at = False, self.docs_read
            for ids in self._documents():
                produced_any = True
                self._add(ids)
                while self.pending:
                    yield self._emit(self.pending.popleft())
            if not self.repeat:
                if self.current and self.keep_boundaries:
                    seq, self.current = self.current, []
                    yield self._emit(seq)
                return
            if not produced_any and started_at == 0:
                raise ValueError(f"the data sources hold no {self.role} documents")
            self.epoch += 1
            self.docs_read = 0


def rank_slice(global_batch: int, micro_batch: int, rank: int, world: int) -> list[list[int]]:
    """Offsets, inside one global batch, of this rank's sequences for each micro-step.

    Micro-step ``a`` of rank ``r`` takes offsets ``a·m·W + r·m … + m``: the ranks of one
    micro-step together read a contiguous block, and no two ranks share an offset.
    """
    per_step = micro_batch * world
    if global_batch % per_step:
        raise ValueError(f"global batch of {global_batch} sequences is not divisible by "
                         f"micro_batch_size × ranks = {micro_batch} × {world}")
    accum = global_batch // per_step
    return [[a * per_step + rank * micro_batch + j for j in range(micro_batch)] for a in range(accum)]
