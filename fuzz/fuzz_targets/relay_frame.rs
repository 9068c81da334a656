//! See `peerlink_core::fuzzing::relay_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_core::fuzzing::relay_frame(data));
