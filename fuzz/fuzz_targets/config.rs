//! The engine's configuration as the CLI reads it (TOML: the engine's fields plus
//! `interface`, see cli/src/up.rs) and its validation: an error or a configuration whatever
//! the text, never a panic.
#![no_main]

use peerlink_core::EngineSpec;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(mut table) = toml::from_str::<toml::Table>(text) else { return };
    table.remove("interface");
    let Ok(spec) = toml::Value::Table(table).try_into::<EngineSpec>() else { return };
    if let Ok(config) = spec.validate() {
        assert_eq!(config.peers.len(), spec.peers.len());
        assert!(config.peers.iter().all(|p| p.public_key != config.private_key.public_key()));
    }
});
