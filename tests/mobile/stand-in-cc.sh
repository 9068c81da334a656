#!/usr/bin/env bash
# A stand-in C compiler for type-checking Apple targets on a machine with no Apple SDK
# (tests/mobile-checks.sh). Build scripts (ring's, oslog's) compile their C through the cc crate;
# this answers cc's probes and writes an empty file for every object, so `cargo check`/`clippy`
# can run. Nothing it "compiles" is code: the result type-checks our Rust, it is not a build.
#   -E FILE        (cc's compiler-family and C++-stdlib probes) prints FILE as is: the family
#                  probe's text names clang first, so cc takes this for clang
#   ... -o OBJECT  writes OBJECT, empty
set -euo pipefail

out=""
preprocess=0
input=""
while [ $# -gt 0 ]; do
  case "$1" in
    -E) preprocess=1 ;;
    -o) out=$2; shift ;;
    -o*) out=${1#-o} ;;
    -*) ;;
    *) input=$1 ;;
  esac
  shift
done
if [ "$preprocess" = 1 ]; then
  [ -n "$input" ] && cat -- "$input"
  exit 0
fi
[ -n "$out" ] && : >"$out"
exit 0
