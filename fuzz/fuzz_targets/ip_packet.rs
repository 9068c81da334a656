//! See `peerlink_core::fuzzing::ip_packet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_core::fuzzing::ip_packet(data));
