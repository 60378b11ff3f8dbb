//! What a failed S3 attempt means: try again (outage, overload, a
//! connection that broke) or give up (denied, missing, malformed).

use minio::s3::error::{Error as S3Error, NetworkError, S3ServerError, ValidationErr};
use minio::s3::minio_error_response::MinioErrorCode;

use crate::error::{error_chain, ArchiveError};

/// S3 error codes that mean "try again", lower-cased as the minio crate
/// reports unknown codes.
const RETRYABLE_CODES: &[&str] = &[
    "internalerror",
    "serviceunavailable",
    "slowdown",
    "requesttimeout",
    "requesttimeexceeded",
    "operationaborted",
    "throttling",
    "xminioservernotinitialized",
];

/// Why one attempt failed.
pub(crate) enum Failure {
    /// Transient: try again after a backoff.
    Retry(String),
    /// Final: no retry can fix it.
    Fatal(ArchiveError),
}

/// Classifies an error of the minio client. `NoSuchKey` becomes `NotFound`.
pub(crate) fn classify(endpoint: &str, e: S3Error, request: &'static str, object: &str) -> Failure {
    let retryable_status = |s: u16| s >= 500 || s == 408 || s == 429;
    let message = match &e {
        // Its Display is a multi-line dump; the code and message say it all.
        S3Error::S3Server(S3ServerError::S3Error(r)) => format!(
            "S3 error {}: {}",
            r.code(),
            r.message().as_deref().unwrap_or("(no message)")
        ),
        _ => error_chain(&e),
    };
    let retry = match &e {
        S3Error::Network(NetworkError::ServerError(status)) => retryable_status(*status),
        // Connection refused/reset, timeouts, a body that broke off.
        S3Error::Network(NetworkError::ReqwestError(r))
        | S3Error::Validation(ValidationErr::HttpError(r)) => !r.is_builder(),
        S3Error::DriveIo(_) | S3Error::Validation(ValidationErr::IOError(_)) => true,
        S3Error::S3Server(S3ServerError::S3Error(r)) => match r.code() {
            MinioErrorCode::NoSuchKey => {
                return Failure::Fatal(ArchiveError::NotFound {
                    object: object.to_owned(),
                })
            }
            MinioErrorCode::OtherError(code) => {
                // "HTTP <status>" when the client built the error from the status alone.
                let status = code.strip_prefix("HTTP ").and_then(|s| s.parse().ok());
                RETRYABLE_CODES.contains(&code.as_str()) || status.is_some_and(retryable_status)
            }
            _ => false,
        },
        S3Error::S3Server(S3ServerError::HttpError(status, _))
        | S3Error::S3Server(S3ServerError::InvalidServerResponse {
            http_status_code: status,
            ..
        }) => retryable_status(*status),
        S3Error::Validation(_) => false,
    };
    if retry {
        Failure::Retry(message)
    } else {
        Failure::Fatal(ArchiveError::Refused {
            endpoint: endpoint.to_owned(),
            request,
            object: object.to_owned(),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minio::s3::minio_error_response::MinioErrorResponse;

    fn s3_error(status: u16) -> S3Error {
        S3Error::S3Server(S3ServerError::S3Error(Box::new(
            MinioErrorResponse::from_status_and_message(status, "test".into()),
        )))
    }

    fn is_retry(e: S3Error) -> bool {
        matches!(classify("http://s3", e, "GET", "k"), Failure::Retry(_))
    }

    #[test]
    fn outages_are_retried_refusals_are_not() {
        assert!(is_retry(S3Error::Network(NetworkError::ServerError(503))));
        assert!(is_retry(S3Error::Network(NetworkError::ServerError(429))));
        assert!(!is_retry(S3Error::Network(NetworkError::ServerError(416))));
        assert!(is_retry(s3_error(500)));
        assert!(is_retry(s3_error(503)));
        assert!(!is_retry(s3_error(403)));
        assert!(!is_retry(S3Error::Validation(
            ValidationErr::MissingPartSize
        )));
        match classify("http://s3", s3_error(404), "GET", "a/b.log") {
            Failure::Fatal(ArchiveError::NotFound { object }) => assert_eq!(object, "a/b.log"),
            _ => panic!("404 on an object is NotFound"),
        }
        match classify("http://s3", s3_error(403), "PUT", "a/b.log") {
            Failure::Fatal(e @ ArchiveError::Refused { .. }) => {
                let m = e.to_string();
                assert!(
                    m.contains("http://s3") && m.contains("PUT") && m.contains("a/b.log"),
                    "{m}"
                );
            }
            _ => panic!("403 is Refused"),
        }
    }
}
