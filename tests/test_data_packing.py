"""Sources, packing, document boundaries, shard disjointness, resume position."""

import gzip
import json
from itertools import islice

import numpy as np
import pytest

from aveyb.data.packing import SequencePacker, rank_slice
from aveyb.data.sources import SourceStats, iter_documents, validate_source


class CharTokenizer:
    """One id per character (+3), EOS 1, pad 0: makes packing checks readable."""

    eos_token_id, pad_token_id = 1, 0

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[ord(c) % 250 + 3 for c in t] for t in texts]}


def _jsonl(path, texts, gz=False):
    data = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


DOCS = ["aaaa", "bbbbbbbbbbbb", "cc", "dddddddddddddddddddddd", "e", "ffffff", "gggggggg"]


def _packer(tmp_path, **kw):
    src = validate_source({"type": "jsonl", "path": _jsonl(tmp_path / "d.jsonl", DOCS)})
    return SequencePacker([src], CharTokenizer(), kw.pop("seq_len", 8), **kw)


def test_eos_packing_concatenates_all_documents(tmp_path):
    packer = _packer(tmp_path, repeat=False)
    seqs = [ids for ids, mask in packer]
    assert all(len(s) == 8 for s in seqs) and all(m.all() for _, m in _packer(tmp_path, repeat=False))
    stream = np.concatenate(seqs).tolist()
    expected = []
    for d in DOCS:
        expected += [ord(c) % 250 + 3 for c in d] + [1]
    assert stream == expected[: len(stream)]
    assert len(expected) - len(stream) < 8  # only the last partial sequence is dropped


def test_keep_boundaries_starts_every_sequence_at_a_document(tmp_path):
    out = list(_packer(tmp_path, keep_boundaries=True, repeat=False))
    tok = lambda c: ord(c) % 250 + 3
    starts = {tok(d[0]) for d in DOCS}
    long_docs = {tok(d[0]) for d in DOCS if len(d) + 1 > 8}
    for ids, mask in out:
        n = int(mask.sum())
        assert (ids[n:] == 0).all() and mask[:n].all() and not mask[n:].any()
        assert int(ids[0]) in starts
        # a sequence holds whole documents, or one piece of a document longer than a sequence
        real = ids[:n].tolist()
        if int(ids[0]) not in long_docs:
            assert real[-1] == 1
    # every token of every document arrives, in order
    stream = [t for ids, mask in out for t in ids[: int(mask.sum())].tolist() if t != 1]
    assert stream == [tok(c) for d in DOCS for c in d]


def test_resume_position_is_exact(tmp_path):
    full = [ids.tolist() for ids, _ in islice(iter(_packer(tmp_path)), 12)]  # several epochs
    packer = _packer(tmp_path)
    it = iter(packer)
    head = [next(it)[0].tolist() for _ in range(5)]
    state = json.loads(json.dumps(packer.state_dict()))
    resumed = _packer(tmp_path)
    resumed.load_state_dict(state)
    tail = [ids.tolist() for ids, _ in islice(iter(resumed), 7)]
    assert head + tail == full
    assert resumed.sequences == 12


def test_holdout_split_is_disjoint(tmp_path):
    train = _packer(tmp_path, holdout_every=3, repeat=False, keep_boundaries=True, seq_len=32)
    val = _packer(tmp_path, holdout_every=3, role="val", repeat=False, keep_boundaries=True, seq_len=32)
    firsts = lambda p: {int(ids[0]) for ids, _ in p}
    held = {ord(DOCS[i][0]) % 250 + 3 for i in (0, 3, 6)}
    assert firsts(val) <= held
    assert not (firsts(train) & held)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_rank_slices_are_disjoint_and_cover_the_batch(world):
    micro = 2
    seen = []
    for rank in range(world):
        for offsets in rank_slice(16, micro, rank, world):
            assert len(offsets) == micro
            seen += offsets
    assert sorted(seen) == list(range(16))


def test_rank_slice_rejects_indivisible_batch():
    with pytest.raises(ValueError, match="not divisible"):
        rank_slice(10, 4, 0, 2)


def test_empty_and_undecodable_documents(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps({"text": "good one"}).encode(), json.dumps({"text": "   "}).encode(),
             json.dumps({"text": ""}).encode(), b'{"text": "caf\xe9 broken"}', b"not json", json.dumps({"x": 1}).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    stats = SourceStats()
    docs = list(iter_documents([validate_source({"type": "jsonl", "path": str(path)})], stats))
    assert docs[0] == "good one" and "\ufffd" in docs[1]
    assert stats.documents == 2 and stats.empty_skipped == 2 and stats.undecodable == 1 and stats.bad_records == 2


def test_formats_and_round_robin(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl.gz", ["a1", "a2", "a3"], gz=True)
    (tmp_path / "t.txt").write_text("t1\n\nt2\n")
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"text": ["p1", None, "p2"]}), tmp_path / "p.parquet")
    np.array([5, 6, 1, 7, 1], dtype=np.uint16).tofile(tmp_path / "ids.bin")
    sources = [validate_source(s) for s in (
        {"type": "jsonl", "path": a}, {"type": "text", "path": str(tmp_path / "*.txt")},
        {"type": "parquet", "path": str(tmp_path / "p.parquet")}, {"type": "tokens", "path": str(tmp_path / "ids.bin")})]
    stats = SourceStats()
    docs = [d if isinstance(d, str) else d.tolist() for d in iter_documents(sources, stats, eos_token_id=1)]
    assert docs == ["a1", "t1", "p1", [5, 6], "a2", [7], "a3", "t2", "p2"]  # empty turns are skipped
    assert stats.empty_skipped == 2  # the blank line and the null parquet row


def test_bundled_corpus_and_errors(tmp_path):
    src = validate_source({"type": "bundled"})
    assert len(src["files"]) >= 4
    first = next(iter_documents([src]))
    assert isinstance(first, str) and len(first) > 100
    with pytest.raises(FileNotFoundError):
        validate_source({"type": "jsonl", "path": str(tmp_path / "missing-*.jsonl")})
    with pytest.raises(FileNotFoundError):
        validate_source({"type": "corpus", "path": str(tmp_path / "nowhere")})
    with pytest.raises(ValueError, match="unknown keys"):
        validate_source({"type": "jsonl", "path": "x", "colour": "red"})
    with pytest.raises(ValueError, match="unknown source type"):
        validate_source({"type": "ftp"})


def test_hf_datasets_source_streaming(tmp_path):
    pytest.importorskip("datasets")
    path = _jsonl(tmp_path / "hf.jsonl", ["first doc", "", "second doc"])
    spec = validate_source({"type": "hf", "name": "json", "data_files": path, "split": "train"})
    stats = SourceStats()
    assert list(iter_documents([spec], stats)) == ["first doc", "second doc"]
    assert stats.empty_skipped == 1
