"""Building, storing and loading the memorization index, and finding a run's index."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from judgeserve.detectors import _index_build
from judgeserve.detectors._index_build import _estimate_tokens
from judgeserve.detectors._ngram_index import NgramIndex
from judgeserve.detectors._tokens import tokenize
from judgeserve.detectors.memorization import (
    MemorizationScorer,
    build_index,
    describe_indexes,
    indexed_runs,
    run_index_dir,
)
from judgeserve.exceptions import ConfigError, IndexFileError
from judgeserve.schema import Sample
from judgeserve.settings import Settings

from .test_memorization import RUN, sentences


def _doc(seed: int, tokens: int) -> str:
    """A document of exactly ``tokens`` tokens (tokens joined by spaces tokenize back)."""
    words = tokenize(" ".join(sentences(seed, tokens // 8 + 2)))
    assert len(words) >= tokens
    return " ".join(words[:tokens])


def _jsonl(path: Path, lines: Sequence[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _anchors(tokens: int, n: int, min_span: int) -> int:
    """Anchors of a kept document: n-grams at positions 0, stride, 2*stride..."""
    return (tokens - n) // (min_span - n + 1) + 1


def test_build_counts_tokens_ngrams_records_and_anchors_per_document(tmp_path: Path) -> None:
    n, min_span = 4, 12
    sizes = [12, 11, 40, 3, 100]  # exactly min_span, one short of it, long, shorter than n
    docs = [_doc(60 + i, k) for i, k in enumerate(sizes)]
    a = _jsonl(
        tmp_path / "a.jsonl",
        [{"text": docs[0]}, {"body": "no text"}, "", {"text": docs[1]}, [1, 2], {"text": 7}],
    )
    b = _jsonl(tmp_path / "b.ndjson", [{"text": docs[2]}, "3", {"text": docs[3]}])
    c = tmp_path / "c.txt"
    c.write_text(docs[4] + "\n")
    out = tmp_path / "idx" / RUN
    stats = build_index([a, b, c], out, n=n, min_span=min_span, fpr=0.01, progress=False)
    assert stats.path == str(out)
    assert stats.documents == 5
    assert stats.skipped == 3 + 1  # non-string text, list, number; "3" in b
    assert stats.tokens == sum(sizes)
    assert stats.ngrams == sum(max(0, k - n + 1) for k in sizes)
    # Records are kept for documents of min_span tokens or more, and for every text file.
    assert stats.records == 3
    assert stats.anchors == sum(_anchors(k, n, min_span) for k in (12, 40, 100))
    assert stats.fpr == 0.01
    assert 0 < stats.fpr_estimate < 0.01
    assert stats.bytes == sum(f.stat().st_size for f in out.iterdir())
    assert stats.bytes_per_token == stats.bytes / sum(sizes)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["stride"] == min_span - n + 1 == 9
    assert (meta["n"], meta["min_span"], meta["fpr"]) == (n, min_span, 0.01)
    assert (meta["tokens"], meta["ngrams"], meta["documents"]) == (sum(sizes), stats.ngrams, 5)
    assert meta["text_field"] == "text"
    # The folder records what the build estimated, for whoever inspects it later.
    assert meta["fpr_estimate"] == stats.fpr_estimate
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["created"])
    assert [(Path(s["path"]).name, s["kind"]) for s in meta["sources"]] == [
        ("a.jsonl", "jsonl"),
        ("b.ndjson", "jsonl"),
        ("c.txt", "text"),
    ]
    assert [s["size"] for s in meta["sources"]] == [p.stat().st_size for p in (a, b, c)]


def test_a_document_of_exactly_min_span_tokens_can_be_memorized(
    tmp_path: Path, make_sample: Callable[..., Sample]
) -> None:
    doc = _doc(70, 50)
    train = _jsonl(tmp_path / "t.jsonl", [{"text": _doc(71, 80)}, {"text": doc}])
    build_index([train], tmp_path / "idx" / RUN, progress=False)
    [out] = MemorizationScorer(index_dir=tmp_path / "idx").score(
        [make_sample(f"zqx {doc} zqx", run=RUN)]
    )
    assert out[1].value == 50 and out[1].details["confirmed"] is True
    assert out[2].value is True


def test_a_short_text_file_keeps_its_record_so_a_short_copy_is_confirmed(
    tmp_path: Path, make_sample: Callable[..., Sample]
) -> None:
    doc = _doc(72, 30)
    (tmp_path / "note.txt").write_text(doc)
    stats = build_index([tmp_path / "note.txt"], tmp_path / "idx" / RUN, progress=False)
    assert (stats.records, stats.anchors) == (1, 1)
    [out] = MemorizationScorer(index_dir=tmp_path / "idx").score(
        [make_sample(f"zqx {doc} zqx", run=RUN)]
    )
    assert out[1].value == 30
    assert out[1].details["confirmed"] is True
    assert out[1].details["offset"] == 0 and Path(out[1].details["source"]).name == "note.txt"
    assert out[2].value is False


def test_long_documents_are_split_into_records_that_reread_exactly_their_text(
    tmp_path: Path, make_sample: Callable[..., Sample]
) -> None:
    long_doc = " ".join(sentences(80, 250))  # ~17 KB: five pieces of about 4 KB
    book = "\n".join(sentences(81, 250))
    train = _jsonl(tmp_path / "t.jsonl", [{"text": "a short one"}, {"text": long_doc}])
    (tmp_path / "book.txt").write_bytes(book.encode() + b"\n\xff tail\n")
    stats = build_index([train, tmp_path / "book.txt"], tmp_path / "idx" / RUN, progress=False)
    # Anchor positions count from each document's start, across its records.
    doc_tokens = [len(tokenize(long_doc)), len(tokenize(book + "\n\ufffd tail\n"))]
    assert stats.anchors == sum(_anchors(k, 8, 50) for k in doc_tokens)
    index = NgramIndex.load(tmp_path / "idx" / RUN)
    per_source = np.bincount(index.records["source"][index.anchors["record"]], minlength=2)
    assert per_source.tolist() == [_anchors(k, 8, 50) for k in doc_tokens]
    assert index.path == tmp_path / "idx" / RUN
    texts = [index.record_text(r) for r in range(len(index.records))]
    sources = index.records["source"].tolist()
    conts = index.records["cont"].tolist()
    json_texts = [t for t, s in zip(texts, sources, strict=True) if s == 0]
    text_texts = [t for t, s in zip(texts, sources, strict=True) if s == 1]
    assert len(json_texts) >= 4 and len(text_texts) >= 4
    assert all(len(t) <= 4096 + 20 for t in json_texts)  # cut at the first space after 4 KB
    assert "".join(json_texts) == long_doc
    assert "".join(text_texts) == book + "\n\ufffd tail\n"
    # Each document's first record starts it; the others continue it.
    assert conts == [0] + [1] * (len(json_texts) - 1) + [0] + [1] * (len(text_texts) - 1)
    # The same n-grams and anchors whether or not the text is hashed in small batches.
    words = tokenize(long_doc)
    copy = " ".join(words[len(words) // 2 - 400 : len(words) // 2 + 400])
    [out] = MemorizationScorer(index_dir=tmp_path / "idx").score(
        [make_sample(f"zqx {copy} zqx", run=RUN)]
    )
    assert out[1].value == 800 and out[2].value is True


def test_hashing_in_small_batches_builds_the_same_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [{"text": _doc(90 + i, 60 + 37 * i)} for i in range(6)]
    train = _jsonl(tmp_path / "t.jsonl", docs)
    (tmp_path / "b.txt").write_text("\n".join(sentences(99, 400)))
    files = [train, tmp_path / "b.txt"]
    one = build_index(files, tmp_path / "one" / RUN, expected_tokens=9000, progress=False)
    monkeypatch.setattr(_index_build, "FLUSH_TOKENS", 50)
    many = build_index(files, tmp_path / "many" / RUN, expected_tokens=9000, progress=False)
    assert (many.tokens, many.ngrams, many.anchors, many.records) == (
        one.tokens,
        one.ngrams,
        one.anchors,
        one.records,
    )
    for name in ("ngrams.bloom", "anchors.npy", "records.npy"):
        assert (tmp_path / "many" / RUN / name).read_bytes() == (
            tmp_path / "one" / RUN / name
        ).read_bytes(), name


def test_the_bloom_filter_is_sized_for_the_fpr_asked(tmp_path: Path) -> None:
    train = _jsonl(tmp_path / "t.jsonl", [{"text": _doc(100 + i, 500)} for i in range(8)])
    ngrams = 8 * (500 - 8 + 1)
    for fpr in (0.002, 0.45):
        stats = build_index(
            [train], tmp_path / "idx" / RUN, fpr=fpr, expected_tokens=ngrams, progress=False
        )
        assert stats.ngrams == ngrams
        assert stats.fpr_estimate == pytest.approx(fpr, rel=0.05)


def test_the_token_estimate_counts_the_text_field_of_jsonl_lines(tmp_path: Path) -> None:
    lines: list[object] = ["{broken", [1, 2], {"text": 5}, {"body": "x y"}]
    lines += [{"text": "a b c d", "id": i} for i in range(1000)]
    train = _jsonl(tmp_path / "t.jsonl", lines)
    # 4000 tokens, plus 2 % and 1000 of margin; the JSON syntax around them is not counted.
    assert 4000 * 1.02 + 1000 - 5 <= _estimate_tokens([train], "text") <= 4000 * 1.02 + 1001
    assert _estimate_tokens([train], "body") == int(2 * 1.02) + 1000
    text = tmp_path / "t.txt"
    text.write_text("word, " * 2000)  # 4000 tokens
    assert _estimate_tokens([text], "text") == int(4000 * 1.02) + 1000
    both = _estimate_tokens([train, text], "text")
    assert 8000 * 1.02 + 1000 - 5 <= both <= 8000 * 1.02 + 1001
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert _estimate_tokens([empty], "text") == 1000


def test_the_token_estimate_extrapolates_from_the_first_4_mib(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    head = b"a " * (2 << 20)  # 4 MiB of 2-byte tokens, then 2 MiB of 8-byte ones
    big.write_bytes(head + b"abcdefg " * (1 << 18))
    assert _estimate_tokens([big], "text") == int((2 << 20) * 1.5 * 1.02) + 1000


def test_the_token_estimate_ignores_a_jsonl_line_cut_by_the_4_mib_head(tmp_path: Path) -> None:
    line = json.dumps({"text": "a " * 500_000}).encode() + b"\n"  # ~1 MiB, 500,000 tokens
    big = tmp_path / "big.jsonl"
    big.write_bytes(line * 5)  # the head holds 3 whole lines and most of a 4th
    assert _estimate_tokens([big], "text") == int(5 * 500_000 * 1.02) + 1000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 1, "min_span": 5}, "need 2 <= n <= min_span (got n=1, min_span=5)"),
        ({"n": 8, "min_span": 7}, "need 2 <= n <= min_span (got n=8, min_span=7)"),
        ({"fpr": 0.0}, "fpr must lie in (0, 0.5), got 0.0"),
        ({"fpr": 0.5}, "fpr must lie in (0, 0.5), got 0.5"),
    ],
)
def test_build_refuses_bad_parameters(tmp_path: Path, kwargs: Any, message: str) -> None:
    (tmp_path / "t.txt").write_text(_doc(110, 40))
    with pytest.raises(ConfigError) as err:
        build_index([tmp_path / "t.txt"], tmp_path / "idx" / RUN, progress=False, **kwargs)
    assert str(err.value) == message
    assert not (tmp_path / "idx").exists()


def test_build_names_every_missing_file_and_needs_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        build_index([tmp_path / "a.txt", tmp_path / "b.txt"], tmp_path / "idx", progress=False)
    assert str(err.value) == (
        f"training file(s) {tmp_path / 'a.txt'}, {tmp_path / 'b.txt'} do not exist"
    )
    with pytest.raises(ConfigError, match=r"^no training files given$"):
        build_index([], tmp_path / "idx", progress=False)


def test_the_smallest_n_gram_is_two_tokens(
    tmp_path: Path, make_sample: Callable[..., Sample]
) -> None:
    doc = _doc(111, 20)
    (tmp_path / "t.txt").write_text(doc)
    stats = build_index([tmp_path / "t.txt"], tmp_path / "idx" / RUN, n=2, min_span=2)
    assert stats.ngrams == 19 and stats.anchors == 19
    [out] = MemorizationScorer(index_dir=tmp_path / "idx").score(
        [make_sample(f"zqx {doc} zqx", run=RUN)]
    )
    assert out[1].value == 20 and out[2].value is True


def test_build_shows_its_progress_in_bytes_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "t.txt").write_text(_doc(112, 40))
    build_index([tmp_path / "t.txt"], tmp_path / "idx" / RUN)
    err = capsys.readouterr().err
    assert "indexing: 100%" in err
    size = (tmp_path / "t.txt").stat().st_size
    assert re.search(rf"\| {size}/{size} \[[^]]*[0-9.]+[kMG]?B/s\]", err), err


def test_a_leftover_build_folder_does_not_block_the_next_build(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text(_doc(113, 60))
    out = tmp_path / "idx" / RUN
    leftover = tmp_path / "idx" / f".{RUN}.tmp-{os.getpid()}"
    leftover.mkdir(parents=True)
    (leftover / "junk").write_text("from a build that crashed")
    build_index([tmp_path / "t.txt"], out, progress=False)
    build_index([tmp_path / "t.txt"], out, progress=False)  # replaces the first one
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [RUN]
    assert sorted(p.name for p in out.iterdir()) == [
        "anchors.npy",
        "meta.json",
        "ngrams.bloom",
        "records.npy",
    ]
    assert NgramIndex.load(out).meta["tokens"] == 60


@pytest.fixture
def built(tmp_path: Path) -> Path:
    (tmp_path / "t.txt").write_text(_doc(114, 80))
    build_index([tmp_path / "t.txt"], tmp_path / "idx" / RUN, progress=False)
    return tmp_path / "idx" / RUN


def _edit_meta(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    meta = json.loads((path / "meta.json").read_text())
    change(meta)
    (path / "meta.json").write_text(json.dumps(meta))


def _replace_file(path: Path, name: str, data: bytes) -> None:
    """Swap an index file for ``data`` and record its size and hash, as a build would."""
    (path / name).write_bytes(data)

    def fix(meta: dict[str, Any]) -> None:
        meta["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    _edit_meta(path, fix)


def _npy(array: np.ndarray[Any, Any], tmp: Path) -> bytes:
    np.save(tmp / "x.npy", array, allow_pickle=True)
    return (tmp / "x.npy").read_bytes()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda d: (d / "meta.json").write_text("[1, 2]"),
            r"meta\.json is not a judgeserve memorization index; rebuild it with "
            r"`judgeserve index build --run RUN FILE`",
        ),
        (
            lambda d: _edit_meta(d, lambda m: m.update(format="other")),
            r"meta\.json is not a judgeserve memorization index",
        ),
        (
            lambda d: (d / "meta.json").write_bytes(b"\xff\xfe{}"),
            r"memorization index file .*meta\.json is unreadable",
        ),
        (
            lambda d: _edit_meta(d, lambda m: m.update(version=2)),
            r"built by another judgeserve version \(format 2, tokenizer judgeserve-regex-1\)",
        ),
        (
            lambda d: _edit_meta(d, lambda m: m.update(tokenizer="bpe-9")),
            r"built by another judgeserve version \(format 1, tokenizer bpe-9\)",
        ),
        (
            lambda d: _edit_meta(d, lambda m: m["files"].pop("records.npy")),
            r"records\.npy is corrupt \(size \d+, expected None, or its SHA-256 differs\)",
        ),
        (
            lambda d: _edit_meta(d, lambda m: m["files"]["anchors.npy"].update(size=1)),
            r"anchors\.npy is corrupt \(size \d+, expected 1, or its SHA-256 differs\)",
        ),
        (
            lambda d: _edit_meta(d, lambda m: m["files"]["anchors.npy"].update(sha256="0" * 64)),
            r"anchors\.npy is corrupt",
        ),
        (
            lambda d: (d.parent.parent / "t.txt").unlink(),
            r"training file .*t\.txt behind the memorization index .* is missing or changed "
            r"since the index was built; restore it or rebuild",
        ),
        (
            lambda d: _replace_file(d, "ngrams.bloom", b"short"),
            r"memorization index .* cannot be read",
        ),
        (
            lambda d: _replace_file(
                d, "records.npy", _npy(np.array([{"a": 1}], dtype=object), d.parent)
            ),
            r"memorization index .* cannot be read \(Object arrays cannot be loaded",
        ),
        (
            lambda d: _replace_file(
                d, "anchors.npy", _npy(np.array([{"a": 1}], dtype=object), d.parent)
            ),
            r"memorization index .* cannot be read \(Object arrays cannot be loaded",
        ),
        (
            lambda d: _replace_file(d, "anchors.npy", _npy(np.zeros(3, np.int64), d.parent)),
            r"memorization index .* has unexpected array types",
        ),
        (
            lambda d: _replace_file(d, "records.npy", _npy(np.zeros(3, np.int64), d.parent)),
            r"memorization index .* has unexpected array types",
        ),
    ],
    ids=[
        "meta-not-object",
        "foreign-format",
        "meta-not-utf8",
        "other-version",
        "other-tokenizer",
        "file-not-listed",
        "size-differs",
        "hash-differs",
        "training-file-gone",
        "bloom-truncated",
        "pickled-records",
        "pickled-anchors",
        "anchors-wrong-dtype",
        "records-wrong-dtype",
    ],
)
def test_a_foreign_or_mismatched_index_is_refused_with_a_clear_error(
    built: Path, make_sample: Callable[..., Sample], damage: Callable[[Path], object], message: str
) -> None:
    damage(built)
    scorer = MemorizationScorer(index_dir=built.parent)
    sample = make_sample("some text to look up", run=RUN)
    with pytest.raises(IndexFileError, match=message) as first:
        scorer.score([sample])
    # Every later batch is told the same, without the index being read again.
    with pytest.raises(IndexFileError) as again:
        scorer.score([sample])
    assert str(again.value) == str(first.value)


def test_a_loaded_index_is_kept_until_meta_json_changes(
    built: Path, make_sample: Callable[..., Sample]
) -> None:
    doc = (built.parent.parent / "t.txt").read_text()
    scorer = MemorizationScorer(index_dir=built.parent)
    sample = make_sample(f"zqx {doc} zqx", run=RUN)
    assert scorer.score([sample])[0][2].value is True
    (built / "ngrams.bloom").write_bytes(b"damaged after loading")
    assert scorer.score([sample])[0][2].value is True  # still the index loaded
    _edit_meta(built, lambda m: None)  # a rebuild writes a new meta.json
    with pytest.raises(IndexFileError, match=r"ngrams\.bloom is corrupt"):
        scorer.score([sample])


def test_a_broken_index_is_used_again_once_rebuilt(
    built: Path, make_sample: Callable[..., Sample]
) -> None:
    scorer = MemorizationScorer(index_dir=built.parent)
    sample = make_sample("some text to look up", run=RUN)
    (built / "meta.json").unlink()
    with pytest.raises(IndexFileError, match=r"has no meta\.json"):
        scorer.score([sample])
    build_index([built.parent.parent / "t.txt"], built, progress=False)
    assert len(scorer.score([sample])[0]) == 3


def test_a_threshold_equal_to_the_index_min_span_is_accepted(
    built: Path, make_sample: Callable[..., Sample]
) -> None:
    sample = make_sample("text", run=RUN)
    assert len(MemorizationScorer(index_dir=built.parent, min_span=50).score([sample])[0]) == 3
    with pytest.raises(ConfigError) as err:
        MemorizationScorer(index_dir=built.parent, min_span=49).score([sample])
    assert str(err.value) == (
        f"min_span=49 is below the 50 tokens the index of run {RUN!r} can confirm; "
        "rebuild it with a smaller min_span"
    )


def test_skip_reason_names_the_run_the_folder_and_the_command(
    built: Path, make_sample: Callable[..., Sample]
) -> None:
    scorer = MemorizationScorer(index_dir=built.parent)
    assert scorer.skip_reason(make_sample("x", run=RUN), None) is None  # type: ignore[arg-type]
    other = make_sample("x", run="other-run")
    assert scorer.skip_reason(other, None) == (  # type: ignore[arg-type]
        f"no index for run other-run (looked in {built.parent / 'other-run'}; "
        "`judgeserve index build --run other-run FILE` makes one)"
    )


def test_the_index_folder_comes_from_settings_when_not_given(
    built: Path, make_sample: Callable[..., Sample], private_data_dir: Path
) -> None:
    sample = make_sample("x", run=RUN)
    from_settings = MemorizationScorer(settings=Settings(index_dir=built.parent))
    assert from_settings.skip_reason(sample, None) is None  # type: ignore[arg-type]
    # Neither: the process's settings (here the session's private data directory).
    default = MemorizationScorer()
    why = default.skip_reason(sample, None)  # type: ignore[arg-type]
    assert why is not None and f"looked in {private_data_dir / 'indexes' / RUN};" in why
    assert default.score([sample]) == [[]]


@pytest.mark.parametrize("run", ["../x", "/abs/dir", "", ".hidden", "a/b"])
def test_a_run_name_that_is_a_path_is_refused(tmp_path: Path, run: str) -> None:
    with pytest.raises(ConfigError) as err:
        run_index_dir(run, tmp_path)
    assert str(err.value) == (
        f"invalid run name {run!r}: a run name is letters, digits, '.', '_' and '-', "
        "starting with a letter or digit, not a path"
    )
    assert run_index_dir("run-1.a_b", tmp_path) == tmp_path / "run-1.a_b"


def test_indexed_runs_lists_only_run_folders_with_an_index(built: Path) -> None:
    root = built.parent
    (root / "empty-run").mkdir()
    (root / f".{RUN}.tmp-1").mkdir()
    (root / f".{RUN}.tmp-1" / "meta.json").write_text("{}")
    (root / "file-run").write_text("not a folder")
    (root / "b-run").mkdir()
    (root / "b-run" / "meta.json").write_text("{}")
    assert indexed_runs(root) == ["b-run", RUN]
    assert indexed_runs(root / "nowhere") == []
    assert describe_indexes(root) == f"memorization indexes in {root} for runs: b-run, {RUN}"
    for i in range(3):
        (root / f"r{i}").mkdir()
        (root / f"r{i}" / "meta.json").write_text("{}")
    assert describe_indexes(root, shown=4) == (
        f"memorization indexes in {root} for runs: b-run, {RUN}, r0, r1 and 1 more"
    )
    assert describe_indexes(root, shown=5) == (
        f"memorization indexes in {root} for runs: b-run, {RUN}, r0, r1, r2"
    )
    assert describe_indexes(root / "nowhere") == (
        f"no memorization index in {root / 'nowhere'}: memorization is not checked for any "
        "run (`judgeserve index build --run RUN FILE` makes one)"
    )


def test_jsonl_documents_are_read_from_the_text_field_given(
    tmp_path: Path, make_sample: Callable[..., Sample]
) -> None:
    doc = _doc(115, 70)
    train = _jsonl(tmp_path / "t.jsonl", [{"content": doc, "text": "not this one"}])
    stats = build_index([train], tmp_path / "idx" / RUN, text_field="content", progress=False)
    assert (stats.tokens, stats.skipped) == (70, 0)
    assert NgramIndex.load(tmp_path / "idx" / RUN).meta["text_field"] == "content"
    [out] = MemorizationScorer(index_dir=tmp_path / "idx").score(
        [make_sample(f"zqx {doc} zqx", run=RUN)]
    )
    assert out[1].value == 70 and out[2].value is True


def test_upper_case_jsonl_suffixes_are_read_as_jsonl(tmp_path: Path) -> None:
    docs = [{"text": _doc(116, 60)}, {"text": _doc(117, 55)}]
    upper = _jsonl(tmp_path / "T.JSONL", docs)
    nd = _jsonl(tmp_path / "U.NDJSON", docs)
    stats = build_index([upper, nd], tmp_path / "idx" / RUN, progress=False)
    assert (stats.documents, stats.tokens) == (4, 2 * (60 + 55))
    meta = json.loads((tmp_path / "idx" / RUN / "meta.json").read_text())
    assert [s["kind"] for s in meta["sources"]] == ["jsonl", "jsonl"]
    assert stats.as_dict()["tokens_per_second"] == stats.tokens / stats.seconds
    assert stats.as_dict()["bytes_per_token"] == stats.bytes / stats.tokens
    assert stats.as_dict()["documents"] == 4


def test_a_training_file_rewritten_in_place_is_reported_when_reread(
    tmp_path: Path, make_sample: Callable[..., Sample]
) -> None:
    doc = _doc(118, 60)
    train = _jsonl(tmp_path / "t.jsonl", [{"text": doc}])
    build_index([train], tmp_path / "idx" / RUN, progress=False)
    # Same size, so the index still loads; the record cannot be reread from it.
    train.write_bytes(b"x" * train.stat().st_size)
    scorer = MemorizationScorer(index_dir=tmp_path / "idx")
    with pytest.raises(IndexFileError) as err:
        scorer.score([make_sample(f"zqx {doc} zqx", run=RUN)])
    assert str(err.value).startswith(f"cannot reread training text from {train} at byte 0: ")
