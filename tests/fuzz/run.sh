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
[ "$tap" = --tap ] && echo "1..$ntargets"
failed=0 n=0
mkdir -p "$dir/fuzz-artifacts"
for t in $targets; do
  n=$((n + 1))
  corpus="$dir/fuzz-corpus/$t" seeds="$dir/fuzz-seeds/$t"
  mkdir -p "$corpus"
  seed "$t" "$seeds"
  log="$dir/fuzz-artifacts/$t.log"
  extra=()
  case $t in json-* | jwt-claims) extra+=(-dict="$root/tests/fuzz/json.dict") ;; esac
  # Parallel workers write fuzz-N.log into the current directory: keep those with the artifacts.
  [ "$jobs" -gt 1 ] && extra+=(-jobs="$jobs" -workers="$jobs")
  if (cd "$dir/fuzz-artifacts" && "$dir/tests/fuzz/fuzz-$t" -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/fuzz-artifacts/$t-" \
        "${extra[@]}" "$corpus" "$seeds") >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s+=$2} END {print s+0}')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    echo "ok $n - fuzz $t: ${secs}s, $runs inputs, coverage ${cov:-?} edges"
  else
    echo "not ok $n - fuzz $t: see $log"
    grep -E 'ERROR|SUMMARY|round trip|runtime error' "$log" | head -5 | sed 's/^/#   /'
    failed=$((failed + 1))
  fi
done
[ "$failed" -eq 0 ]
