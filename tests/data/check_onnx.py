"""The ONNX project's own checks on exported files: the full checker and strict shape inference.

usage: check_onnx.py MODEL.onnx...   (prints "ok" when every file passes; the first failure is raised)"""

import sys

import onnx
from onnx import checker, shape_inference

for path in sys.argv[1:]:
    model = onnx.load(path)
    checker.check_model(model, full_check=True)
    shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
print("ok")
