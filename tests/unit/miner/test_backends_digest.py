"""Model digests: a file's sha256, and the order-independent digest of a model folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from aitbc.miner.backends.base import BackendError
from aitbc.miner.backends.builtin import compute_directory_digest, compute_file_digest, compute_path_digest


def test_file_digest_is_sha256_of_the_bytes(tmp_path: Path) -> None:
    data = b"GGUF" + bytes(range(256)) * 5000  # > one read chunk
    p = tmp_path / "m.gguf"
    p.write_bytes(data)
    assert compute_file_digest(p) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert compute_path_digest(p) == compute_file_digest(p)


def _model_dir(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


FILES = {"config.json": b"{}", "model.safetensors": b"\x00" * 1000, "1_Pooling/config.json": b'{"m": 1}'}


def test_directory_digest_matches_the_documented_formula(tmp_path: Path) -> None:
    d = _model_dir(tmp_path / "m", FILES)
    lines = "".join(f"{rel}\0{hashlib.sha256(FILES[rel]).hexdigest()}\n" for rel in sorted(FILES))
    assert compute_directory_digest(d) == "sha256:" + hashlib.sha256(lines.encode()).hexdigest()
    assert compute_path_digest(d) == compute_directory_digest(d)


def test_directory_digest_ignores_creation_order_and_pycache(tmp_path: Path) -> None:
    a = _model_dir(tmp_path / "a", FILES)
    b = _model_dir(tmp_path / "b", dict(reversed(list(FILES.items()))))
    (b / "__pycache__").mkdir()
    (b / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert compute_directory_digest(a) == compute_directory_digest(b)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: (d / "config.json").write_bytes(b'{"x": 1}'),  # content
        lambda d: (d / "config.json").rename(d / "config2.json"),  # name
        lambda d: (d / "extra.txt").write_bytes(b""),  # an added file
        lambda d: (d / "1_Pooling" / "config.json").unlink(),  # a removed file
    ],
)
def test_directory_digest_changes_with_any_file(tmp_path: Path, change: object) -> None:
    d = _model_dir(tmp_path / "m", FILES)
    before = compute_directory_digest(d)
    change(d)  # type: ignore[operator]
    assert compute_directory_digest(d) != before


def test_empty_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendError):
        compute_directory_digest(tmp_path)
