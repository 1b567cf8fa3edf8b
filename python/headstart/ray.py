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

from typing import Any

import numpy as np
import pyarrow as pa

from ._headstart import Embedder

__all__ = ["Embed", "METADATA_PREFIX"]

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
