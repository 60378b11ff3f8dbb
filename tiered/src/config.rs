//! Where the archive is and how it behaves under load and faults.

use crate::error::{ArchiveError, Result};
use crate::retry::RetryPolicy;

/// Smallest multipart part S3 accepts (except the last part).
pub const MULTIPART_PART_BYTES_MIN: u64 = 5 << 20;

#[derive(Clone)]
pub struct ArchiveConfig {
    /// `http://127.0.0.1:8333` or `https://...`.
    pub endpoint: String,
    pub bucket: String,
    /// Keys start with `<prefix>/`; may be empty.
    pub prefix: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub retry: RetryPolicy,
    /// Requests waiting for the archive thread; one more gets `Busy`.
    pub queue_depth_max: usize,
    /// Requests the archive thread works on at once.
    pub requests_in_flight_max: usize,
    /// Objects larger than this go up as a multipart upload in parts of this size.
    pub multipart_part_bytes: u64,
    /// Caps the upload rate of segment files (`None` = as fast as S3 takes
    /// them), so archiving does not starve replication or consumers of
    /// network bandwidth.
    pub upload_bytes_per_s_max: Option<u64>,
}

impl std::fmt::Debug for ArchiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("retry", &self.retry)
            .field("queue_depth_max", &self.queue_depth_max)
            .field("requests_in_flight_max", &self.requests_in_flight_max)
            .field("multipart_part_bytes", &self.multipart_part_bytes)
            .field("upload_bytes_per_s_max", &self.upload_bytes_per_s_max)
            .finish()
    }
}

impl ArchiveConfig {
    /// Defaults for everything but the location; no credentials.
    pub fn new(endpoint: &str, bucket: &str, prefix: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            region: "us-east-1".to_owned(),
            access_key: String::new(),
            secret_key: String::new(),
            retry: RetryPolicy::default(),
            queue_depth_max: 256,
            requests_in_flight_max: 8,
            multipart_part_bytes: 16 << 20,
            upload_bytes_per_s_max: None,
        }
    }

    /// [`Self::new`] with the credentials from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (both required) and the region from
    /// `AWS_REGION` / `AWS_DEFAULT_REGION` when set.
    pub fn from_env(endpoint: &str, bucket: &str, prefix: &str) -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut config = Self::new(endpoint, bucket, prefix);
        config.access_key = var("AWS_ACCESS_KEY_ID")
            .ok_or_else(|| ArchiveError::Config("AWS_ACCESS_KEY_ID is not set".into()))?;
        config.secret_key = var("AWS_SECRET_ACCESS_KEY")
            .ok_or_else(|| ArchiveError::Config("AWS_SECRET_ACCESS_KEY is not set".into()))?;
        if let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            config.region = region;
        }
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ArchiveError::Config(m));
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return bad(format!(
                "endpoint {:?} must start with http:// or https://",
                self.endpoint
            ));
        }
        if self.bucket.is_empty() {
            return bad("bucket is empty".into());
        }
        if self.queue_depth_max == 0 || self.requests_in_flight_max == 0 {
            return bad("queue_depth_max and requests_in_flight_max must be > 0".into());
        }
        if self.multipart_part_bytes < MULTIPART_PART_BYTES_MIN {
            return bad(format!(
                "multipart_part_bytes {} is below S3's minimum part of {MULTIPART_PART_BYTES_MIN}",
                self.multipart_part_bytes
            ));
        }
        if let Some(rate) = self.upload_bytes_per_s_max {
            // An upload held below the rate its timeout assumes would be cut
            // and retried forever.
            if rate < self.retry.transfer_bytes_per_s_min {
                return bad(format!(
                    "upload_bytes_per_s_max ({rate}) is below retry.transfer_bytes_per_s_min ({}): \
                     every rate-limited upload would time out",
                    self.retry.transfer_bytes_per_s_min
                ));
            }
        }
        self.retry.validate().or_else(bad)
    }
}
