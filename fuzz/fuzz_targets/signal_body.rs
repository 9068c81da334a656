//! See `peerlink_core::fuzzing::signal_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_core::fuzzing::signal_body(data));
