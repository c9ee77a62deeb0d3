"""Finding checkpoints: local folders, fsspec URLs (the real in-memory filesystem), and the
errors that tell a vanished folder from an unusable one."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from judgeserve.exceptions import CheckpointError, CheckpointMissingError, MissingExtraError
from judgeserve.generator import GenerationJob, resolve_checkpoint
from judgeserve.probes import Probe
from judgeserve.testing.tiny_policy import FRUITS, TinyPolicy

fsspec = pytest.importorskip("fsspec", reason="needs fsspec (pip install 'judgeserve[fsspec]')")


@pytest.fixture
def memory_fs() -> Iterator[Any]:
    fs = fsspec.filesystem("memory")
    yield fs
    if fs.exists("/ckpts"):
        fs.rm("/ckpts", recursive=True)


def upload(fs: Any, folder: Path, url_path: str) -> str:
    for f in folder.iterdir():
        fs.pipe(f"{url_path}/{f.name}", f.read_bytes())
    return f"memory://{url_path}"


def test_local_folders(policy: TinyPolicy, tmp_path: Path) -> None:
    ckpt = resolve_checkpoint(str(policy.adapter("a")), "lora")
    assert ckpt.path == policy.adapter("a") and ckpt.kind == "lora"
    assert resolve_checkpoint(f"file://{policy.full}", "full").path == policy.full
    gone = tmp_path / "checkpoint-500"
    with pytest.raises(
        CheckpointMissingError,
        match=r"^checkpoint folder gone: .*checkpoint-500 \(deleted by save_total_limit\?\)$",
    ):
        resolve_checkpoint(str(gone), "lora")
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_checkpoint(str(policy.full / "config.json"), "full")
    with pytest.raises(CheckpointError, match=r"holds a full model \(config.json\).*kind='full'"):
        resolve_checkpoint(str(policy.full), "lora")
    with pytest.raises(CheckpointError, match=r"no config\.json: not a Hugging Face model folder"):
        resolve_checkpoint(str(tmp_path), "full")
    half = shutil.copytree(policy.adapter("a"), tmp_path / "half")
    (half / "adapter_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        resolve_checkpoint(str(half), "lora")


def test_the_key_follows_the_folders_files(policy: TinyPolicy, tmp_path: Path) -> None:
    folder = shutil.copytree(policy.adapter("a"), tmp_path / "last")
    first = resolve_checkpoint(str(folder), "lora").key
    assert resolve_checkpoint(str(folder), "lora").key == first
    shutil.copy2(policy.adapter("b") / "adapter_model.safetensors", folder)
    assert resolve_checkpoint(str(folder), "lora").key != first


def test_urls_are_fetched_once_into_the_cache(
    policy: TinyPolicy, tmp_path: Path, memory_fs: Any
) -> None:
    url = upload(memory_fs, policy.adapter("a"), "/ckpts/run1/checkpoint-100")
    cache = tmp_path / "cache"
    ckpt = resolve_checkpoint(url, "lora", cache_dir=cache)
    assert ckpt.path.parent == cache and ckpt.source == url
    for f in policy.adapter("a").iterdir():
        assert (ckpt.path / f.name).read_bytes() == f.read_bytes()
    # Fetched once: a second resolve finds the download (the marker proves it is whole).
    (ckpt.path / "adapter_config.json").write_text("{}")  # a refetch would restore it
    assert resolve_checkpoint(url, "lora", cache_dir=cache).path == ckpt.path
    assert (ckpt.path / "adapter_config.json").read_text() == "{}"
    # The same URL with other contents (a trainer overwriting it) is fetched again.
    memory_fs.pipe(f"{url.removeprefix('memory://')}/README.md", b"new file")
    again = resolve_checkpoint(url, "lora", cache_dir=cache)
    assert again.path != ckpt.path and (again.path / "README.md").is_file()
    with pytest.raises(
        CheckpointMissingError, match="checkpoint folder gone: memory:///ckpts/gone"
    ):
        resolve_checkpoint("memory:///ckpts/gone", "lora", cache_dir=cache)


def test_only_the_latest_downloads_are_kept(
    policy: TinyPolicy, tmp_path: Path, memory_fs: Any
) -> None:
    cache = tmp_path / "cache"
    paths = [
        resolve_checkpoint(
            upload(memory_fs, policy.adapter("a"), f"/ckpts/r/checkpoint-{i}"),
            "lora",
            cache_dir=cache,
            keep=2,
        ).path
        for i in range(3)
    ]
    assert [p.exists() for p in paths] == [False, True, True]


def test_urls_without_fsspec_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if it were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'judgeserve\[fsspec\]'"):
        resolve_checkpoint("s3://bucket/run/checkpoint-100", "lora")


def test_a_url_checkpoint_generates(
    transformers_generator: Any,
    policy: TinyPolicy,
    probes: list[Probe],
    memory_fs: Any,
    tmp_path: Path,
) -> None:
    url = upload(memory_fs, policy.adapter("b"), "/ckpts/run2/checkpoint-200")
    transformers_generator.cache_dir = tmp_path / "cache"
    try:
        result = transformers_generator.generate(GenerationJob(checkpoint=url, probes=probes[:2]))
    finally:
        transformers_generator.cache_dir = None
    assert {c.text.split()[0] for c in result.completions} == {FRUITS["b"]}
    assert result.identity.checkpoint == url
