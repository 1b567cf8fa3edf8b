#!/usr/bin/env bash
# Usage (on the GPU machine, in the project root, after the parts of benches/gpu/pack.sh are in /tmp/hs-parts):
#   bash benches/gpu/check.sh
# The prepared GPU check of issue 14, in one run: doctor with no environment variables, pure inference beside
# end-to-end embed (fp32 and fp16, small and larger JPEGs), texts (int8, float32, fp16), fp16 against fp32 (parity
# and the ELPV demo), start-up on a small folder. The log goes to $OUT/log.txt (or ./gpu-check.log) and a summary
# is printed last. SCALE=small runs tiny counts (to try the script on any machine).
set -u
PARTS=${PARTS:-/tmp/hs-parts}
WORK=${WORK:-/tmp/hs}
LOG=${OUT:-.}/log.txt
SUMS=${SUMS:-.gpu/check/SHA256}
exec > >(tee -a "$LOG") 2>&1
say() { echo; echo "=== $* ($(date +%T))"; }
if [ "${SCALE:-}" = small ]; then IMAGES=512; LARGE=128; TEXTS=256; else IMAGES=65536; LARGE=16384; TEXTS=18000; fi

say unpack
rm -rf "$WORK"; mkdir -p "$WORK/bin" "$WORK/models" "$WORK/user/.cache/headstart"
cat "$PARTS"/part-* > "$WORK/bundle.tar"
echo "bundle sha256 want $(cat "$SUMS" 2>/dev/null) got $(sha256sum "$WORK/bundle.tar" | cut -d' ' -f1)"
tar -xf "$WORK/bundle.tar" -C "$WORK" && rm "$WORK/bundle.tar"
xz -dc "$WORK/ortgpu.tar.xz" | tar -x -C "$WORK/bin" && (cd "$WORK/bin" && sha256sum -c SHA256SUMS)
xz -d "$WORK/bin/headstart.xz" "$WORK/bin/device.xz" && chmod +x "$WORK/bin/headstart" "$WORK/bin/device"
cp models/efficientnet-lite0.onnx "$WORK/models/"
cp -r "$WORK/seed/." "$WORK/user/.cache/headstart/"
H=$WORK/user
# A fresh cache and no environment variables: only PATH (the system's) and HOME.
run() { echo "+ $*"; env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$H" "$@"; echo "(exit $?)"; }
HS=$WORK/bin/headstart
BENCH=$WORK/bin/device

say "doctor"
run timeout 120 "$HS" doctor

say "images 32x32: fp32, then fp16"
run env HEADSTART_BENCH_FOLDER="$WORK/small" HEADSTART_BENCH_IMAGES=$IMAGES HEADSTART_BENCH_TEXTS=0 timeout 200 "$BENCH"
run env HEADSTART_BENCH_IMAGES=$IMAGES HEADSTART_BENCH_TEXTS=0 HEADSTART_BENCH_PRECISION=fp16 timeout 200 "$BENCH"
say "images 256x256: fp32"
run env HEADSTART_BENCH_IMAGES=$LARGE HEADSTART_BENCH_SIZE=256 HEADSTART_BENCH_TEXTS=0 timeout 200 "$BENCH"

say "texts: int8 default, float32, float32 in fp16"
for setting in "all-minilm-l6-v2 fp32" "all-minilm-l6-v2-fp32 fp32" "all-minilm-l6-v2-fp32 fp16"; do
  set -- $setting
  run env HEADSTART_BENCH_IMAGES=256 HEADSTART_BENCH_TEXTS=$TEXTS HEADSTART_BENCH_TEXT_MODEL=$1 \
    HEADSTART_BENCH_PRECISION=$2 timeout 200 "$BENCH"
done

say "fp16 against fp32: 1,024 JPEGs, and texts"
mkdir -p "$WORK/p1k/a"; ls "$WORK/small/a" | head -1024 | while read -r f; do cp "$WORK/small/a/$f" "$WORK/p1k/a/"; done
run "$HS" embed "$WORK/p1k" -o "$WORK/p32.npz" --no-cache -q
run "$HS" embed "$WORK/p1k" -o "$WORK/p16.npz" --no-cache -q --precision fp16
printf 'text,label\nwhere is my order,0\nI want a refund,1\nthe screen arrived broken,0\ncan I change my password,1\n' > "$WORK/t.csv"
run "$HS" embed "$WORK/t.csv" -o "$WORK/t32.npz" --no-cache -q --backbone all-minilm-l6-v2-fp32
run "$HS" embed "$WORK/t.csv" -o "$WORK/t16.npz" --no-cache -q --backbone all-minilm-l6-v2-fp32 --precision fp16
PY=$(command -v /opt/torch/.venv/bin/python3 python3 | head -1)
"$PY" - "$WORK" <<'PYTHON'
import sys, numpy as np
w = sys.argv[1]
for a, b, what in [("p32", "p16", "1,024 JPEGs"), ("t32", "t16", "texts")]:
    x = np.load(f"{w}/{a}.npz")["embeddings"]; y = np.load(f"{w}/{b}.npz")["embeddings"]
    c = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    print(f"fp16 vs fp32, {what}: n {len(c)} min cosine {c.min():.6f} mean {c.mean():.6f}")
PYTHON

say "ELPV demo: fp32, then fp16"
run bash -c "time $HS demo"
run bash -c "time $HS demo --precision fp16"

say "start-up: 64 images"
mkdir -p "$WORK/s64/a"; ls "$WORK/small/a" | head -64 | while read -r f; do cp "$WORK/small/a/$f" "$WORK/s64/a/"; done
run bash -c "time $HS embed $WORK/s64 -o $WORK/s64.npz --no-cache -v"
run bash -c "time $HS embed $WORK/s64 -o $WORK/s64c.npz --no-cache -v --device cpu"

say summary
grep -E "^===|JPEGs|^(device|  loaded|NVIDIA)|pure inference|end-to-end embed|\(b\)/\(a\)|^texts:|fp16 vs fp32|^accuracy|^real|on cuda|error" "$LOG" \
  | grep -v "^+ " | cut -c1-200
