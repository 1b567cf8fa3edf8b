#!/usr/bin/env bash
# Usage (on the GPU machine, in the project root, after the parts of benches/gpu/pack.sh are in /tmp/hs-parts):
#   bash benches/gpu/check.sh
# The prepared GPU check of issue 14, in one run, every command with no environment variables (`env -i`, the
# system's PATH, HOME) and no network:
# 1. a HEADSTART_HOME holding only wheels/ (onnxruntime-gpu): doctor, then images (pure inference beside
#    end-to-end embed, fp32 and fp16, 32x32 and 256x256) and `embed DIR --device cuda`; what the cache holds after;
# 2. the text models added to the cache: texts in int8, float32 and fp16 on CUDA, float32 on the CPU;
# 3. fp16 against fp32 (images and texts), int8 on CUDA, the CPU from onnxruntime-gpu, start-up on a small
#    folder.
# The log goes to $OUT/log.txt (or ./log.txt) and a summary is printed last. SCALE=small runs tiny counts.
set -u
PARTS=${PARTS:-/tmp/hs-parts}
WORK=${WORK:-/tmp/hs}
LOG=${OUT:-.}/log.txt
SUMS=${SUMS:-.gpu/check/SHA256}
exec > >(tee -a "$LOG") 2>&1
say() { echo; echo "=== $* ($(date +%T))"; }
if [ "${SCALE:-}" = small ]; then IMAGES=512; LARGE=128; TEXTS=256; else IMAGES=65536; LARGE=16384; TEXTS=18000; fi

