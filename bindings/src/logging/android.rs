//! logcat through liblog: one `__android_log_write` per tracing event, tag `peerlink`.

use std::ffi::CString;
use std::io;

use android_log_sys::{__android_log_write, LogPriority};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// logcat's tag for every line.
const TAG: &std::ffi::CStr = c"peerlink";

pub(super) struct Logcat;

/// Collects one formatted event and writes it to logcat when dropped.
pub(super) struct Line {
    priority: LogPriority,
    text: Vec<u8>,
}

impl<'a> MakeWriter<'a> for Logcat {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            priority: LogPriority::INFO,
            text: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        let priority = match *meta.level() {
            Level::ERROR => LogPriority::ERROR,
            Level::WARN => LogPriority::WARN,
            Level::INFO => LogPriority::INFO,
            Level::DEBUG => LogPriority::DEBUG,
            // TRACE; Level is a struct of constants, so the compiler wants a catch-all.
            _ => LogPriority::VERBOSE,
        };
        Line {
            priority,
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
        while self.text.last() == Some(&b'\n') {
            self.text.pop();
        }
        self.text.retain(|&b| b != 0);
        let Ok(text) = CString::new(std::mem::take(&mut self.text)) else {
            return;
        };
        // SAFETY: TAG and text are NUL-terminated strings that outlive the call.
        unsafe {
            __android_log_write(self.priority as std::os::raw::c_int, TAG.as_ptr(), text.as_ptr());
        }
    }
}
