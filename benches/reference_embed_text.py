#!/usr/bin/env python3
"""The Python a user would write for what `headstart embed` does with texts: Hugging Face tokenizers +
onnxruntime + numpy, same model, same maximum length, batches of 32 in the data's order, each padded to its
longest text, mean-pooled over the attention mask and L2-normalised.

    bench MODEL TOKENIZER MAX_LENGTH TEXTS.json [BATCH]   print {"texts": N, "seconds": S}

Needs: pip install numpy tokenizers onnxruntime==1.31.1
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def main():
    _, model, tokenizer_path, max_length, texts_path, *rest = sys.argv[1:]
    batch_size = int(rest[0]) if rest else 32
    with open(texts_path, encoding="utf-8") as f:
        texts = json.load(f)
    tokenizer = Tokenizer.from_file(tokenizer_path)
    tokenizer.enable_truncation(int(max_length))
    tokenizer.enable_padding()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    started = time.perf_counter()
    rows = []
    for i in range(0, len(texts), batch_size):
        encodings = tokenizer.encode_batch(texts[i:i + batch_size])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (tokens,) = session.run(
            ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (tokens * weights).sum(axis=1) / weights.sum(axis=1)
        rows.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
    embeddings = np.concatenate(rows)
    seconds = time.perf_counter() - started
    json.dump({"texts": int(embeddings.shape[0]), "seconds": seconds}, sys.stdout)


if __name__ == "__main__":
    main()
