#!/usr/bin/env bash
# JVM tests of the Kotlin side (tests/jvm): builds the host libpeerlink_ffi.so with the
# `testing` feature, generates its Kotlin bindings into tests/jvm/target/generated/kotlin (not
# committed), compiles them with android/'s io.peerlink sources and its Android classes
# (io.peerlink.android) and runs the JUnit tests through JNA: the plain ones on the JVM, the
# Android ones (tests/jvm/src/robolectric) under Robolectric's Android 14, whose framework jar
# Maven fetches before the tests run (they run offline).
#
#   tests/jvm.sh                      build, generate, mvn test
#   tests/jvm.sh --android-typecheck  also compile android/'s Android classes against
#                                     Robolectric's android-all jar (no test runs for them)
#   tests/jvm.sh --release            test the optimised library (for the printed figures)
# Extra arguments after `--` go to mvn (e.g. -- -Dtest=EngineTest).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
typecheck=0
profile=debug
release_flag=()
mvn_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --android-typecheck) typecheck=1 ;;
    --release) profile=release; release_flag=(--release) ;;
    --) shift; mvn_args=("$@"); break ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

source "$root/tests/lab/skip.sh"
for tool in java mvn python3; do
  command -v "$tool" >/dev/null || { skip_or_fail jvm "$tool missing (install a JDK, Maven and Python 3)" || exit 1; exit 0; }
done

jvm=$root/tests/jvm
generated=$jvm/target/generated/kotlin
rm -rf "$generated"
"$root/bindings/generate.sh" "${release_flag[@]}" --features testing --kotlin "$generated"

cd "$jvm"
rm -rf "$jvm/target/surefire-reports"
status=0
mvn -q -B -P robolectric test -Djna.library.path="$CARGO_TARGET_DIR/$profile" "${mvn_args[@]}" || status=$?
# -q hides surefire's summary; print one from its reports, and a "SKIP: jvm::Class.test: why"
# line per skipped test (appended to $PEERLINK_SKIP_LOG too when set) for tests/run.sh.
python3 - "$jvm/target/surefire-reports" <<'PY' || true
import glob, os, sys, xml.etree.ElementTree as ET
t = f = e = s = 0
skips = []
for path in glob.glob(sys.argv[1] + "/TEST-*.xml"):
    r = ET.parse(path).getroot()
    t += int(r.get("tests", 0)); f += int(r.get("failures", 0)); e += int(r.get("errors", 0)); s += int(r.get("skipped", 0))
    for case in r.iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None:
            why = " ".join((skipped.get("message") or "skipped").split())
            skips.append(f"SKIP: jvm::{case.get('classname')}.{case.get('name')}: {why}")
for line in skips:
    print(line)
if skips and os.environ.get("PEERLINK_SKIP_LOG"):
    with open(os.environ["PEERLINK_SKIP_LOG"], "a") as log:
        log.write("".join(line + "\n" for line in skips))
print(f"jvm: {t - f - e - s} passed, {f + e} failed, {s} skipped")
PY
[ "$status" = 0 ] || exit "$status"
if [ "$typecheck" = 1 ]; then
  # `compile` only: the Android classes cannot run on a plain JVM.
  mvn -q -B -P android-typecheck compile
  echo "android-typecheck: android/ Kotlin compiled against android-all"
fi
