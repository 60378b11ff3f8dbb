//! How a failed command ends: the exit status and the one line on stderr.
//!
//! Errors are `anyhow` chains; a [`Failure`] anywhere in the chain picks
//! the exit status, anything else exits with [`ExitStatus::Generic`].

use std::fmt;

/// The process exit statuses (also listed in `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// stdout was closed by the reader (`sprawlctl consume ... | head`):
    /// stop quietly, as filters do.
    OutputClosed,
    Generic,
    /// Same as clap's own usage errors.
    Usage,
    /// Some, not all, messages of a publish were acknowledged.
    PartialPublish,
}

impl ExitStatus {
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::OutputClosed => 0,
            ExitStatus::Generic => 1,
            ExitStatus::Usage => 2,
            ExitStatus::PartialPublish => 3,
        }
    }
}

/// An error that chooses the exit status.
#[derive(Debug)]
pub struct Failure {
    pub status: ExitStatus,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A usage error found after parsing (flags that exclude each other, ...).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Failure {
        status: ExitStatus::Usage,
        message: message.into(),
    }
    .into()
}

/// stdout is gone; see [`ExitStatus::OutputClosed`].
pub fn output_closed() -> anyhow::Error {
    Failure {
        status: ExitStatus::OutputClosed,
        message: "output closed".into(),
    }
    .into()
}

/// Maps a write error on stdout: a closed pipe ends the command quietly.
pub fn stdout_error(error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        output_closed()
    } else {
        anyhow::Error::new(error).context("writing to stdout")
    }
}

pub fn status_of(error: &anyhow::Error) -> ExitStatus {
    // `downcast_ref` sees a Failure given as `.context(..)`; the chain sees
    // one that is an error of its own.
    error
        .downcast_ref::<Failure>()
        .or_else(|| {
            error
                .chain()
                .find_map(|cause| cause.downcast_ref::<Failure>())
        })
        .map_or(ExitStatus::Generic, |failure| failure.status)
}

/// The error as one line: the chain joined by ": ", saying nothing twice
/// (the client's errors quote their source in their own text and often
/// start with what our context says), any line breaks in messages (from
/// the node, from TLS) folded into spaces.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        match parts.last_mut() {
            Some(previous) if previous.contains(&text) => {}
            Some(previous) if text.starts_with(previous.as_str()) => *previous = text,
            _ => parts.push(text),
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_status_comes_from_anywhere_in_the_chain() {
        let e = Err::<(), _>(usage("--insecure and --ca exclude each other"))
            .context("connecting")
            .unwrap_err();
        assert_eq!(status_of(&e), ExitStatus::Usage);
        assert_eq!(
            one_line(&e),
            "connecting: --insecure and --ca exclude each other"
        );
        assert_eq!(status_of(&anyhow::anyhow!("x")), ExitStatus::Generic);
        let broken = stdout_error(std::io::ErrorKind::BrokenPipe.into());
        assert_eq!(status_of(&broken).code(), 0);
        let partial = anyhow::anyhow!("message 7: disk full").context(Failure {
            status: ExitStatus::PartialPublish,
            message: "publish to t".into(),
        });
        assert_eq!(status_of(&partial).code(), 3);
        assert_eq!(one_line(&partial), "publish to t: message 7: disk full");
    }

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        #[derive(Debug)]
        struct Remote;
        impl fmt::Display for Remote {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("node answered TopicExists: exists")
            }
        }
        impl std::error::Error for Remote {}
        #[derive(Debug)]
        struct Request(Remote);
        impl fmt::Display for Request {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "create topic \"t\": {}", self.0)
            }
        }
        impl std::error::Error for Request {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Request(Remote));
        assert_eq!(
            one_line(&e),
            "create topic \"t\": node answered TopicExists: exists"
        );
        let e = anyhow::Error::new(Request(Remote)).context("create topic \"t\"");
        assert_eq!(
            one_line(&e),
            "create topic \"t\": node answered TopicExists: exists"
        );
    }

    #[test]
    fn messages_become_one_line() {
        let e = anyhow::anyhow!("node said:\n  disk\tfull\r\n").context("publish to t");
        assert_eq!(one_line(&e), "publish to t: node said: disk full");
    }
}
