#!/usr/bin/env python3
"""An independent reference for headstart's default image embeddings: Pillow + onnxruntime + numpy, the way a
user would write it. Regenerates reference_embeddings.json (read by tests/embed.rs):

    pip install numpy pillow onnxruntime==1.31.1
    python3 tests/data/reference_embed.py models/efficientnet-lite0.onnx NAME=IMAGE... > tests/data/reference_embeddings.json
"""
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def preprocess(path, size=224, crop_pct=0.875):
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    scale = int(size / crop_pct)  # shorter side, as timm
    w, h = image.size
    if w <= h:
        new = (scale, int(scale * h / w))
    else:
        new = (int(scale * w / h), scale)
    image = image.resize(new, Image.BILINEAR)
    w, h = image.size
    left, top = int(round((w - size) / 2)), int(round((h - size) / 2))
    image = image.crop((left, top, left + size, top + size))
    x = (np.asarray(image, dtype=np.float32) - 127.0) / 128.0
    return x.transpose(2, 0, 1)[None]


def main():
    session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    out = {}
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        (features,) = session.run(["features"], {"image": preprocess(path)})
        out[name] = [round(float(v), 6) for v in features[0]]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
