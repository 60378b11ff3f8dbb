//! How a consumed message is printed: its value on a line of its own
//! (text), or one JSON object per line.
//!
//! JSON fields, in this order: `topic`, `partition`, `offset`,
//! `timestamp_ms`, `key`, `value`, `headers` (a list of `{"name", "value"}`
//! objects, in record order). Bytes that are valid UTF-8 print as JSON
//! strings; other bytes print as standard base64 (with padding) under the
//! field's name plus `_base64` instead (`key_base64`, `value_base64`,
//! `name_base64`), so each field has exactly one of the two forms. A
//! record without a key has `"key": null`.

use base64::Engine;
use sprawl_client::ConsumedRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFormat {
    /// The raw value bytes and `\n`; with a separator, `key SEP value`.
    Text {
        key_separator: Option<Vec<u8>>,
    },
    Json,
}

/// Appends one line for `record` to `out`.
pub fn render(
    out: &mut Vec<u8>,
    format: &RecordFormat,
    topic: &str,
    partition: u32,
    record: &ConsumedRecord,
) {
    match format {
        RecordFormat::Text { key_separator } => {
            if let Some(separator) = key_separator {
                out.extend_from_slice(record.key.as_deref().unwrap_or_default());
                out.extend_from_slice(separator);
            }
            out.extend_from_slice(&record.value);
        }
        RecordFormat::Json => {
            out.extend_from_slice(b"{\"topic\":");
            json_string(out, topic);
            out.extend_from_slice(
                format!(
                    ",\"partition\":{partition},\"offset\":{},\"timestamp_ms\":{},",
                    record.offset, record.timestamp_ms
                )
                .as_bytes(),
            );
            match &record.key {
                Some(key) => bytes_field(out, "key", key),
                None => out.extend_from_slice(b"\"key\":null"),
            }
            out.push(b',');
            bytes_field(out, "value", &record.value);
            out.extend_from_slice(b",\"headers\":[");
            for (i, (name, value)) in record.headers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'{');
                bytes_field(out, "name", name);
                out.push(b',');
                bytes_field(out, "value", value);
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
    }
    out.push(b'\n');
}

/// `"field":"text"` when `bytes` are UTF-8, else `"field_base64":"..."`.
fn bytes_field(out: &mut Vec<u8>, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            json_string(out, field);
            out.push(b':');
            json_string(out, text);
        }
        Err(_) => {
            json_string(out, &format!("{field}_base64"));
            out.push(b':');
            json_string(
                out,
                &base64::engine::general_purpose::STANDARD.encode(bytes),
            );
        }
    }
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing JSON to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&[u8]>, value: &[u8], headers: &[(&[u8], &[u8])]) -> ConsumedRecord {
        ConsumedRecord {
            offset: 42,
            timestamp_ms: 1_700_000_000_123,
            key: key.map(|k| k.to_vec().into()),
            value: value.to_vec().into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_vec().into(), v.to_vec().into()))
                .collect(),
        }
    }

    fn line(format: &RecordFormat, r: &ConsumedRecord) -> String {
        let mut out = Vec::new();
        render(&mut out, format, "orders", 3, r);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_is_the_value_or_key_and_value() {
        let r = record(Some(b"k"), b"hello", &[]);
        let plain = RecordFormat::Text {
            key_separator: None,
        };
        assert_eq!(line(&plain, &r), "hello\n");
        let keyed = RecordFormat::Text {
            key_separator: Some(b"\t".to_vec()),
        };
        assert_eq!(line(&keyed, &r), "k\thello\n");
        assert_eq!(line(&keyed, &record(None, b"v", &[])), "\tv\n");
    }

    #[test]
    fn json_prints_utf8_as_strings_and_other_bytes_as_base64() {
        let r = record(
            Some(b"user \"1\""),
            b"\xff\x00bin",
            &[(b"trace", b"abc"), (b"\xfe", b"")],
        );
        let text = line(&RecordFormat::Json, &r);
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        assert_eq!(
            text,
            "{\"topic\":\"orders\",\"partition\":3,\"offset\":42,\"timestamp_ms\":1700000000123,\
             \"key\":\"user \\\"1\\\"\",\"value_base64\":\"/wBiaW4=\",\"headers\":[\
             {\"name\":\"trace\",\"value\":\"abc\"},{\"name_base64\":\"/g==\",\"value\":\"\"}]}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["key"], "user \"1\"");
        let unkeyed: serde_json::Value =
            serde_json::from_str(&line(&RecordFormat::Json, &record(None, b"v\nw", &[]))).unwrap();
        assert!(unkeyed["key"].is_null());
        assert_eq!(unkeyed["value"], "v\nw");
    }
}
