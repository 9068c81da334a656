//! The unified log (Console.app, `log stream --predicate 'subsystem == "io.peerlink"'`).

use std::io;
use std::sync::Arc;

use oslog::{Level as OsLevel, OsLog};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The unified log's subsystem and category for every line.
const SUBSYSTEM: &str = "io.peerlink";
const CATEGORY: &str = "engine";

pub(super) struct UnifiedLog(Arc<OsLog>);

impl UnifiedLog {
    pub(super) fn new() -> Self {
        Self(Arc::new(OsLog::new(SUBSYSTEM, CATEGORY)))
    }
}

/// Collects one formatted event and writes it to the unified log when dropped.
pub(super) struct Line {
    log: Arc<OsLog>,
    level: OsLevel,
    text: Vec<u8>,
}

impl<'a> MakeWriter<'a> for UnifiedLog {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            log: self.0.clone(),
            level: OsLevel::Default,
            text: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        // `Fault` is for system-level bugs; our errors are `Error`.
        let level = match *meta.level() {
            Level::ERROR => OsLevel::Error,
            Level::WARN => OsLevel::Default,
            Level::INFO => OsLevel::Info,
            // DEBUG and TRACE; Level is a struct of constants, so the compiler wants a catch-all.
            _ => OsLevel::Debug,
        };
        Line {
            log: self.0.clone(),
            level,
            text: Vec::new(),
        }
    }
}

impl io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.text);
        // oslog replaces NULs, so this cannot fail.
        self.log.with_level(
            std::mem::replace(&mut self.level, OsLevel::Default),
            text.trim_end(),
        );
    }
}
