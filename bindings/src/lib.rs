//! peerlink-ffi
