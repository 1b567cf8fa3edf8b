"""Runs an exported headstart ONNX file with Python's onnxruntime: a second runtime, independent of the ort
crate. Feeds every array of INPUTS.npz by name; prints {"probabilities": [[...]], "class_index": [...]}.
usage: run_exported.py MODEL.onnx INPUTS.npz
"""
import json
import sys

import numpy as np
import onnxruntime

session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
arrays = np.load(sys.argv[2])
feed = {i.name: arrays[i.name] for i in session.get_inputs()}
probabilities, class_index = session.run(["probabilities", "class_index"], feed)
json.dump({"probabilities": probabilities.tolist(), "class_index": class_index.tolist()}, sys.stdout)
