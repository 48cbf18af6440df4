//! The runc-compatible personality (`capsa-runc`).

use std::ffi::OsString;

pub fn main(_args: Vec<OsString>) -> i32 {
    eprintln!("capsa-runc: not implemented yet");
    1
}
