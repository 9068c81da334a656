//! See `peerlink_core::fuzzing::mgmt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_core::fuzzing::mgmt(data));
