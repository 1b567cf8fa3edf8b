"""headstart: transfer learning without backprop.

A frozen, pretrained ONNX backbone turns images or texts into embeddings; a small head learns your classes from
them in seconds. This package is a thin shell over the Rust library the ``headstart`` command is built on: the
same backbones, cache, preprocessing and bundle files.

    import headstart
    embedder = headstart.Embedder("efficientnet-lite0")
    embedded = embedder.embed_paths(paths)          # .embeddings float32 [N, D], .indices, .skipped
    bundle = headstart.train(embedded, labels)      # one label per row
    bundle.save("photos.hs")
    bundle.predict_proba(["new.jpg"])               # float32 [N, K], columns in bundle.class_names order
    found = headstart.audit(embedded, labels)       # label issues, duplicates, outliers (as `headstart audit`)
"""

from ._headstart import (
    Bundle,
    Embedded,
    Embedder,
    HeadstartError,
    __version__,
    audit,
    load,
    train,
)

__all__ = ["Bundle", "Embedded", "Embedder", "HeadstartError", "__version__", "audit", "load", "train"]
