#!/usr/bin/env bash
# Check gan_conditioning on a machine with a CUDA GPU, in about 8 minutes:
#   1. the device tests on CUDA (GC_TEST_DEVICE=cuda) and the numerical cross-checks;
#   2. tests/bench.py, with absolute times and the device's name;
#   3. a short study of each paper preset on CUDA, four runs at once (one process per run), its table printed;
#   4. the time per iteration of srgan-cifar's SN-GAN ResNets (on random images: no CIFAR-10 there).
# On a machine without CUDA it says so in one line and exits 0. A machine with no package index gets the
# missing pure-Python packages from .whl/ (made beforehand by tools/fetch_wheels.sh); its torch is left alone.
#
#     tools/gpu_check.sh                  # GC_CHECK_DEVICE=cpu tools/gpu_check.sh runs the same steps on the CPU
#
# The CPU dry run proves the script before a GPU is lent (15 minutes in all there): shorter runs, longer limits, e.g.
#     GC_CHECK_DEVICE=cpu GC_CHECK_STEPS=60 GC_CHECK_SRGAN_STEPS=2 GC_CHECK_BENCH="jc pl prdc" tools/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEV=${GC_CHECK_DEVICE:-cuda}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$DEV" = cuda ] && ! $PY -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  echo "gpu_check: no CUDA device on this machine; nothing to check"; exit 0
fi
if ! $PY -c 'import fastai, fastcore, fastprogress, pytorch_fid, mlxtend' 2>/dev/null; then
  [ -d .whl ] || { echo "gpu_check: fastai & co. are missing and there is no .whl/ folder; run tools/fetch_wheels.sh where pip works" >&2; exit 1; }
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gc-site .whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/gc-site"
fi
$PY - "$DEV" <<'PYEOF'
import sys, torch
d = torch.device(sys.argv[1])
print(f"gpu_check: torch {torch.__version__}, device {torch.cuda.get_device_name(d) if d.type == 'cuda' else 'CPU'}", flush=True)
PYEOF
status=0
step() { echo; echo "== $1 ($(date +%T))"; }
limit() { [ "$DEV" = cuda ] && echo $1 || echo $2; }   # seconds a step may take: on the GPU, or in the CPU dry run

step "tests on $DEV"
GC_TEST_DEVICE=$DEV timeout $(limit 300 900) $PY -m pytest -q -x -p no:cacheprovider -W ignore tests/test_device.py tests/test_syncs.py \
  tests/test_crosscheck.py tests/test_spectral.py tests/test_packing.py tests/test_plain_fastai.py || status=1

step "benchmarks"
# about 2 minutes on a GPU; on this 2-core CPU every row takes about 8 minutes
# GC_CHECK_BENCH names rows to run (e.g. "jc pl"): the CPU dry run checks the plumbing without the 8 minutes of every row
timeout $(limit 240 600) $PY tests/bench.py ${GC_CHECK_BENCH:-} || status=1

step "a short study of each preset on $DEV, four runs at once"
for preset in pacgan-ring,pac2 pacgan-grid,pac2 stacked-mnist-d4,pac2 stacked-mnist-d2,pac2 odena-mnist,jc odena-mnist-cond,jc; do
  # _gc_study_main is the gc-study command (with PYTHONPATH and no pip install there is no gc-study on PATH); calling
  # gc_study() itself from `python -c` would ignore the arguments and run the default study
  timeout $(limit 120 600) $PY -c 'from gan_conditioning.studies import _gc_study_main; _gc_study_main()' --dataset ${preset%,*} --variants baseline,${preset#*,} \
    --seeds 2 --steps ${GC_CHECK_STEPS:-300} --every 100 --jobs 4 --device $DEV --out /tmp/gc-check --no-checkpoints || status=1
done
step "srgan-cifar (SN-GAN's ResNets, batch 128, critic ch 64) on random 32x32 images: time per iteration on $DEV"
timeout $(limit 240 600) $PY - "$DEV" ${GC_CHECK_SRGAN_STEPS:-50} <<'PYEOF' || status=1
import sys, torch
from functools import partial
from gan_conditioning.protocols import study_data, train_run
d = study_data('srgan-cifar').replace(real=partial(torch.rand, 4096, 3, 32, 32), metric=lambda: lambda x: {}, n_curve=64, n_eval=64, columns=())
if sys.argv[1] == 'cpu':   # the dry run: log κ's Jacobians of the 256-channel generator take minutes on a CPU
    from gan_conditioning.models import resnet_generator
    d = d.replace(generator=partial(resnet_generator, ch=16))
n = int(sys.argv[2])
for v in ('sn', 'sr-static'):
    res, curves, _ = train_run(d, v, 0, steps=n, every=n, device=sys.argv[1])
    print(f"{v}: {curves.seconds.iloc[-1] / n * 1000:.0f} ms per iteration of 5 critic steps and one generator step; status {res['status']}", flush=True)
# the conditional form (cBN G, SN projection D, one critic step at the authors' ImageNet optimiser) on random images and classes
dc = study_data('srgan-cifar-cond-c64-b128').replace(real=lambda: (torch.rand(4096, 3, 32, 32) * 2 - 1, torch.randint(10, (4096,))),
                                                     metric=lambda: lambda x, y=None: {}, n_curve=64, n_eval=64, columns=())
if sys.argv[1] == 'cpu': dc = dc.replace(generator=partial(resnet_generator, ch=16, n_classes=10))
for v in ('sn', 'sr-dynamic'):
    res, curves, _ = train_run(dc, v, 0, steps=n, every=n, device=sys.argv[1])
    print(f"conditional {v}: {curves.seconds.iloc[-1] / n * 1000:.0f} ms per iteration of one critic step and one generator step; status {res['status']}", flush=True)
PYEOF
step "done: $([ $status = 0 ] && echo 'all passed' || echo 'something FAILED, see above')"
exit $status
