#!/usr/bin/env bash
# Usage: bash benches/gpu/pack.sh   (in the project root, on a machine with network; about 5 minutes)
# Packs everything benches/gpu/check.sh needs on an offline GPU machine into parts small enough for one device
# call each (the working tree travels too): onnxruntime-gpu's three libraries (../shared/gpu/prepare-ort-gpu.sh),
# release builds of `headstart` and the device bench, and a cache seed (the int8 and float32 MiniLM with their
# tokenizer, the ELPV images). Parts land in .gpu/check/ (git-ignored), with the bundle's sha256.
# Then, one device call per part, back to back:
#   mkdir -p /tmp/hs-parts && cp .gpu/check/part-NN /tmp/hs-parts/          (carry: .gpu/check/part-NN)
# and with the last part also: bash benches/gpu/check.sh                      (carry: the last part, .gpu/check/SHA256)
set -euo pipefail
OUT=.gpu/check
PART_BYTES=${PART_BYTES:-44000000}
grep -qxF "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
[ -f .gpu/parts/ortgpu.part00 ] || bash ../shared/gpu/prepare-ort-gpu.sh
cargo build --release --bin headstart --bench device
bench=$(ls -t target/release/deps/device-* | grep -v '\.d$' | head -1)
home=$(target/release/headstart cache --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["root"])')
# Make sure the seed is in the cache: the text models (the float32 one is converted) and ELPV.
target/release/headstart models fetch all-minilm-l6-v2 all-minilm-l6-v2-fp32 >/dev/null
target/release/headstart datasets fetch elpv >/dev/null
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bundle/bin" "$stage/bundle/seed/models" "$stage/bundle/seed/datasets"
cat .gpu/parts/ortgpu.part* > "$stage/bundle/ortgpu.tar.xz"
strip -o "$stage/bundle/bin/headstart" target/release/headstart
strip -o "$stage/bundle/bin/device" "$bench"
xz -T0 -9 "$stage/bundle/bin/headstart" "$stage/bundle/bin/device"
for model in all-minilm-l6-v2 all-minilm-l6-v2-fp32; do
  mkdir -p "$stage/bundle/seed/models/$model"
  cp "$home/models/$model/tokenizer.json" "$home/models/$model/"*.onnx "$stage/bundle/seed/models/$model/"
done
cp -r "$home/datasets/elpv" "$home/datasets/elpv.complete" "$stage/bundle/seed/datasets/"
rm -rf "$OUT"; mkdir -p "$OUT"
tar -cf "$stage/bundle.tar" -C "$stage/bundle" .
sha256sum "$stage/bundle.tar" | cut -d' ' -f1 > "$OUT/SHA256"
split -b "$PART_BYTES" -d "$stage/bundle.tar" "$OUT/part-"
ls -l "$OUT"
