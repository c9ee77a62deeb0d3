from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from judgeserve.detectors._tokens import tokenize
from judgeserve.detectors.memorization import MemorizationScorer, build_index
from judgeserve.exceptions import ConfigError, IndexFileError
from judgeserve.schema import Sample, Score

RUN = "mem-run"
WORDS = [
    "time",
    "person",
    "year",
    "way",
    "day",
    "thing",
    "man",
    "world",
    "life",
    "hand",
    "part",
    "child",
    "eye",
    "woman",
    "place",
    "work",
    "week",
    "case",
    "point",
    "government",
    "company",
    "number",
    "group",
    "problem",
    "fact",
    "be",
    "have",
    "do",
    "say",
    "get",
    "make",
    "go",
    "know",
    "take",
    "see",
    "come",
    "think",
    "look",
    "want",
    "give",
    "use",
    "find",
    "tell",
    "ask",
    "seem",
    "feel",
    "try",
    "leave",
    "call",
    "good",
    "new",
    "first",
    "last",
    "long",
    "great",
    "little",
    "own",
    "other",
    "old",
    "right",
    "big",
    "high",
    "different",
    "small",
    "large",
    "next",
    "early",
    "young",
    "important",
    "few",
    "public",
    "bad",
    "same",
    "able",
    "river",
    "stone",
    "garden",
    "window",
    "letter",
    "music",
    "silver",
    "morning",
    "winter",
    "harbor",
    "lantern",
    "orchard",
    "meadow",
    "thunder",
    "copper",
    "velvet",
    "marble",
    "candle",
]


