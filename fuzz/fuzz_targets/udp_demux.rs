//! See `peerlink_core::fuzzing::udp_demux`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_core::fuzzing::udp_demux(data));
