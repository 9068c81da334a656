# shellcheck shell=bash
# The one way a test script skips (sourced by lib.sh, jvm.sh and run.sh); the Rust tests do the
# same through core/tests/common/lab.rs.

# skip_or_fail NAME REASON: NAME cannot run here because of REASON. In CI (CI=true) a missing
# lab tool is a failure: prints "FAIL: NAME: REASON" and returns 1. Elsewhere prints
# "SKIP: NAME: REASON", appends it to $PEERLINK_SKIP_LOG when set (tests/run.sh counts and names
# every skip from there and from the logs) and returns 0.
skip_or_fail() {
    if [[ ${CI:-} == true || ${CI:-} == 1 ]]; then
        echo "FAIL: $1: $2 (in CI a missing lab tool is a failure)"
        return 1
    fi
    echo "SKIP: $1: $2"
    if [[ -n ${PEERLINK_SKIP_LOG:-} ]]; then
        echo "SKIP: $1: $2" >>"$PEERLINK_SKIP_LOG"
    fi
}
