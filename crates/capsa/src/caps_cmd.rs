//! `capsa caps ...`: capability inspection commands.

#[derive(clap::Args)]
pub struct CapsArgs {}

pub fn run(_args: CapsArgs) -> i32 {
    0
}
