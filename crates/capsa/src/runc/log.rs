//! The runc-style log: `--log FILE` and `--log-format text|json`, as the containerd shim reads
//! it (it takes the last `{"level":"error","msg":...}` line of log.json as the user's error).
//!
//! Owns: formatting log lines (logrus text or JSON) and where they go.
//! Must not touch: what is logged (the commands decide) or exit codes.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use capsa_runtime::state::rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Where warnings and errors go. Without `--log` runc logs to stderr.
pub struct Log {
    file: Option<File>,
    format: Format,
    debug: bool,
}

impl Log {
    /// Opens `--log` for appending (the shim reuses one log.json for every call).
    pub fn open(path: Option<&Path>, format: Format, debug: bool) -> std::io::Result<Log> {
        let file = match path {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => None,
        };
        Ok(Log {
            file,
            format,
            debug,
        })
    }

    /// A log that writes text lines to stderr (before the flags are known).
    pub fn stderr() -> Log {
        Log {
            file: None,
            format: Format::Text,
            debug: false,
        }
    }

    pub fn warn(&self, msg: &str) {
        self.write("warning", msg);
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }

    /// An error that ends the command. runc writes it to the log and, when the log is a
    /// file, also prints the bare message on stderr for a person.
    pub fn error(&self, msg: &str) {
        self.write("error", msg);
        if self.file.is_some() {
            eprintln!("{msg}");
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let line = format_line(
            self.format,
            level,
            msg,
            &rfc3339(std::time::SystemTime::now()),
        );
        match &self.file {
            // One write(2) per line: O_APPEND keeps concurrent writers' lines whole.
            Some(f) => {
                let _ = (&*f).write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }
}

/// One line in logrus' JSON or text format, newline included.
pub fn format_line(format: Format, level: &str, msg: &str, time: &str) -> String {
    let quoted = serde_json::to_string(msg).unwrap_or_else(|_| "\"\"".into());
    match format {
        Format::Json => format!("{{\"level\":\"{level}\",\"msg\":{quoted},\"time\":\"{time}\"}}\n"),
        Format::Text => format!("time=\"{time}\" level={level} msg={quoted}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_is_what_the_shim_parses() {
        let l = format_line(
            Format::Json,
            "error",
            "container does not exist: \"x\"",
            "T",
        );
        let v: serde_json::Value = serde_json::from_str(l.trim_end()).expect("json");
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container does not exist: \"x\"");
        assert_eq!(v["time"], "T");
        assert!(l.ends_with('\n'));
    }

    #[test]
    fn text_line_is_logrus_like() {
        assert_eq!(
            format_line(Format::Text, "warning", "a b", "T"),
            "time=\"T\" level=warning msg=\"a b\"\n"
        );
    }
}
