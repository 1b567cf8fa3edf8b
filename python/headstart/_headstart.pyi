from os import PathLike
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

__version__: str

class HeadstartError(Exception):
    """An error from headstart, with the message its command line prints."""

class Embedded:
    """Rows made by an Embedder: ``embeddings[i]`` is input ``indices[i]``."""

    @property
    def embeddings(self) -> npt.NDArray[np.float32]:
        """float32 [N, D], one row per embedded input, in input order."""
    @property
    def indices(self) -> npt.NDArray[np.int64]:
        """int64 [N]: the position in the input of each row."""
    @property
    def skipped(self) -> list[tuple[int, str]]:
        """(position in the input, reason) for each input that made no row."""
    @property
    def metadata(self) -> dict[str, str]:
        """What identifies these embeddings (see Embedder.metadata)."""
    @property
    def from_cache(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def device(self) -> str: ...
    def __len__(self) -> int: ...

class Embedder:
    """A frozen backbone, opened once."""

    def __init__(
        self,
        backbone: str = "efficientnet-lite0",
        device: str = "auto",
        *,
        modality: str | None = None,
        batch_size: int | None = None,
        workers: int | None = None,
        threads: int | None = None,
        cache: bool = True,
        cache_dir: str | PathLike[str] | None = None,
        exact_decode: bool = False,
        allow_truncated: bool = False,
        max_pixels: int | None = None,
    ) -> None: ...
    @property
    def modality(self) -> str:
        """"image" or "text"."""
    @property
    def device(self) -> str:
        """Where the backbone runs: "cpu" or "cuda:0 (…)"."""
    @property
    def metadata(self) -> dict[str, str]:
        """backbone, backbone_source, backbone_sha256, backbone_config and preprocess or text_input (JSON)."""
    def embed_paths(self, paths: Sequence[str | PathLike[str]]) -> Embedded:
        """Embeds image files; bad files are skipped with a reason, never raised."""
    def embed_pixels(self, pixels: npt.NDArray[np.uint8]) -> Embedded:
        """Embeds RGB images given as one uint8 array [N, H, W, 3]."""
    def embed_texts(self, texts: Sequence[str]) -> Embedded:
        """Embeds texts (text backbones); empty texts are skipped."""

class Bundle:
    """A trained head with what it needs to run."""

    @staticmethod
    def load(path: str | PathLike[str], device: str = "auto") -> Bundle: ...
    def save(self, path: str | PathLike[str]) -> None: ...
    @property
    def class_names(self) -> list[str]: ...
    @property
    def modality(self) -> str: ...
    @property
    def backbone(self) -> str: ...
    @property
    def head(self) -> str: ...
    @property
    def cv_accuracy(self) -> float: ...
    @property
    def chosen_c(self) -> float | None: ...
    @property
    def novelty_threshold(self) -> float | None: ...
    def novelty(self, embeddings: Embedded | npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Novelty scores [N] (bundles trained with open_set); above novelty_threshold an input is unknown."""
    def predict_proba(
        self,
        inputs: Embedded | npt.ArrayLike | Sequence[str],
    ) -> npt.NDArray[np.float32]:
        """Class probabilities [N, K] for embeddings, pixels [N, H, W, 3], image paths or texts."""
    def predict(
        self,
        inputs: Embedded | npt.ArrayLike | Sequence[str],
        *,
        top_k: int = 1,
        min_confidence: float = 0.0,
    ) -> list[dict[str, Any]]:
        """One answer per input: label (None for unknown), top, novel, novelty, labels."""
    def export(
        self,
        path: str | PathLike[str],
        *,
        raw_input: bool = False,
        head_only: bool = False,
        raw_size: tuple[int, int] | None = None,
    ) -> int:
        """Writes one ONNX file; returns its size in bytes."""

def load(path: str | PathLike[str], device: str = "auto") -> Bundle: ...
def train(
    embeddings: Embedded | npt.ArrayLike,
    labels: Sequence[str] | Sequence[int] | npt.ArrayLike,
    *,
    embedder: Embedder | None = None,
    head: str = "logistic",
    folds: int = 5,
    grid: Sequence[float] | None = None,
    class_weight: str = "none",
    solver: str = "lbfgs",
    seed: int = 42,
    k: int = 5,
    max_iterations: int = 100,
    open_set: float | None = None,
    keep_embeddings: bool = False,
) -> Bundle: ...
def audit(
    embeddings: Embedded | npt.ArrayLike,
    labels: Sequence[str] | Sequence[int] | npt.ArrayLike,
    *,
    names: Sequence[str] | None = None,
    embedder: Embedder | None = None,
    head: str = "logistic",
    folds: int = 5,
    seed: int = 42,
    same_input_similarity: float | None = None,
) -> dict[str, Any]:
    """label_issues, duplicates, leakage, outliers, summary and fixes, as `headstart audit --json`, each input
    with its row."""
