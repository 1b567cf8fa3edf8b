#!/usr/bin/env python3
"""The server a Python user would write for what `headstart serve` does: FastAPI + uvicorn + onnxruntime +
Pillow + numpy, the same backbone file and the same logistic head's weights, one image per request (the raw
body), answered with the top classes. Preprocessing as benches/reference_embed.py (shorter side to 256, centre
crop 224, bilinear, (x-127)/128).

    reference_serve.py MODEL HEAD.json PORT     serve on 127.0.0.1:PORT until killed

HEAD.json: {"output": name, "normalize": bool, "classes": [...], "mean": [D], "scale": [D], "weights": [[K] * D],
"intercept": [K]}. Decoding and inference run in the thread pool (ONNX Runtime lets go of the GIL), so requests
decode while another's inference runs.
Needs: pip install fastapi uvicorn numpy pillow onnxruntime==1.31.1
"""
import io
import json
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from PIL import Image, ImageOps
from starlette.concurrency import run_in_threadpool


def preprocess(data, size=224, crop_pct=0.875):
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    scale = int(size / crop_pct)
    w, h = image.size
    new = (scale, int(scale * h / w)) if w <= h else (int(scale * w / h), scale)
    image = image.resize(new, Image.BILINEAR)
    w, h = image.size
    left, top = int(round((w - size) / 2)), int(round((h - size) / 2))
    image = image.crop((left, top, left + size, top + size))
    x = (np.asarray(image, dtype=np.float32) - 127.0) / 128.0
    return x.transpose(2, 0, 1)


model, head_path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(head_path) as f:
    head = json.load(f)
classes = head["classes"]
mean = np.asarray(head["mean"], dtype=np.float32)
scale = np.asarray(head["scale"], dtype=np.float32)
weights = np.asarray(head["weights"], dtype=np.float32)
intercept = np.asarray(head["intercept"], dtype=np.float32)
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name
app = FastAPI()


def answer(data):
    try:
        x = preprocess(data)
    except Exception as e:
        raise HTTPException(status_code=400, detail=str(e))
    (features,) = session.run([head["output"]], {input_name: x[None]})
    if head["normalize"]:
        features = features / np.linalg.norm(features, axis=1, keepdims=True)
    logits = ((features - mean) / scale) @ weights + intercept
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = (p / p.sum(axis=1, keepdims=True))[0]
    top = np.argsort(-p)[:3]
    return {"label": classes[int(top[0])],
            "top": [{"class": classes[int(i)], "probability": float(p[i])} for i in top]}


@app.post("/predict")
async def predict(request: Request):
    return await run_in_threadpool(answer, await request.body())


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