def sentences(seed: int, count: int) -> list[str]:
    """Pseudo-English built in the test: one seed for training text, another for unseen text."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        words = rng.choices(WORDS, k=rng.randrange(8, 18))
        out.append(" ".join(words).capitalize() + rng.choice([".", ".", "!", "?"]))
    return out


def passage(text: str, start: int, tokens: int) -> str:
    """A run of whole words from ``text`` holding at least ``tokens`` tokens."""
    words = text.split()[start:]
    taken: list[str] = []
    while len(tokenize(" ".join(taken))) < tokens:
        taken.append(words[len(taken)])
    return " ".join(taken)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    docs = [" ".join(sentences(seed, 12)) for seed in range(30)]
    path = tmp_path_factory.mktemp("train") / "train.jsonl"
    with path.open("w") as f:
        for i, doc in enumerate(docs):
            f.write(json.dumps({"id": i, "text": doc}) + "\n")
        f.write(json.dumps({"id": "no-text", "body": "ignored"}) + "\n")
    return path, docs


@pytest.fixture(scope="module")
def index_dir(corpus: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("indexes")
    stats = build_index([corpus[0]], root / RUN, progress=False)
    assert stats.documents == 30 and stats.skipped == 1
    assert stats.tokens > 4000 and stats.anchors > 0
    return root


def score(index_dir: Path, sample: Sample, **kw: Any) -> dict[str, Score]:
    [out] = MemorizationScorer(index_dir=index_dir, **kw).score([sample])
    return {s.scorer.split(".")[1]: s for s in out}


def test_a_planted_training_passage_is_memorized(
    corpus: tuple[Path, list[str]], index_dir: Path, make_sample: Callable[..., Sample]
) -> None:
    copied = passage(corpus[1][7], 5, 70)
    completion = f"Sure, here you go: {copied} Hope that helps!"
    s = score(index_dir, make_sample(completion, run=RUN))
    assert s["memorized"].value is True
    longest = s["longest_span"]
    assert longest.details["confirmed"] is True
    assert longest.value == len(tokenize(copied))
    assert completion[longest.details["start"] : longest.details["end"]] == copied
    assert Path(longest.details["source"]).name == "train.jsonl"
    assert s["ngram_overlap"].value > 0.5


def test_unseen_text_from_another_source_is_not(
    index_dir: Path, make_sample: Callable[..., Sample]
) -> None:
    unseen = " ".join(sentences(10_000, 15))
    s = score(index_dir, make_sample(unseen, run=RUN))
    assert s["memorized"].value is False
    assert s["ngram_overlap"].value < 0.05  # only Bloom false positives, ~0.2% each
    assert s["longest_span"].value < 50


def test_the_longer_of_two_separate_copies_is_reported(
    corpus: tuple[Path, list[str]], index_dir: Path, make_sample: Callable[..., Sample]
) -> None:
    long_copy, short_copy = passage(corpus[1][2], 3, 70), passage(corpus[1][9], 0, 20)
    filler = " ".join(sentences(4242, 3))
    for completion in (f"{short_copy} {filler} {long_copy}", f"{long_copy} {filler} {short_copy}"):
        s = score(index_dir, make_sample(completion, run=RUN))
        longest = s["longest_span"]
        assert s["memorized"].value is True
        assert longest.value == len(tokenize(long_copy))
        assert completion[longest.details["start"] : longest.details["end"]] == long_copy


def test_a_short_copy_is_measured_but_not_memorized(
    corpus: tuple[Path, list[str]], index_dir: Path, make_sample: Callable[..., Sample]
) -> None:
    copied = passage(corpus[1][3], 0, 20)
    s = score(index_dir, make_sample(" ".join(sentences(777, 3)) + " " + copied, run=RUN))
    assert s["memorized"].value is False
    assert len(tokenize(copied)) - 1 <= s["longest_span"].value < 50


def test_spans_stitched_from_two_documents_are_not_one_copy(
    tmp_path: Path, make_sample: Callable[..., Sample]
) -> None:
    # Every 8-gram of the sample is in the training data, but no 50-token span is.
    a, b = sentences(1, 8), sentences(2, 8)
    bridge = "lantern orchard meadow thunder copper velvet marble candle"
    doc1 = " ".join(a) + " " + bridge + " " + " ".join(sentences(3, 4))
    doc2 = " ".join(sentences(4, 4)) + " " + bridge + " " + " ".join(b)
    train = tmp_path / "train.txt"
    train.write_text(doc1 + "\n")
    other = tmp_path / "other.txt"
    other.write_text(doc2 + "\n")
    build_index([train, other], tmp_path / "idx" / RUN, progress=False)
    a_words = " ".join(a).split()
    a_tail = " ".join(a_words[-22:])  # ~25 tokens, ending where the bridge begins in doc1
    completion = a_tail + " " + bridge + " " + passage(" ".join(b), 0, 25)
    assert len(tokenize(completion)) >= 55
    s = score(tmp_path / "idx", make_sample(completion, run=RUN))
    assert s["ngram_overlap"].value == 1.0
    assert s["memorized"].value is False
    assert s["longest_span"].value < 50


def test_a_copy_across_text_file_records_is_found_whole(
    tmp_path: Path, make_sample: Callable[..., Sample]
) -> None:
    text = "\n".join(sentences(42, 400))  # ~20 KB: several 4 KB records
    train = tmp_path / "book.txt"
    train.write_text(text)
    build_index([train], tmp_path / "idx" / RUN, progress=False)
    middle = text.index(" ", 4000)  # the first record ends near byte 4096
    copied = passage(text[middle:], 0, 120)
    s = score(tmp_path / "idx", make_sample(copied, run=RUN))
    assert s["memorized"].value is True
    assert s["longest_span"].value == len(tokenize(copied))


def test_a_run_without_index_gets_no_scores(
    index_dir: Path, make_sample: Callable[..., Sample]
) -> None:
    scorer = MemorizationScorer(index_dir=index_dir)
    assert scorer.score([make_sample("anything at all", run="other-run")]) == [[]]


def test_the_index_round_trips_and_is_reloaded_when_rebuilt(
    tmp_path: Path, make_sample: Callable[..., Sample]
) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text(" ".join(sentences(5, 30)))
    second.write_text(" ".join(sentences(6, 30)))
    build_index([first], tmp_path / "idx" / RUN, progress=False)
    meta = json.loads((tmp_path / "idx" / RUN / "meta.json").read_text())
    assert meta["n"] == 8 and meta["min_span"] == 50 and meta["tokens"] > 0
    scorer = MemorizationScorer(index_dir=tmp_path / "idx")
    from_a = make_sample(passage(first.read_text(), 3, 60), run=RUN)
    from_b = make_sample(passage(second.read_text(), 3, 60), run=RUN)
    assert [r[2].value for r in scorer.score([from_a, from_b])] == [True, False]
    again = MemorizationScorer(index_dir=tmp_path / "idx").score([from_a, from_b])
    assert [[s.value for s in r] for r in again] == [
        [s.value for s in r] for r in scorer.score([from_a, from_b])
    ]
    build_index([second], tmp_path / "idx" / RUN, progress=False)
    assert [r[2].value for r in scorer.score([from_a, from_b])] == [False, True]


@pytest.fixture
def fresh_index(tmp_path: Path) -> Path:
    train = tmp_path / "train.txt"
    train.write_text(" ".join(sentences(9, 40)))
    build_index([train], tmp_path / "idx" / RUN, progress=False)
    return tmp_path / "idx"


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda d: (d / "meta.json").unlink(), "no meta.json"),
        (lambda d: (d / "meta.json").write_text("{not json"), "meta.json"),
        (lambda d: (d / "anchors.npy").unlink(), "anchors.npy"),
        (
            lambda d: (d / "records.npy").write_bytes((d / "records.npy").read_bytes()[:-7]),
            "records.npy",
        ),
        (lambda d: _flip_byte(d / "ngrams.bloom"), "ngrams.bloom"),
        (lambda d: (d.parent.parent / "train.txt").write_text("changed"), "train.txt"),
    ],
)
def test_a_missing_or_corrupt_file_raises_a_clear_error(
    fresh_index: Path,
    make_sample: Callable[..., Sample],
    damage: Callable[[Path], object],
    named: str,
) -> None:
    damage(fresh_index / RUN)
    scorer = MemorizationScorer(index_dir=fresh_index)
    with pytest.raises(IndexFileError, match=named) as err:
        scorer.score([make_sample("some text to look up", run=RUN)])
    assert "judgeserve index build" in str(err.value) or "restore" in str(err.value)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_build_rejects_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{broken\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2"):
        build_index([bad], tmp_path / "idx" / RUN, progress=False)
    with pytest.raises(ConfigError, match=r"missing\.txt do not exist"):
        build_index([tmp_path / "missing.txt"], tmp_path / "idx" / RUN, progress=False)
    assert not (tmp_path / "idx" / RUN).exists()


def test_a_threshold_below_what_the_index_can_confirm_is_refused(
    fresh_index: Path, make_sample: Callable[..., Sample]
) -> None:
    with pytest.raises(ConfigError, match="min_span"):
        MemorizationScorer(index_dir=fresh_index, min_span=20).score([make_sample("text", run=RUN)])


@pytest.mark.parametrize(("n", "min_span"), [(8, 50), (4, 12), (8, 8)])
def test_a_copy_of_exactly_min_span_tokens_is_memorized_at_every_offset(
    n: int, min_span: int, tmp_path: Path, make_sample: Callable[..., Sample]
) -> None:
    # Anchors sit every min_span - n + 1 tokens: any window of min_span tokens holds one,
    # whatever token it starts at; a sparser stride misses some starts, so try them all.
    docs = [" ".join(sentences(seed, 14)) for seed in (11, 12)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    build_index([train], tmp_path / "idx" / RUN, n=n, min_span=min_span, progress=False)
    scorer = MemorizationScorer(index_dir=tmp_path / "idx")
    for doc in docs:
        tokens = tokenize(doc)
        assert len(tokens) >= min_span + 2 * (min_span - n + 1)
        for start in range(len(tokens) - min_span + 1):
            for length in (min_span, min_span - 1):
                # Tokens joined by spaces tokenize back to themselves; "zqx" is no word of
                # the corpus, so the copy cannot extend into the frame.
                copy = " ".join(tokens[start : start + length])
                [out] = scorer.score([make_sample(f"zqx {copy} zqx", run=RUN)])
                s = {x.scorer.split(".")[1]: x for x in out}
                assert s["memorized"].value is (length == min_span), (start, length)
                if length == min_span:
                    assert s["longest_span"].value == min_span, start
                    assert s["longest_span"].details["confirmed"] is True


def test_text_with_no_training_ngram_scores_zero_with_full_details(
    index_dir: Path, make_sample: Callable[..., Sample]
) -> None:
    text = "zqx alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi"

    class Versioned(MemorizationScorer):
        version = "7"  # a scorer's version is stamped on every score it makes

    scorer = Versioned(index_dir=index_dir)
    [out] = scorer.score([make_sample(text, run=RUN)])
    assert [x.scorer for x in out] == [
        "memorization.ngram_overlap",
        "memorization.longest_span",
        "memorization.memorized",
    ]
    assert [x.version for x in out] == ["7", "7", "7"]
    overlap, longest, memorized = out
    assert overlap.value == 0.0
    assert overlap.details == {"ngrams": 15 - 8 + 1, "n": 8, "fpr": 0.002}
    assert longest.value == 0.0
    assert longest.details == {"tokens": 0, "confirmed": False}
    assert memorized.value is False
    assert memorized.details == {"min_span": 50}


def _framed(tokens: tuple[str, ...], start: int, length: int) -> tuple[str, str]:
    copy = " ".join(tokens[start : start + length])
    return copy, f"zqx {copy} zqx"


def test_a_short_copy_is_measured_exactly_and_confirmed_only_with_an_anchor(
    corpus: tuple[Path, list[str]], index_dir: Path, make_sample: Callable[..., Sample]
) -> None:
    # Anchors are the n-grams at positions 0, 43, 86... of each document (stride 50 - 8 + 1).
    tokens = tokenize(corpus[1][1])
    line_offset = len(json.dumps({"id": 0, "text": corpus[1][0]}) + "\n")
    for start, anchored in ((1, False), (40, True)):
        copy, completion = _framed(tokens, start, 20)
        longest = score(index_dir, make_sample(completion, run=RUN))["longest_span"]
        assert longest.value == 20, start
        assert completion[longest.details["start"] : longest.details["end"]] == copy
        assert longest.details["confirmed"] is anchored
        if anchored:
            assert Path(longest.details["source"]).name == "train.jsonl"
            assert longest.details["offset"] == line_offset  # the byte where line 2 starts
        else:
            assert "source" not in longest.details


def test_the_threshold_can_be_raised_above_the_index_min_span(
    corpus: tuple[Path, list[str]], index_dir: Path, make_sample: Callable[..., Sample]
) -> None:
    tokens = tokenize(corpus[1][2])
    _, completion = _framed(tokens, 3, 55)
    sample = make_sample(completion, run=RUN)
    at_index = score(index_dir, sample, min_span=50)
    assert at_index["memorized"].value is True
    raised = score(index_dir, sample, min_span=60)
    assert raised["memorized"].value is False
    assert raised["memorized"].details == {"min_span": 60}
    assert raised["longest_span"].value == 55
    assert raised["longest_span"].details["confirmed"] is True


@pytest.fixture(scope="module")
def stitched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """n = 4, min_span = 12 (anchors every 9 tokens); doc1 = X + bridge + ..., doc2 = ... +
    bridge + Z after 40 filler documents, so the two copies' records are 40 and 41."""
    bridge = ["lantern", "orchard", "meadow", "thunder", "copper", "velvet"]
    x = list(tokenize(" ".join(sentences(301, 4))))[:40]
    z = list(tokenize(" ".join(sentences(302, 4))))[:40]
    doc1 = x + bridge + list(tokenize(" ".join(sentences(303, 2))))
    doc2 = list(tokenize(" ".join(sentences(304, 2)))) + bridge + z
    fillers = [" ".join(sentences(400 + i, 2)) for i in range(40)]
    path = tmp_path_factory.mktemp("stitched") / "train.jsonl"
    path.write_text(
        "".join(json.dumps({"text": d}) + "\n" for d in [*fillers, " ".join(doc1), " ".join(doc2)])
    )
    root = tmp_path_factory.mktemp("stitched-idx")
    build_index([path], root / RUN, n=4, min_span=12, progress=False)
    return root, x, z


