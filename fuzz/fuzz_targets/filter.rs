//! See `peerlink_core::fuzzing::filter`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_core::fuzzing::filter(data));
