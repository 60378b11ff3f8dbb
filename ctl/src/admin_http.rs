//! The node's admin HTTP endpoint, as far as sprawlctl needs it: one
//! request per connection (`Connection: close`), a JSON answer read to the
//! end within a byte bound and a deadline. Non-200 answers become errors
//! carrying the node's own `{"error": …}` message.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest answer read (a `/load` of every partition series over a long
/// window is the biggest the node sends).
const RESPONSE_BYTES_MAX: u64 = 16 << 20;
/// Characters of a non-JSON error body quoted in the error.
const ERROR_BODY_CHARS_MAX: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// Where the admin endpoint is and how long to wait for it to accept a
/// connection.
#[derive(Debug, Clone)]
pub struct AdminEndpoint {
    pub addr: String,
    pub connect_timeout: Duration,
}

impl AdminEndpoint {
    pub fn new(addr: &str, connect_timeout: Duration) -> Self {
        Self {
            addr: addr.to_owned(),
            connect_timeout,
        }
    }

    /// `GET target`, answered within the connect timeout.
    pub async fn get(&self, target: &str) -> anyhow::Result<Value> {
        self.request(Method::Get, target, self.connect_timeout)
            .await
    }

    /// `method target` (path and query string); the JSON of a 200 answer.
    /// `answer_timeout` bounds sending the request and reading the answer.
    pub async fn request(
        &self,
        method: Method,
        target: &str,
        answer_timeout: Duration,
    ) -> anyhow::Result<Value> {
        debug_assert!(target.starts_with('/'), "a path: {target}");
        let addr = &self.addr;
        let url = format!("{} http://{addr}{target}", method.name());
        let connect = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(addr.as_str()),
        )
        .await;
        let unreachable = |why: String| {
            anyhow::anyhow!(
                "cannot reach the node's admin endpoint at {addr} ({why}); is the node running? \
                 Its admin address is set with --admin or SPRAWLCTL_ADMIN"
            )
        };
        let mut stream = match connect {
            Err(_) => {
                return Err(unreachable(format!(
                    "no connection within {:?}",
                    self.connect_timeout
                )))
                .context(url)
            }
            Ok(Err(e)) => return Err(unreachable(e.to_string())).context(url),
            Ok(Ok(stream)) => stream,
        };
        let exchange = async {
            let request = format!(
                "{} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                method.name()
            );
            stream.write_all(request.as_bytes()).await?;
            let mut response = Vec::new();
            (&mut stream)
                .take(RESPONSE_BYTES_MAX + 1)
                .read_to_end(&mut response)
                .await?;
            std::io::Result::Ok(response)
        };
        let response = match tokio::time::timeout(answer_timeout, exchange).await {
            Err(_) => Err(anyhow::anyhow!("no answer within {answer_timeout:?}")),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("reading the answer")),
            Ok(Ok(response)) if response.len() as u64 > RESPONSE_BYTES_MAX => Err(anyhow::anyhow!(
                "the answer is larger than {} MiB",
                RESPONSE_BYTES_MAX >> 20
            )),
            Ok(Ok(response)) => parse_response(&response),
        };
        response.context(url)
    }
}

/// The JSON body of a `200` answer; any other status is an error with the
/// node's message (`{"error": "..."}`) or the start of the body.
pub fn parse_response(response: &[u8]) -> anyhow::Result<Value> {
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("not an HTTP answer (no end of headers)")?;
    let head = String::from_utf8_lossy(&response[..head_end]);
    let mut body = &response[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.splitn(3, ' ');
    let (version, code) = (words.next().unwrap_or_default(), words.next());
    anyhow::ensure!(
        version.starts_with("HTTP/"),
        "not an HTTP answer: {status_line:?}"
    );
    let code: u16 = code
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status code in {status_line:?}"))?;
    let content_length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok());
    if let Some(length) = content_length {
        anyhow::ensure!(
            body.len() >= length,
            "the answer was cut off after {} of {length} bytes",
            body.len()
        );
        body = &body[..length];
    }
    if code != 200 {
        let reason = status_line.splitn(3, ' ').nth(2).unwrap_or_default();
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let mut quoted: String = text.chars().take(ERROR_BODY_CHARS_MAX).collect();
                if quoted.len() < text.len() {
                    quoted.push('…');
                }
                quoted
            });
        let mut error = format!("the node answered {code}");
        if !reason.is_empty() {
            let _ = write!(error, " {reason}");
        }
        if !message.is_empty() {
            let _ = write!(error, ": {message}");
        }
        anyhow::bail!(error);
    }
    serde_json::from_slice(body).context("the answer is not JSON")
}

/// `?name=value&…` with each value percent-encoded; empty without pairs.
pub fn query(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        out.push('=');
        for byte in value.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(char::from(byte));
            } else {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::one_line;

    #[test]
    fn a_200_answer_is_its_json_body() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"status\":\"ok\",\"shards\":2}\n";
        assert_eq!(parse_response(ok).unwrap()["shards"], 2);
        // Without Content-Length: to the end.
        let ok = b"HTTP/1.1 200 OK\r\n\r\n[1,2]";
        assert_eq!(parse_response(ok).unwrap(), serde_json::json!([1, 2]));
    }

    #[test]
    fn other_answers_carry_the_nodes_message() {
        let conflict = b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n\r\n{\"error\":\"a rebalance is already being carried out\"}\n";
        assert_eq!(
            parse_response(conflict).unwrap_err().to_string(),
            "the node answered 409 Conflict: a rebalance is already being carried out"
        );
        let missing = b"HTTP/1.1 404 Not Found\r\n\r\ntry /health\n";
        assert_eq!(
            parse_response(missing).unwrap_err().to_string(),
            "the node answered 404 Not Found: try /health"
        );
        let long = format!("HTTP/1.1 500 Oops\r\n\r\n{}", "x".repeat(1000));
        let error = parse_response(long.as_bytes()).unwrap_err().to_string();
        assert!(error.ends_with("xx…"), "{error}");
        assert!(error.len() < 300, "{error}");
    }

    #[test]
    fn malformed_answers_are_errors() {
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n{}").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\nnot json")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
        let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\":";
        assert!(parse_response(cut)
            .unwrap_err()
            .to_string()
            .contains("cut off after 5 of 100 bytes"));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query(&[]), "");
        assert_eq!(
            query(&[("topic", "a b/c".into()), ("partition", "3".into())]),
            "?topic=a%20b%2Fc&partition=3"
        );
        assert_eq!(query(&[("t", "or-ders_1.x~".into())]), "?t=or-ders_1.x~");
    }

    #[tokio::test]
    async fn an_unreachable_node_is_named_with_its_address() {
        // A port that was free a moment ago: connecting is refused.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let endpoint = AdminEndpoint::new(&addr, Duration::from_secs(5));
        let error = endpoint.get("/rebalance/status").await.unwrap_err();
        let line = one_line(&error);
        assert!(
            line.starts_with(&format!("GET http://{addr}/rebalance/status: cannot reach")),
            "{line}"
        );
        assert!(line.contains("is the node running?"), "{line}");
    }

    #[tokio::test]
    async fn requests_are_sent_and_answers_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut chunk = [0; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the request ends with an empty line");
                request.extend_from_slice(&chunk[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"moved\":true}")
                .await
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        let endpoint = AdminEndpoint::new(&addr, Duration::from_secs(5));
        let answer = endpoint
            .request(
                Method::Post,
                "/rebalance/auto?mode=off",
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(answer["moved"], true);
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /rebalance/auto?mode=off HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.ends_with("\r\n\r\n"), "{request}");
    }
}
