//! Errors as people read them: one line that says what went wrong and what to do, never
//! a transport's debug dump or a gRPC status with its metadata.

use tonic::{Code, Status};

/// A command line the CLI refuses before talking to the daemon: exit status 2, like a
/// usage error found by the argument parser.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit status for an error that ends the command: 2 for usage, 1 otherwise.
pub fn exit_status(e: &anyhow::Error) -> u8 {
    if e.is::<UsageError>() { 2 } else { 1 }
}

/// The most of a daemon's message shown: enough for any explanation the daemon gives.
const MAX_MESSAGE_CHARS: usize = 512;

/// A gRPC status as the daemon's explanation. A connection that dropped says so in the
/// words people need: the daemon went away.
pub fn status_error(s: Status) -> anyhow::Error {
    let message = s.message();
    let transport_gone = matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    ) && (message.is_empty()
        || message.contains("h2 protocol error")
        || message.contains("transport error")
        || message.contains("connection")
        || message.contains("broken pipe"));
    if transport_gone {
        return anyhow::anyhow!("the sensor daemon went away (its connection closed)");
    }
    let shown: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    let cut = if message.chars().count() > MAX_MESSAGE_CHARS {
        "..."
    } else {
        ""
    };
    match s.code() {
        Code::InvalidArgument => anyhow::anyhow!("the daemon refused the request: {shown}{cut}"),
        Code::ResourceExhausted => {
            anyhow::anyhow!("the daemon's answer is too large: {shown}{cut}")
        }
        _ if shown.is_empty() => anyhow::anyhow!("the daemon failed ({})", s.code().description()),
        _ => anyhow::anyhow!("{shown}{cut}"),
    }
}

/// Checks a quarantine id before it is sent: the ids the daemon makes are hexadecimal.
/// The value is not echoed back: it may be anything, of any length.
pub fn quarantine_id(id: &str) -> Result<String, UsageError> {
    if (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(UsageError(format!(
            "--id takes a quarantine id: hexadecimal, as `sensor threat quarantine list` shows it \
             (the one given is not, {} bytes)",
            id.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_one_plain_line() {
        let e = status_error(Status::failed_precondition("no quarantine entry ab"));
        assert_eq!(format!("{e:#}"), "no quarantine entry ab");
        let long = "x".repeat(17_000);
        let e = status_error(Status::failed_precondition(long));
        assert!(format!("{e:#}").len() < 600);
        let e = status_error(Status::unknown("h2 protocol error: error reading a body"));
        assert!(format!("{e:#}").contains("went away"));
    }

    #[test]
    fn quarantine_ids_are_checked_without_echo() {
        assert_eq!(quarantine_id("0A1b").unwrap(), "0a1b");
        let bad = "z".repeat(17_000);
        let e = quarantine_id(&bad).unwrap_err().to_string();
        assert!(!e.contains("zz") && e.len() < 200, "{e}");
        assert!(quarantine_id("").is_err());
    }
}
