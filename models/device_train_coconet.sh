#!/bin/sh
# The offline Coconet trained on a GPU machine in one call of the device tool: two runs side by
# side, each for $MINUTES (default 7), their checkpoints (CPU tensors, optimizer state included)
# and logs written under $OUT.
#   settled/  the shipped checkpoint (models/checkpoints/coconet.pt) trained on at
#             batch 64: the same network, so the same speed in the product
#   deeper/   20 layers instead of 16, from scratch, batch 64: 1.3x the work per network call
# both on the shipped model's 64-step crops (a 32-step crop sees less than a harmonization asks)
#
# Here, once:      mkdir -p .device && cp ../shared/data/jsb/Jsb16thSeparated.npz .device/
# On the machine:  the device tool's run, command `sh models/device_train_coconet.sh`, carry [".device"]
# Back here:       export, evaluate and judge each as the README's "Training the shipped models" says
#                  (export_onnx.py --int8 --calibration percentile, bachbridge eval, bench/bench_music.py)
set -eu
OUT=${OUT:-runs/device}
MINUTES=${MINUTES:-7}
DATA=${DATA:-.device/Jsb16thSeparated.npz}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
mkdir -p "$OUT/settled" "$OUT/deeper"
"$PYTHON" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'

"$PYTHON" -m models.train_coconet --out "$OUT/settled" --preset offline --device "$DEVICE" --data "$DATA" \
    --resume models/checkpoints/coconet.pt --batch 64 --crop 64 --lr 5e-4 --eval-every 1000 --minutes "$MINUTES" \
    --threads 4 >"$OUT/settled.log" 2>&1 &
settled=$!
"$PYTHON" -m models.train_coconet --out "$OUT/deeper" --preset offline --layers 20 --device "$DEVICE" --data "$DATA" \
    --batch 64 --crop 64 --eval-every 1000 --minutes "$MINUTES" --threads 4 >"$OUT/deeper.log" 2>&1 &
deeper=$!
status=0
wait $settled || status=1
wait $deeper || status=1
# last.pt is the run's own to resume from; best.pt is what gets exported
for run in settled deeper; do
    tail -n 3 "$OUT/$run/log.csv" || true
    rm -f "$OUT/$run"/*.tmp
done
exit $status
