"""Shared fixtures: the headstart command line (to compare against) and small real image sets.

`tests/python.rs` runs these tests from `cargo test` with HEADSTART_CLI set to the binary it built.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the headstart command line built beside this package."""
    binary = os.environ.get("HEADSTART_CLI")
    if not binary:
        pytest.fail("HEADSTART_CLI must name the headstart binary (cargo test sets it)")
    result = subprocess.run([binary, *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        pytest.fail(f"headstart {' '.join(args)} failed: {result.stderr}")
    return result


def cli_json(*args: str) -> dict:
    return json.loads(cli(*args).stdout)


def listed(folder: Path) -> list[Path]:
    """The files of a class-folder dataset in the order the CLI embeds them (classes, then files, sorted)."""
    return [f for c in sorted(folder.iterdir()) for f in sorted(c.iterdir())]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="session")
def elpv() -> Path:
    """The ELPV solar-cell images (defective/ and functional/ class folders), fetched by the CLI."""
    return Path(cli("datasets", "fetch", "elpv").stdout.strip())


def image_set(elpv: Path, root: Path, per_class: int) -> Path:
    """`per_class` ELPV images in each of two class folders, plus two files that cannot be embedded."""
    for label in ("defective", "functional"):
        (root / label).mkdir()
        for source in sorted((elpv / label).iterdir())[:per_class]:
            shutil.copy(source, root / label / source.name)
    first = sorted((root / "defective").iterdir())[0]
    (root / "defective" / "truncated.png").write_bytes(first.read_bytes()[: first.stat().st_size * 6 // 10])
    (root / "functional" / "notes.png").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def small_set(elpv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_set(elpv, tmp_path_factory.mktemp("small_set"), 20)


@pytest.fixture(scope="session")
def ray_set(elpv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_set(elpv, tmp_path_factory.mktemp("ray_set"), 150)