say unpack
rm -rf "$WORK"; mkdir -p "$WORK/models" "$WORK/user/.cache/headstart"
cat "$PARTS"/part-* > "$WORK/bundle.tar.xz"
echo "bundle sha256 want $(cat "$SUMS" 2>/dev/null) got $(sha256sum "$WORK/bundle.tar.xz" | cut -d' ' -f1)"
xz -dc "$WORK/bundle.tar.xz" | tar -x -C "$WORK" && rm "$WORK/bundle.tar.xz"
cp models/efficientnet-lite0.onnx "$WORK/models/"
H=$WORK/user
CACHE=$H/.cache/headstart
mv "$WORK/wheels" "$CACHE/"
run() { echo "+ $*"; env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$H" "$@"; echo "(exit $?)"; }
HS=$WORK/bin/headstart
BENCH=$WORK/bin/device
echo "beside the binaries: $(ls "$WORK/bin")"
echo "the cache before: $(cd "$CACHE" && find . -type f | sort)"

say "doctor, from a cache holding only the wheels"
run timeout 300 "$HS" doctor

say "images 32x32: fp32, then fp16"
run env HEADSTART_BENCH_FOLDER="$WORK/small" HEADSTART_BENCH_IMAGES=$IMAGES HEADSTART_BENCH_TEXTS=0 timeout 200 "$BENCH"
run env HEADSTART_BENCH_IMAGES=$IMAGES HEADSTART_BENCH_TEXTS=0 HEADSTART_BENCH_PRECISION=fp16 timeout 200 "$BENCH"
say "images 256x256: fp32"
run env HEADSTART_BENCH_IMAGES=$LARGE HEADSTART_BENCH_SIZE=256 HEADSTART_BENCH_TEXTS=0 timeout 200 "$BENCH"

say "embed --device cuda, fp32 and fp16: 1,024 JPEGs"
mkdir -p "$WORK/p1k/a"; ls "$WORK/small/a" | head -1024 | while read -r f; do cp "$WORK/small/a/$f" "$WORK/p1k/a/"; done
run "$HS" embed "$WORK/p1k" -o "$WORK/p32.npz" --no-cache --device cuda -v
run "$HS" embed "$WORK/p1k" -o "$WORK/p16.npz" --no-cache --device cuda -q --precision fp16
echo "the cache after: $(cd "$CACHE" && find . -maxdepth 3 | sort)"

say "int8 on CUDA (calibrated on the same 1,024 JPEGs), and the CPU from the same runtime"
run "$HS" embed "$WORK/p1k" -o "$WORK/p8.npz" --no-cache --device cuda -v --precision int8
run "$HS" embed "$WORK/p1k" -o "$WORK/p8a.npz" --no-cache --device cuda -v --precision int8 --allow-cpu-nodes
run "$HS" embed "$WORK/p1k" -o "$WORK/pc.npz" --no-cache --device cpu -v

say "texts: int8 default, float32, float32 in fp16 on CUDA; float32 on the CPU"
cp -r "$WORK/seed/models" "$CACHE/"
for setting in "all-minilm-l6-v2 fp32 auto $TEXTS" "all-minilm-l6-v2-fp32 fp32 auto $TEXTS" \
  "all-minilm-l6-v2-fp32 fp16 auto $TEXTS" "all-minilm-l6-v2-fp32 fp32 cpu 2048"; do
  set -- $setting
  run env HEADSTART_BENCH_IMAGES=256 HEADSTART_BENCH_TEXTS=$4 HEADSTART_BENCH_TEXT_MODEL=$1 \
    HEADSTART_BENCH_PRECISION=$2 HEADSTART_BENCH_DEVICE=$3 timeout 200 "$BENCH"
done

say "texts: fp16 against fp32"
{
  echo "text,label"
  for who in "my order" "the parcel" "my refund" "the invoice" "my account" "the app" "my password" "the screen" \
    "the delivery" "my subscription"; do
    for what in "has not arrived" "is broken" "was charged twice" "cannot be opened" "is late again" \
      "looks wrong" "keeps crashing" "was cancelled" "needs changing" "is missing a part"; do
      for how in "" " and I am upset" ", please help" " since Monday" "?" " - what now" " again!" \
        ", thanks" " for a week" " (second time)"; do
        echo "\"$who $what$how\",$(( ${#what} % 2 ))"
      done
    done
  done
} > "$WORK/t.csv"
run "$HS" embed "$WORK/t.csv" -o "$WORK/t32.npz" --no-cache -q --device cuda --backbone all-minilm-l6-v2-fp32
run "$HS" embed "$WORK/t.csv" -o "$WORK/t16.npz" --no-cache -q --device cuda --backbone all-minilm-l6-v2-fp32 \
  --precision fp16
PY=$(command -v /opt/torch/.venv/bin/python3 python3 | head -1)
"$PY" - "$WORK" <<'PYTHON'
import sys, numpy as np
w = sys.argv[1]
import os
for a, b, what in [("p32", "p16", "1,024 JPEGs"), ("t32", "t16", "texts"), ("pc", "p32", "1,024 JPEGs, CUDA vs CPU"),
                   ("p8a", "p32", "1,024 JPEGs, int8 on CUDA vs fp32")]:
    if not (os.path.exists(f"{w}/{a}.npz") and os.path.exists(f"{w}/{b}.npz")):
        print(f"{a} vs {b}: missing"); continue
    x = np.load(f"{w}/{a}.npz")["embeddings"]; y = np.load(f"{w}/{b}.npz")["embeddings"]
    c = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    print(f"{a} vs {b}, {what}: n {len(c)} min cosine {c.min():.6f} mean {c.mean():.6f}")
PYTHON

say "start-up: 64 images"
mkdir -p "$WORK/s64/a"; ls "$WORK/small/a" | head -64 | while read -r f; do cp "$WORK/small/a/$f" "$WORK/s64/a/"; done
run bash -c "time $HS embed $WORK/s64 -o $WORK/s64.npz --no-cache -v"
run bash -c "time $HS embed $WORK/s64 -o $WORK/s64c.npz --no-cache -v --device cpu"

say summary
grep -E "^===|^bundle|JPEGs|^(ONNX|device|  loaded|  placement|NVIDIA)|pure inference|end-to-end embed|\(b\)/\(a\)|^texts| vs |^embedded|^nodes|^the cache|^real|error|warning" "$LOG" \
  | grep -v "^+ " | cut -c1-200
