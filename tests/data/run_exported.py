"""Runs an exported headstart ONNX file with Python's onnxruntime: a second runtime, independent of the ort
crate. Feeds every array of INPUTS.npz by name, cast to the input's type; prints {"probabilities": [[...]], "class_index": [...]}.
usage: run_exported.py MODEL.onnx INPUTS.npz
"""
import json
import sys

import numpy as np
import onnxruntime

session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
arrays = np.load(sys.argv[2])
types = {"tensor(uint8)": np.uint8, "tensor(int64)": np.int64, "tensor(float)": np.float32}
feed = {i.name: arrays[i.name].astype(types[i.type]) for i in session.get_inputs()}
probabilities, class_index = session.run(["probabilities", "class_index"], feed)
json.dump({"probabilities": probabilities.tolist(), "class_index": class_index.tolist()}, sys.stdout)
