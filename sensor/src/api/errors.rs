//! How errors cross the API: each refusal the daemon knows by kind goes out with the
//! status that says so, anything else as FAILED_PRECONDITION, and no message longer than
//! a client accepts.

use tonic::Status;

use crate::antimalware::Refusal;

/// The most of an error's text the daemon sends back. Errors may quote what the client
/// sent (an id, a path); a message of unbounded length would come back in a header the
/// client refuses, and the client would see a protocol error instead of the reason.
pub(crate) const MAX_STATUS_CHARS: usize = 1024;

/// The status an error is sent as: the kind of the first [`Refusal`] in its chain, or
/// FAILED_PRECONDITION (the daemon could not do it in its current state). The text is the
/// whole context chain, bounded to [`MAX_STATUS_CHARS`].
pub(crate) fn status(e: &anyhow::Error) -> Status {
    let text = bounded(&format!("{e:#}"), MAX_STATUS_CHARS);
    match e.chain().find_map(|c| c.downcast_ref::<Refusal>()) {
        Some(Refusal::Invalid(_)) => Status::invalid_argument(text),
        Some(Refusal::NotFound(_)) => Status::not_found(text),
        Some(Refusal::AlreadyExists(_)) => Status::already_exists(text),
        Some(Refusal::Busy(_)) | None => Status::failed_precondition(text),
    }
}

/// `s` cut to `max` characters, marked as cut.
pub(crate) fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}... ({} bytes in all)", &s[..end], s.len()),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_sent_back_are_bounded() {
        let e = anyhow::anyhow!("bad quarantine id {:?}", "z".repeat(17_000));
        let s = status(&e);
        assert!(
            s.message().len() < MAX_STATUS_CHARS + 64,
            "{}",
            s.message().len()
        );
        assert!(s.message().starts_with("bad quarantine id"));
    }

    #[test]
    fn refusals_keep_their_kind_under_context() {
        use anyhow::Context;
        let cases = [
            (
                Refusal::Invalid("bad id".into()),
                tonic::Code::InvalidArgument,
            ),
            (Refusal::NotFound("no entry".into()), tonic::Code::NotFound),
            (
                Refusal::AlreadyExists("/x exists".into()),
                tonic::Code::AlreadyExists,
            ),
            (
                Refusal::Busy("a scan is running".into()),
                tonic::Code::FailedPrecondition,
            ),
        ];
        for (refusal, code) in cases {
            let e = Err::<(), _>(anyhow::Error::new(refusal))
                .context("restoring to /x")
                .unwrap_err();
            let s = status(&e);
            assert_eq!(s.code(), code, "{s:?}");
            assert!(s.message().starts_with("restoring to /x: "), "{s:?}");
        }
        let plain = status(&anyhow::anyhow!("disk full"));
        assert_eq!(plain.code(), tonic::Code::FailedPrecondition);
    }
}
