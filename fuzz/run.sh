#!/bin/sh
# fuzz/run.sh - runs the reader harnesses (build-fuzz/fuzz_<reader>, built by `make fuzz-build`)
# one after the other, each for FUZZ_SECONDS, and prints per harness the executions, the
# coverage (cov: and ft: of libFuzzer's last stats line) and the findings. Exit status 1
# when any harness found something (crash, leak, UBSan report, out-of-memory, timeout).
#
#   FUZZ_SECONDS=600 sh fuzz/run.sh npy png     (make fuzz / fuzz-smoke call it for all of them)
#   FUZZ_FLAGS="-jobs=1 -workers=1" ...         extra libFuzzer flags
#
# Per reader, under build-fuzz/: seeds/<r>/ (rebuilt each run from spec/fixtures and
# fuzz/seeds/<r>/), corpus/<r>/ (what libFuzzer adds; kept between runs, never committed),
# findings/<r>/ (crash-*, leak-*, timeout-*, oom-* inputs), logs/<r>.log.
set -u
secs=${FUZZ_SECONDS:-60}
out=build-fuzz
fx=spec/fixtures/io

# seeds <reader> <dir>: the fixtures of that format (Interfile: header, a NUL, then the data).
seeds() {
    case $1 in
    safetensors) cp $fx/*.safetensors "$2"/ ;;
    npy) cp $fx/*.npy spec/fixtures/models/optim_init.npy "$2"/ ;;
    png) cp $fx/*.png "$2"/ ;;
    nifti) cp $fx/*.nii $fx/*.nii.gz "$2"/ ;;
    dicom)
        cp spec/fixtures/dicom/*.dcm spec/fixtures/mps/*/*.dcm "$2"/
        for f in spec/fixtures/dicom/series/*; do cp "$f" "$2/series-$(basename "$f")"; done ;;
    interfile)
        for pair in gate_u8.h33:gate_u8.img simind.h00:simind.a00 stir.hv:stir.v; do
            h=${pair%%:*} d=${pair#*:}
            { cat "$fx/$h"; printf '\000'; cat "$fx/$d"; } > "$2/$h.bin"
        done ;;
    esac
    if [ -d "fuzz/seeds/$1" ]; then cp fuzz/seeds/"$1"/* "$2"/; fi
}

status=0
for r in "$@"; do
    bin=$out/fuzz_$r
    [ -x "$bin" ] || { echo "fuzz_$r: $bin missing (make fuzz-build)"; status=1; continue; }
    rm -rf "$out/seeds/$r"
    mkdir -p "$out/seeds/$r" "$out/corpus/$r" "$out/findings/$r" "$out/logs"
    seeds "$r" "$out/seeds/$r"
    dict=""
    [ -f "fuzz/$r.dict" ] && dict="-dict=fuzz/$r.dict"
    log=$out/logs/$r.log
    before=$(ls "$out/findings/$r" | wc -l)
    start=$(date +%s)
    # halt_on_error: a UBSan report stops the run and counts as a finding (the objects are
    # also built with -fno-sanitize-recover=undefined)
    # dicom: GDCM (in the decoding child, io/dicom.c) allocates an element's declared length
    # before reading it; ASan refuses allocations over 512 MB there (the child then dies and
    # the parent reports an error) before libFuzzer's malloc limit would count it as a finding.
    asan_extra=""
    [ "$r" = dicom ] && asan_extra=":max_allocation_size_mb=512:allocator_may_return_null=1"
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0$asan_extra \
        "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=25 \
        -print_final_stats=1 -artifact_prefix="$out/findings/$r/" $dict ${FUZZ_FLAGS:-} \
        "$out/corpus/$r" "$out/seeds/$r" > "$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    after=$(ls "$out/findings/$r" | wc -l)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    [ -n "$execs" ] || execs=$(echo "$last" | sed -n 's/^#\([0-9]*\).*/\1/p')
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    new=$((after - before))
    echo "fuzz_$r: ${took}s, ${execs:-?} executions, cov: ${cov:-?} ft: ${ft:-?}, corpus $(ls "$out/corpus/$r" | wc -l) files, findings: $new (exit status $rc)"
    if [ $rc -ne 0 ] || [ $new -ne 0 ]; then
        status=1
        grep -E 'ERROR: |SUMMARY: |runtime error|fuzz: |Test unit written' "$log" | head -8 | sed 's/^/    /'
        echo "    log: $log"
    fi
done
exit $status
