//! See `peerlink_core::fuzzing::ice_candidate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_core::fuzzing::ice_candidate(data));
