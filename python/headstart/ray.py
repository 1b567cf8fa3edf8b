"""headstart on a Ray cluster: `Embed` is the callable class for `ray.data.Dataset.map_batches`.

Ray schedules, retries and scales; headstart embeds. Each actor opens one `Embedder` and keeps it for every
batch it is given (give GPU actors `num_gpus=1`)::

    import ray
    import headstart.ray

    ds = ray.data.from_items([{"path": p, "label": l} for p, l in files])
    ds = ds.map_batches(
        headstart.ray.Embed,
        fn_constructor_kwargs={"backbone": "efficientnet-lite0", "device": "auto"},
        batch_format="pyarrow",
        batch_size=64,
        compute=ray.data.ActorPoolStrategy(size=4),   # actors
        num_cpus=1,                                   # or num_gpus=1: one GPU per actor
    )
    ds.write_parquet("embeddings/")

Every input row comes out once, with its other columns as they were, plus `embedding` (a fixed-size list
of float32; null when the file could not be embedded) and `skipped` (the reason; null when embedded). A file
that fails to decode is such a row, never a failed job. The schema's metadata names the backbone
(`headstart.backbone`, `headstart.backbone_sha256`, `headstart.backbone_config`, and `headstart.preprocess` or
`headstart.text_input`), as an `.npz` from `headstart embed` does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ._headstart import Embedder

__all__ = ["Embed", "METADATA_PREFIX", "shard_of", "write_shards"]

METADATA_PREFIX = "headstart."


class Embed:
    """Embeds the files named in a batch's `column` (or the texts in it, with a text backbone)."""

    def __init__(self, backbone: str = "efficientnet-lite0", device: str = "auto", column: str = "path", **options: Any):
        self.embedder = Embedder(backbone, device, **options)
        self.column = column
        self.texts = self.embedder.modality == "text"
        # The width of the embedding column must be known even for a batch in which every file is skipped.
        probe = self.embedder.embed_texts(["probe"]) if self.texts else self.embedder.embed_pixels(np.zeros((1, 32, 32, 3), np.uint8))
        self.dim = probe.embeddings.shape[1]
        self.metadata = {f"{METADATA_PREFIX}{k}": v for k, v in self.embedder.metadata.items()}

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.column not in batch.column_names:
            raise KeyError(f"the batch has no '{self.column}' column (it has {batch.column_names})")
        inputs = [str(value) for value in batch.column(self.column).to_pylist()]
        embedded = self.embedder.embed_texts(inputs) if self.texts else self.embedder.embed_paths(inputs)
        rows = len(inputs)
        values = np.zeros((rows, self.dim), dtype=np.float32)
        if len(embedded):
            values[embedded.indices] = embedded.embeddings
        missing = np.ones(rows, dtype=bool)
        missing[embedded.indices] = False
        reasons: list[str | None] = [None] * rows
        for index, reason in embedded.skipped:
            reasons[index] = reason
        embedding = pa.FixedSizeListArray.from_arrays(
            pa.array(values.reshape(-1), type=pa.float32()), self.dim, mask=pa.array(missing)
        )
        table = batch.append_column("embedding", embedding).append_column("skipped", pa.array(reasons, type=pa.string()))
        return table.replace_schema_metadata({**(batch.schema.metadata or {}), **self.metadata})


def shard_of(key: str, shards: int) -> int:
    """The shard (0 to shards - 1) a path or text belongs to: the partition `headstart embed --shard` uses."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % shards


def write_shards(
    dataset: Any,
    out: str | os.PathLike[str],
    shards: int,
    *,
    column: str = "path",
    batch_size: int = 64,
    actors: int = 1,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    **embedder_options: Any,
) -> list[Path]:
    """Embeds a Ray dataset into `out/ray-K-of-N.parquet`, one shard (one Ray job) at a time.

    A shard file is renamed into place whole once its job has finished, so a re-run into the same folder
    (after a failure, or with more machines) skips the shards that are there and does only what is left.
    `out` must be a local or shared file system. Rows go to shards by their `column` value as `shard_of` says
    (the CLI's `--shard` hashes paths relative to its folder instead, so its `part-K-of-N` files are another
    partition: keep the two in folders of their own). `headstart train out/` reads the folder as one set.
    Returns the files written by this call.
    """
    import ray

    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(shards):
        final = out / f"ray-{index:05}-of-{shards:05}.parquet"
        if final.exists():
            continue
        part = dataset.filter(lambda row, index=index: shard_of(str(row[column]), shards) == index)
        embedded = part.map_batches(
            Embed,
            fn_constructor_kwargs={"column": column, **embedder_options},
            batch_format="pyarrow",
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=num_cpus,
            num_gpus=num_gpus,
        )
        # One file per shard, written beside its final name and renamed there when whole.
        staging = out / f".staging-{index:05}-{uuid.uuid4().hex}"
        try:
            embedded.repartition(1).write_parquet(str(staging))
            files = sorted(staging.glob("*.parquet"))
            if len(files) > 1:
                raise RuntimeError(f"Ray wrote {len(files)} files for one shard in {staging}")
            if files:
                os.replace(files[0], final)
                written.append(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return written
