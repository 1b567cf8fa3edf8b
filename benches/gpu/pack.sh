#!/usr/bin/env bash
# Usage: bash benches/gpu/pack.sh   (in the project root, on a machine with network; about 5 minutes)
# Packs everything benches/gpu/check.sh needs on an offline GPU machine into parts small enough for one device
# call each (the working tree travels too):
# - release builds of `headstart` and the device bench;
# - a wheels folder: onnxruntime-gpu 1.31.1 (the cp311 manylinux_2_28 wheel headstart pins), cut down to the
#   members headstart takes from it (its three libraries and METADATA, byte for byte: headstart checks each
#   against its sha256) and stored uncompressed so xz can shrink it, since the 256 MB wheel does not fit the
#   transfers;
# - a model seed: the int8 and float32 MiniLM with their tokenizer.
# Parts land in .gpu/check/ (git-ignored), with the bundle's sha256.
# Then, one device call per part, back to back:
#   mkdir -p /tmp/hs-parts && cp .gpu/check/part-NN /tmp/hs-parts/          (carry: .gpu/check/part-NN)
# and with the last part also: bash benches/gpu/check.sh                      (carry: the last part, .gpu/check/SHA256)
set -euo pipefail
OUT=.gpu/check
PART_BYTES=${PART_BYTES:-44000000}
WHEEL=onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl
grep -qxF "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
cargo build --release --bin headstart --bench device
bench=$(ls -t target/release/deps/device-* | grep -v '\.d$' | head -1)
home=$(target/release/headstart cache --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["root"])')
target/release/headstart models fetch all-minilm-l6-v2 all-minilm-l6-v2-fp32 >/dev/null
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bundle/bin" "$stage/bundle/wheels" "$stage/bundle/seed/models"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform manylinux_2_28_x86_64 -d "$stage" "onnxruntime-gpu==1.31.1"
python3 - "$stage/$WHEEL" "$stage/bundle/wheels/$WHEEL" <<'PY'
import sys, zipfile
source, dest = sys.argv[1], sys.argv[2]
keep = ("onnxruntime/capi/libonnxruntime.so.1.31.1", "onnxruntime/capi/libonnxruntime_providers_shared.so",
        "onnxruntime/capi/libonnxruntime_providers_cuda.so", "onnxruntime_gpu-1.31.1.dist-info/METADATA",
        "onnxruntime_gpu-1.31.1.dist-info/WHEEL")
with zipfile.ZipFile(source) as whole, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as cut:
    for name in keep:
        cut.writestr(whole.getinfo(name), whole.read(name), compress_type=zipfile.ZIP_STORED)
PY
strip -o "$stage/bundle/bin/headstart" target/release/headstart
strip -o "$stage/bundle/bin/device" "$bench"
for model in all-minilm-l6-v2 all-minilm-l6-v2-fp32; do
  mkdir -p "$stage/bundle/seed/models/$model"
  cp "$home/models/$model/tokenizer.json" "$home/models/$model/"*.onnx "$stage/bundle/seed/models/$model/"
done
rm -rf "$OUT"; mkdir -p "$OUT"
tar -cf - -C "$stage/bundle" . | xz -T0 -6 > "$stage/bundle.tar.xz"
sha256sum "$stage/bundle.tar.xz" | cut -d' ' -f1 > "$OUT/SHA256"
split -b "$PART_BYTES" -d "$stage/bundle.tar.xz" "$OUT/part-"
ls -l "$OUT"
