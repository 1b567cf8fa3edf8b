"""Independent sentence embeddings for tests/text.rs: Hugging Face tokenizers + Python onnxruntime + numpy.

Each text runs alone (no padding), truncated to MAX_LENGTH tokens; the model's token vectors are averaged
over the attention mask and L2-normalised, as sentence-transformers' all-MiniLM-L6-v2 does.
usage: reference_text.py MODEL.onnx TOKENIZER.json MAX_LENGTH < texts.json > embeddings.json
"""
import json
import sys

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

model, tokenizer_path, max_length = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = json.load(sys.stdin)
tokenizer = Tokenizer.from_file(tokenizer_path)
tokenizer.no_padding()
tokenizer.enable_truncation(max_length)
session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
names = {i.name for i in session.get_inputs()}
out = []
for text in texts:
    encoding = tokenizer.encode(text)
    feed = {
        "input_ids": np.array([encoding.ids], dtype=np.int64),
        "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
        "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
    }
    tokens = session.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in names})[0][0]
    mask = feed["attention_mask"][0][:, None].astype(np.float32)
    vector = (tokens * mask).sum(axis=0) / mask.sum()
    out.append({"tokens": len(encoding.ids), "embedding": (vector / np.linalg.norm(vector)).tolist()})
json.dump(out, sys.stdout)
