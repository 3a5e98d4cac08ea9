#!/usr/bin/env bash
# One prepared command for a lent GPU machine (issue 17): the data, then grids of cells, within a deadline.
#
#   bash benchmarks/gpu_grid.sh pack                 # here, once: fills .carry/ (ignored by git)
#   bash benchmarks/gpu_grid.sh run SECONDS GRID...  # there: cells of GRIDs until SECONDS have passed
#
# The GPU machine has its own python3 with torch and most of our dependencies but reaches no package
# registry, so `pack` brings what the data generators need besides: pure-Python wheels (the PhoneNums
# font, pretty_midi's soundfont, the FluidSynth binding) and Debian's libfluidsynth with the libraries it
# links, copied from this machine. pyfluidsynth finds the library through HOMEBREW_PREFIX when
# ctypes.util.find_library does not, so the carried libraries reach the data generators' process alone.
# Every finished cell writes its record (benchmarks/results/cells/GRID/) as it ends; `run` packs the
# records, the tables, the logs and the data manifests (their sha256 tell whether the data there is
# byte-identical to ours) into $OUT/gpu-grid.tgz.
set -u
cd "$(dirname "$0")/.."
CARRY=.carry

pack() {
    rm -rf "$CARRY"; mkdir -p "$CARRY/whl" "$CARRY/fs/lib"
    grep -qs "^/$CARRY/\$" .git/info/exclude || echo "/$CARRY/" >> .git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform any -d "$CARRY/whl" \
        handwriting-generator==0.1.0 pretty_midi==0.2.11.post0 mido==1.3.3 pyfluidsynth==1.4.0 \
        importlib_resources==6.5.2 || exit 1
    local lib=/usr/lib/x86_64-linux-gnu/libfluidsynth.so.3
    [ -e "$lib" ] || { echo "error: $lib is missing: run apt-get install libfluidsynth3" >&2; exit 2; }
    cp -L "$lib" "$CARRY/fs/lib/libfluidsynth.dylib"
    # the libraries it links, less the C and C++ runtimes the GPU machine has newer versions of
    ldd "$lib" | awk '/=> \//{print $3}' | grep -Ev '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' |
        while read -r f; do cp -L "$f" "$CARRY/fs/lib/"; done
    du -sh "$CARRY"
}

run() {
    local seconds=$1; shift
    local start=$SECONDS out=${OUT:-/tmp/gpu-grid-out}
    mkdir -p "$out" logs
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$CARRY"/whl/*.whl || exit 1
    export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name(0))"
    # many small runs share the GPU far better through MPS; without it they time-slice
    nvidia-cuda-mps-control -d 2>/dev/null && echo "MPS on" || echo "MPS not started"
    local gen="env HOMEBREW_PREFIX=$PWD/$CARRY/fs LD_LIBRARY_PATH=$PWD/$CARRY/fs/lib python3 -m varinv data"
    $gen phonenums --out data/phonenums-10k --size 10000 --seed 0 > logs/data-phonenums.log 2>&1 &
    $gen insnotes --out data/insnotes > logs/data-insnotes.log 2>&1 &
    $gen waveforms --out data/waveforms > logs/data-waveforms.log 2>&1 &
    # the CUDA tests (tests/test_cuda.py) while the data is made; the GPU is idle then
    timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py -s > logs/pytest-cuda.log 2>&1 &
    local tests=$!
    wait $(jobs -p | grep -v "^$tests\$")
    tail -n 2 logs/data-*.log
    echo "data ready after $((SECONDS - start)) s"
    for grid in "$@"; do
        local left=$((seconds - (SECONDS - start)))
        [ "$left" -gt 60 ] || break
        echo "grid $grid: $left s left"
        timeout --signal=INT --kill-after=20 "$left" python3 -m varinv benchmark "$grid" > "logs/$(basename "$grid" .yaml).log" 2>&1
        echo "grid $grid ended with $? after $((SECONDS - start)) s"
    done
    wait "$tests"; grep -E "gap|passed|failed|Error" logs/pytest-cuda.log | tail -n 5
    echo quit | nvidia-cuda-mps-control 2>/dev/null
    mkdir -p logs/manifests
    for d in phonenums-10k insnotes waveforms; do cp "data/$d/manifest.json" "logs/manifests/$d.json" 2>/dev/null; done
    tar czf "$out/gpu-grid.tgz" benchmarks/results logs runs/*/*/train_log.jsonl 2>/dev/null
    ls -la "$out"
    cut -c1-160 benchmarks/results/*-gpu.md 2>/dev/null | grep -v "^$"
}

case "${1:-}" in
    pack) pack ;;
    run) shift; run "$@" ;;
    *) echo "error: usage: bash benchmarks/gpu_grid.sh pack | run SECONDS GRID.yaml..." >&2; exit 2 ;;
esac
