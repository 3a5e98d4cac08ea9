#!/usr/bin/env bash
# One prepared command for a lent GPU machine (issues 15 and 17): the data, then grids, within a deadline.
#
#   bash benchmarks/gpu_grid.sh pack                   # here, once: fills .carry/ (ignored by git)
#   bash benchmarks/gpu_grid.sh run SECONDS SPEC...    # there: the SPECs in order until SECONDS have passed
#
# A SPEC is a grid file (`varinv benchmark GRID.yaml`), `suite:TAG:SEEDS[:SPLIT]`, the generalisation
# suite's V3 grid (`suite.py grid --tag TAG --seeds SEEDS`) on every domain but fluidr3, whose 141 MB
# soundfont cannot travel (that domain runs on the CPU), or `report:RUNS`, the demo page built there from
# a grid's run folders (`varinv report RUNS`), which come back only as the page: $OUT/site.tgz.NN
# (15 MiB pieces; `cat site.tgz.* | tar xz` here).
# The GPU machine has its own python3 with torch and most of our dependencies but reaches no package
# registry, so `pack` brings what the data generators need besides: pure-Python wheels (the PhoneNums
# font, pretty_midi's soundfont, the FluidSynth binding), and Debian's libfluidsynth and espeak-ng with
# the libraries they link, copied from this machine. pyfluidsynth finds the library through HOMEBREW_PREFIX
# when ctypes.util.find_library does not, and espeak-ng its voices through ESPEAK_DATA_PATH, so the
# carried libraries reach the data generators' processes alone.
# Every finished cell writes its record (benchmarks/results/cells/GRID/) as it ends; `run` packs the
# records, the tables, the logs and the data manifests (their sha256 tell whether the data there is
# byte-identical to ours) into $OUT/gpu-grid.tgz.
set -u
cd "$(dirname "$0")/.."
CARRY=.carry
SUITE_DOMAINS="handwriting letters shapes textures greek speech fmsynth"

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
    local espeak; espeak=$(command -v espeak-ng) || { echo "error: espeak-ng is missing: run apt-get install espeak-ng" >&2; exit 2; }
    mkdir -p "$CARRY/fs/bin" "$CARRY/espeak"
    cp -L "$espeak" "$CARRY/fs/bin/"
    cp -rL /usr/lib/x86_64-linux-gnu/espeak-ng-data "$CARRY/espeak/"
    # the libraries they link, less the C and C++ runtimes the GPU machine has newer versions of
    ldd "$lib" "$espeak" | awk '/=> \//{print $3}' | sort -u |
        grep -Ev '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' |
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
    local gen="env HOMEBREW_PREFIX=$PWD/$CARRY/fs LD_LIBRARY_PATH=$PWD/$CARRY/fs/lib PATH=$PWD/$CARRY/fs/bin:$PATH
        ESPEAK_DATA_PATH=$PWD/$CARRY/espeak python3"
    $gen -m varinv data phonenums --out data/phonenums-10k --size 10000 --seed 0 > logs/data-phonenums.log 2>&1 &
    $gen -m varinv data insnotes --out data/insnotes > logs/data-insnotes.log 2>&1 &
    $gen -m varinv data waveforms --out data/waveforms > logs/data-waveforms.log 2>&1 &
    if [[ " $* " == *" suite:"* ]]; then
        for d in $SUITE_DOMAINS; do
            $gen benchmarks/generalisation/suite.py data --domains "$d" > "logs/data-$d.log" 2>&1 &
        done
    fi
    # the CUDA tests (tests/test_cuda.py) while the data is made; the GPU is idle then
    timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py -s > logs/pytest-cuda.log 2>&1 &
    local tests=$!
    wait $(jobs -p | grep -v "^$tests\$")
    tail -n 2 logs/data-*.log
    echo "data ready after $((SECONDS - start)) s"
    for spec in "$@"; do
        local left=$((seconds - (SECONDS - start))) cmd log
        [ "$left" -gt 60 ] || break
        if [[ "$spec" == report:* ]]; then  # the page built there from a grid's run folders; it comes back
            echo "$spec: $left s left"
            timeout "$left" python3 -m varinv report "${spec#report:}" -o site > logs/report.log 2>&1
            echo "$spec ended with $? after $((SECONDS - start)) s"
            tar czf site.tgz site 2>/dev/null && split -b 15m -d site.tgz "$out/site.tgz."
            continue
        elif [[ "$spec" == suite:* ]]; then
            IFS=: read -r _ tag seeds split <<< "$spec"
            cmd=(benchmarks/generalisation/suite.py grid --tag "$tag" --seeds "$seeds" --parallel 32
                 --set train.device=cuda --domains "${SUITE_DOMAINS// /,},phonenums,insnotes,waveforms"
                 ${split:+--split "$split"})
            log="logs/suite-$tag.log"
        else
            cmd=(-m varinv benchmark "$spec")
            log="logs/$(basename "$spec" .yaml).log"
        fi
        echo "$spec: $left s left"
        timeout --signal=INT --kill-after=20 "$left" python3 "${cmd[@]}" > "$log" 2>&1
        echo "$spec ended with $? after $((SECONDS - start)) s"
    done
    wait "$tests"; grep -E "gap|passed|failed|Error" logs/pytest-cuda.log | tail -n 5
    echo quit | nvidia-cuda-mps-control 2>/dev/null
    mkdir -p logs/manifests
    for d in data/*/manifest.json data/gen/*/manifest.json; do cp "$d" "logs/manifests/$(basename "$(dirname "$d")").json"; done 2>/dev/null
    tar czf "$out/gpu-grid.tgz" benchmarks/results logs runs/*/*/train_log.jsonl 2>/dev/null
    ls -la "$out"
    for f in logs/*.log; do grep -q "suite\|gpu" <<< "$f" && tail -n 3 "$f"; done
}

case "${1:-}" in
    pack) pack ;;
    run) shift; run "$@" ;;
    *) echo "error: usage: bash benchmarks/gpu_grid.sh pack | run SECONDS GRID.yaml..." >&2; exit 2 ;;
esac