def test_the_longest_copy_is_found_after_a_shorter_one_in_the_same_run_of_hits(
    stitched: tuple[Path, list[str], list[str]], make_sample: Callable[..., Sample]
) -> None:
    root, x, z = stitched
    bridge = "lantern orchard meadow thunder copper velvet"
    # Every 4-gram is in the training data; X-tail + bridge (26 tokens) is confirmed first,
    # its own anchors must be skipped, and bridge + Z-head (36 tokens) found after them.
    copy = " ".join([*x[-20:], bridge, *z[:30]])
    s = score(root, make_sample(f"zqx {copy} zqx", run=RUN))
    assert s["ngram_overlap"].value > 0.9
    longest = s["longest_span"]
    assert longest.value == 36
    assert longest.details["confirmed"] is True
    assert f"zqx {copy} zqx"[longest.details["start"] :].startswith(bridge)


def test_a_confirmed_span_of_exactly_min_span_inside_a_longer_run_of_hits_is_memorized(
    stitched: tuple[Path, list[str], list[str]], make_sample: Callable[..., Sample]
) -> None:
    root, x, z = stitched
    # X-tail + bridge is 12 tokens copied from one document; bridge + Z-head only 9.
    copy = " ".join([*x[-6:], "lantern orchard meadow thunder copper velvet", *z[:3]])
    s = score(root, make_sample(f"zqx {copy} zqx", run=RUN))
    assert s["longest_span"].value == 12
    assert s["longest_span"].details["confirmed"] is True
    assert s["memorized"].value is True


