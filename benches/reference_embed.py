#!/usr/bin/env python3
"""The Python a user would write for what `headstart embed` does: Pillow + onnxruntime + numpy, same model,
same preprocessing (shorter side to 256, centre crop 224, bilinear, (x-127)/128), batches of 32.

    vectors MODEL NAME=IMAGE...   print {"NAME": [features...]} (tests/data/reference_embeddings.json)
    bench MODEL DIR [BATCH]       embed every image under DIR, print {"images": N, "seconds": S}

Needs: pip install numpy pillow onnxruntime==1.31.1
"""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def preprocess(path, size=224, crop_pct=0.875):
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    scale = int(size / crop_pct)  # shorter side, as timm
    w, h = image.size
    new = (scale, int(scale * h / w)) if w <= h else (int(scale * w / h), scale)
    image = image.resize(new, Image.BILINEAR)
    w, h = image.size
    left, top = int(round((w - size) / 2)), int(round((h - size) / 2))
    image = image.crop((left, top, left + size, top + size))
    x = (np.asarray(image, dtype=np.float32) - 127.0) / 128.0
    return x.transpose(2, 0, 1)


def vectors(session, pairs):
    out = {}
    for pair in pairs:
        name, path = pair.split("=", 1)
        (features,) = session.run(["features"], {"image": preprocess(path)[None]})
        out[name] = [round(float(v), 6) for v in features[0]]
    json.dump(out, sys.stdout)


def bench(session, folder, batch_size):
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if not f.startswith("."))
    started = time.perf_counter()
    rows = []
    for i in range(0, len(paths), batch_size):
        batch = np.stack([preprocess(p) for p in paths[i:i + batch_size]])
        (features,) = session.run(["features"], {"image": batch})
        rows.append(features)
    embeddings = np.concatenate(rows)
    seconds = time.perf_counter() - started
    json.dump({"images": int(embeddings.shape[0]), "seconds": seconds}, sys.stdout)


def main():
    mode, model = sys.argv[1], sys.argv[2]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    if mode == "vectors":
        vectors(session, sys.argv[3:])
    else:
        bench(session, sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 32)


if __name__ == "__main__":
    main()
