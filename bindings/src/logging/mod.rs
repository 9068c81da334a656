//! `tracing` output for the app: logcat on Android, the unified log on Apple, stderr elsewhere.
//! The level can change at run time (a reload handle on the filter), e.g. from a debug menu.

#[cfg(target_os = "android")]
mod android;
#[cfg(target_vendor = "apple")]
mod apple;

use std::sync::OnceLock;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Registry};

use crate::guard::panic_message;

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    /// Per packet: costly, for a bug hunt only.
    Trace,
}

/// The registry under the platform's output layer: filtered by the reloadable level.
type Filtered = tracing_subscriber::layer::Layered<reload::Layer<LevelFilter, Registry>, Registry>;

static RELOAD: OnceLock<reload::Handle<LevelFilter, Registry>> = OnceLock::new();

/// Sends the library's logs to the platform's log at `level`. The first call installs the
/// logger (and a panic hook that logs panics there too); later calls only change the level.
/// If the app already installed a global `tracing` subscriber, that one is kept.
#[uniffi::export]
pub fn init_logging(level: LogLevel) {
    if set_log_level(level) {
        return;
    }
    let (filter, handle) = reload::Layer::new(LevelFilter::from(level));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(platform_layer())
        .with(peerlink_core::ice::IceLogNoise)
        .try_init();
    if installed.is_err() {
        return;
    }
    if RELOAD.set(handle).is_ok() {
        install_panic_hook();
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        ?level,
        "peerlink logging started"
    );
}

/// Changes the level of a logger `init_logging` installed. Returns false if there is none.
#[uniffi::export]
pub fn set_log_level(level: LogLevel) -> bool {
    let Some(handle) = RELOAD.get() else { return false };
    handle.modify(|filter| *filter = LevelFilter::from(level)).is_ok()
}

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Off => LevelFilter::OFF,
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }
}

#[cfg(target_os = "android")]
fn platform_layer() -> impl tracing_subscriber::Layer<Filtered> {
    // logcat stamps time, tag and level itself.
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_writer(android::Logcat)
}

#[cfg(target_vendor = "apple")]
fn platform_layer() -> impl tracing_subscriber::Layer<Filtered> {
    // The unified log stamps time, process and level itself.
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_writer(apple::UnifiedLog::new())
}

#[cfg(not(any(target_os = "android", target_vendor = "apple")))]
fn platform_layer() -> impl tracing_subscriber::Layer<Filtered> {
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::io::stderr)
}

/// On a phone stderr goes nowhere: a panic on an engine thread would vanish without a trace.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(detail = %panic_message(info.payload()), %location, "panic");
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_changes_after_install_and_not_before() {
        // One test owns the global subscriber, so the before/after steps run in order.
        assert!(!set_log_level(LogLevel::Info) || RELOAD.get().is_some());
        init_logging(LogLevel::Warn);
        assert!(RELOAD.get().is_some());
        assert!(!tracing::enabled!(tracing::Level::INFO));
        assert!(set_log_level(LogLevel::Debug));
        assert!(tracing::enabled!(tracing::Level::DEBUG));
        assert!(!tracing::enabled!(tracing::Level::TRACE));
        init_logging(LogLevel::Error);
        assert!(!tracing::enabled!(tracing::Level::WARN));
    }
}