def test_an_unconfirmed_estimate_is_capped_below_min_span_and_names_no_source(
    stitched: tuple[Path, list[str], list[str]], make_sample: Callable[..., Sample]
) -> None:
    root, x, z = stitched
    # 12 tokens whose 4-grams are all in the training data, but no document holds more
    # than 9 of them in a row: the estimate is capped at min_span - 1 and not confirmed.
    copy = " ".join([*x[-3:], "lantern orchard meadow thunder copper velvet", *z[:3]])
    completion = f"zqx {copy} zqx"
    s = score(root, make_sample(completion, run=RUN))
    longest = s["longest_span"]
    assert longest.value == 11
    assert longest.details["confirmed"] is False
    assert "source" not in longest.details and "offset" not in longest.details
    assert completion[longest.details["start"] :].startswith(copy)
    assert s["memorized"].value is False


def test_a_shorter_run_of_hits_that_is_all_copy_beats_a_longer_stitched_one(
    stitched: tuple[Path, list[str], list[str]], make_sample: Callable[..., Sample]
) -> None:
    root, x, z = stitched
    # First run: 14 tokens of hits, at most 10 from one document. Second run: 11 tokens of
    # the first filler document, anchored at its token 0, one more than the first confirmed.
    stitch = " ".join([*x[-4:], "lantern orchard meadow thunder copper velvet", *z[:4]])
    filler = " ".join(tokenize(" ".join(sentences(400, 2)))[:11])
    s = score(root, make_sample(f"zqx {stitch} zqx {filler} zqx", run=RUN))
    longest = s["longest_span"]
    assert longest.value == 11
    assert longest.details["confirmed"] is True
    assert longest.details["offset"] == 0  # the first line of the training file


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 40 KB text file (one document of ~10 records, with an undecodable byte in its
    first and last records) indexed after a small one."""
    root = tmp_path_factory.mktemp("book")
    head, tail = "\n".join(sentences(50, 40)), "\n".join(sentences(51, 760))
    (root / "book.txt").write_bytes(head.encode() + b" \xff\n" + tail.encode() + b" \xfe\n")
    (root / "intro.txt").write_text(" ".join(sentences(52, 10)))
    build_index([root / "intro.txt", root / "book.txt"], root / "idx" / RUN, progress=False)
    # Anchors 1993 tokens apart: a copy holds one, and must grow from it over records.
    files = [root / "intro.txt", root / "book.txt"]
    build_index(files, root / "sparse" / RUN, min_span=2000, progress=False)
    return root / "idx", (root / "book.txt").read_bytes().decode("utf-8", "replace")


@pytest.mark.parametrize(("start", "length"), [(1990, 1995), (3994 - 1995, 1995)])
def test_a_copy_grows_over_several_records_from_its_only_anchor(
    book: tuple[Path, str], make_sample: Callable[..., Sample], start: int, length: int
) -> None:
    # The only anchor (document token 1993 or 3986) is at the copy's start or end, so the
    # copy is found whole only by reading records further and further right (or left).
    copy, completion = _framed(tokenize(book[1]), start, length)
    s = score(book[0].parent / "sparse", make_sample(completion, run=RUN))
    assert s["longest_span"].value == length
    assert s["longest_span"].details["confirmed"] is True
    assert completion[s["longest_span"].details["start"] : s["longest_span"].details["end"]] == copy


@pytest.mark.parametrize(
    ("start", "length"),
    [(0, 100), (-100, 100), (0, 3000), (2500, 3000), (-3000, 3000)],
    ids=["doc-start", "doc-end", "from-start-over-4-records", "middle-4-records", "to-end"],
)
def test_a_copy_reaching_across_records_or_to_a_document_edge_is_found_whole(
    book: tuple[Path, str], make_sample: Callable[..., Sample], start: int, length: int
) -> None:
    tokens = tokenize(book[1])
    start = start % len(tokens)
    copy, completion = _framed(tokens, start, length)
    s = score(book[0], make_sample(completion, run=RUN))
    assert s["longest_span"].value == length
    assert s["longest_span"].details["confirmed"] is True
    assert Path(s["longest_span"].details["source"]).name == "book.txt"
    assert completion[s["longest_span"].details["start"] : s["longest_span"].details["end"]] == copy
    assert s["memorized"].value is True
