//! Writing whole documents to stdout (tables, JSON); a reader that went
//! away ends the command quietly.

use std::io::Write;

use crate::failure::stdout_error;

pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// One JSON document, indented for people who read it too.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    print(&text)
}
