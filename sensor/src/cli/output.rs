//! Everything the CLI prints goes through here.
//!
//! Text is for a terminal, and much of it comes from other users: a process chooses its
//! own argv and executable name, a user chooses file names. Left raw, a newline in an
//! argv forges a line of output and an escape sequence clears the screen or rewrites what
//! an administrator reads. So every text line has its control characters escaped. JSON
//! is already escaped by serde for C0; DEL, C1 and the direction overrides are escaped
//! here too, since a terminal may act on them when a person pipes JSON to it.
//!
//! Output to a reader that went away (`sensor events | head -1`) ends the command quietly
//! through [`OutputClosed`] instead of a panic.

use std::{borrow::Cow, fmt::Write as _, io::Write};

use anyhow::Result;

/// The reader of standard output went away: the command stops, with no error shown.
#[derive(Debug)]
pub struct OutputClosed;

impl std::fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for OutputClosed {}

/// Characters a terminal may act on rather than show, or that reorder what it shows.
fn is_terminal_control(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `s` with control characters (and backslashes, so an escape cannot be forged) written
/// as visible escapes; one line whatever `s` holds.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_terminal_control(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 && is_terminal_control(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_terminal_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// What serde leaves raw in a JSON string that a terminal may act on: DEL, C1 and the
/// direction overrides (serde escapes C0; a C0 outside a string is JSON's own whitespace).
fn is_raw_in_json(c: char) -> bool {
    c >= '\u{7f}' && is_terminal_control(c)
}

/// JSON text with DEL, C1 and direction overrides as `\uXXXX`. They can only occur
/// inside strings (JSON's own syntax is ASCII), so the result is the same JSON value.
fn escape_json_controls(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_raw_in_json) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_raw_in_json(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(OutputClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

/// One line of text for people, control characters escaped.
pub fn text_line(line: &str) -> Result<()> {
    write_stdout(&format!("{}\n", escape_controls(line)))
}

/// One JSON document on one line.
pub fn json_line<T: serde::Serialize + ?Sized>(v: &T) -> Result<()> {
    let json = serde_json::to_string(v)?;
    write_stdout(&format!("{}\n", escape_json_controls(&json)))
}

/// One JSON document, indented.
pub fn json_pretty<T: serde::Serialize + ?Sized>(v: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(v)?;
    write_stdout(&format!("{}\n", escape_json_controls(&json)))
}

/// Prints one text line through [`text_line`]; `?`-propagates a closed output.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::text_line(&format!($($arg)*))?
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_line_stays_on_one_line_with_its_controls_visible() {
        let argv = "x\n  999 process_exec pid=1 exe=/sbin/init\x1b[2J\u{9b}1m\u{202e}\x7f\\n";
        let shown = escape_controls(argv);
        assert_eq!(
            shown,
            "x\\n  999 process_exec pid=1 exe=/sbin/init\\x1b[2J\\x9b1m\\u{202e}\\x7f\\\\n"
        );
        assert!(!shown.chars().any(is_terminal_control));
        assert_eq!(escape_controls("/usr/bin/ls -la é"), "/usr/bin/ls -la é");
    }

    #[test]
    fn json_stays_the_same_value_without_raw_controls() {
        let v = serde_json::json!({"args": ["a\u{9b}b\u{202e}c\u{7f}\n"]});
        for text in [
            serde_json::to_string(&v).unwrap(),
            serde_json::to_string_pretty(&v).unwrap(),
        ] {
            let escaped = escape_json_controls(&text);
            assert!(!escaped.chars().any(is_raw_in_json));
            assert!(!escaped.contains(['\x1b', '\u{9b}']));
            let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
            assert_eq!(back, v);
        }
    }
}
