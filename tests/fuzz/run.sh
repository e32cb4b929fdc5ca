#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan + UBSan) in their own build
# directory and run each one for SECONDS (default 10). Seeds: the serializer
# targets start from tests/vectors, others from tests/fuzz/corpus/<target>/.
# The corpus each run grows is kept in the build directory, so the next run
# starts where this one stopped; crashes land in <build>/fuzz-artifacts/ and
# make the script fail. Prints one TAP line per target on stdout (with
# --tap, preceded by the plan); everything else goes to stderr.
#
#   tests/fuzz/run.sh                 10 s per target
#   tests/fuzz/run.sh 3600            an hour per target (docs/serialization.md)
#   tests/fuzz/run.sh 10 --tap        what ./tools/test runs
#   KSOCK_FUZZ_BUILD=/tmp/bf tests/fuzz/run.sh      another build directory
#   KSOCK_FUZZ_JOBS=2 tests/fuzz/run.sh 3600        two parallel workers per target
#   KSOCK_FUZZ_PARALLEL=1 tests/fuzz/run.sh          one target at a time
# Targets run side by side, one per core (KSOCK_FUZZ_PARALLEL, default: the number of
# cores; 1 when KSOCK_FUZZ_JOBS > 1), each for the full SECONDS with one core of its own, so
# every target gets the same fuzzing as one at a time; the TAP lines keep the target order.
set -uo pipefail
secs=${1:-10}
tap=${2:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${KSOCK_FUZZ_BUILD:-$root/build-fuzz}
jobs=${KSOCK_FUZZ_JOBS:-1}
targets=${KSOCK_FUZZ_TARGETS:-"json-value json-envelope msgpack-value msgpack-envelope protobuf-value protobuf-envelope config jwt-token jwt-claims"}
ntargets=$(echo $targets | wc -w)

bail() { # reason
  [ "$tap" = --tap ] && echo "1..1"
  echo "not ok 1 - fuzz: $1"
  exit 1
}

command -v clang >/dev/null || bail "clang is not installed"
if [ ! -f "$dir/build.ninja" ]; then
  CC=clang meson setup "$dir" "$root" -Dfuzz=true -Dtests=true \
    -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fsanitize=fuzzer-no-link >&2 || bail "meson setup failed"
fi
ninja -C "$dir" $(for t in $targets; do echo "tests/fuzz/fuzz-$t"; done) >&2 || bail "build failed"

# Seeds: every vector of the format and kind (hex files turned into bytes), or the checked-in corpus.
seed() { # target dest
  local fmt=${1%-*} kind=${1#*-} src
  mkdir -p "$2"
  case $1 in
  json-*) cp "$root/tests/vectors/${kind}s"/*.json "$2"/ ;;
  msgpack-* | protobuf-*)
    for h in "$root/tests/vectors/${kind}s"/*."$fmt".hex; do
      perl -ne 'chomp; print pack("H*", $_)' "$h" >"$2/$(basename "$h" .hex)"
    done ;;
  *) [ -d "$root/tests/fuzz/corpus/$1" ] && cp "$root/tests/fuzz/corpus/$1"/* "$2"/ ;;
  esac
}

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
# One target: its TAP line (without the number) goes to $dir/fuzz-artifacts/$t.tap.
fuzz_one() { # target
  local t=$1 corpus="$dir/fuzz-corpus/$1" seeds="$dir/fuzz-seeds/$1"
  local log="$dir/fuzz-artifacts/$1.log" out="$dir/fuzz-artifacts/$1.tap"
  mkdir -p "$corpus"
  seed "$t" "$seeds"
  local extra=()
  case $t in json-* | jwt-claims) extra+=(-dict="$root/tests/fuzz/json.dict") ;; esac
  # Parallel workers write fuzz-N.log into the current directory: keep those with the artifacts.
  [ "$jobs" -gt 1 ] && extra+=(-jobs="$jobs" -workers="$jobs")
  if (cd "$dir/fuzz-artifacts" && "$dir/tests/fuzz/fuzz-$t" -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/fuzz-artifacts/$t-" \
        "${extra[@]}" "$corpus" "$seeds") >"$log" 2>&1; then
    local runs cov
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s+=$2} END {print s+0}')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    echo "ok - fuzz $t: ${secs}s, $runs inputs, coverage ${cov:-?} edges" >"$out"
  else
    { echo "not ok - fuzz $t: see $log"
      grep -E 'ERROR|SUMMARY|round trip|runtime error' "$log" | head -5 | sed 's/^/#   /'; } >"$out"
  fi
}

parallel=${KSOCK_FUZZ_PARALLEL:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs" -gt 1 ] && parallel=${KSOCK_FUZZ_PARALLEL:-1}
[ "$parallel" -ge 1 ] 2>/dev/null || parallel=1
mkdir -p "$dir/fuzz-artifacts"
running=0
for t in $targets; do
  rm -f "$dir/fuzz-artifacts/$t.tap"
  if [ "$running" -ge "$parallel" ]; then wait -n; running=$((running - 1)); fi
  fuzz_one "$t" &
  running=$((running + 1))
done
wait

[ "$tap" = --tap ] && echo "1..$ntargets"
failed=0 n=0
for t in $targets; do
  n=$((n + 1))
  out="$dir/fuzz-artifacts/$t.tap"
  [ -s "$out" ] || echo "not ok - fuzz $t: no result (see $dir/fuzz-artifacts/$t.log)" >"$out"
  grep -q '^not ok' "$out" && failed=$((failed + 1))
  sed "1s/^\(ok\|not ok\) - /\1 $n - /" "$out"
done
[ "$failed" -eq 0 ]
