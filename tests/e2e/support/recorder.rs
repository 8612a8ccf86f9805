//! moto's request recording, parsed: who (account) did what (operation), and whether it
//! mutates anything.

use base64::Engine;
use serde_json::Value;

/// One recorded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The account whose access key signed it (12 digits), or the key itself.
    pub account: String,
    /// `CreateStack`-style action for query protocols, or `PUT /bucket?policy` for S3.
    pub operation: String,
    /// Whether it changes anything.
    pub mutating: bool,
}

fn action(body: &str) -> Option<String> {
    body.split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map(|a| a.to_string())
}

pub fn parse_recording(text: &str) -> Vec<Request> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("recording lines are JSON");
            let method = v["method"].as_str().unwrap_or_default().to_string();
            let url = v["url"].as_str().unwrap_or_default();
            let path = url
                .split_once("://")
                .map(|(_, rest)| {
                    rest.split_once('/')
                        .map(|(_, p)| format!("/{p}"))
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            let body = match (v["body"].as_str(), v["body_encoded"].as_bool()) {
                (Some(b), Some(true)) => String::from_utf8_lossy(
                    &base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .unwrap_or_default(),
                )
                .into_owned(),
                (Some(b), _) => b.to_string(),
                _ => String::new(),
            };
            let auth = v["headers"]["Authorization"]
                .as_str()
                .or_else(|| v["headers"]["authorization"].as_str())
                .unwrap_or_default();
            let account = auth
                .split("Credential=")
                .nth(1)
                .and_then(|c| c.split('/').next())
                .unwrap_or_default()
                .to_string();
            // JSON protocols (CloudTrail) name the operation in X-Amz-Target.
            let target = v["headers"]["X-Amz-Target"]
                .as_str()
                .or_else(|| v["headers"]["x-amz-target"].as_str())
                .and_then(|t| t.rsplit('.').next())
                .map(str::to_string);
            match target.or_else(|| action(&body)) {
                Some(act) => {
                    let read = ["Get", "List", "Describe", "Head", "Lookup", "AssumeRole"]
                        .iter()
                        .any(|p| act.starts_with(p));
                    Request {
                        account,
                        operation: act,
                        mutating: !read,
                    }
                }
                None => {
                    let query = path.split_once('?').map(|(_, q)| q).unwrap_or_default();
                    let keys: Vec<&str> = query
                        .split('&')
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| kv.split('=').next().unwrap_or_default())
                        .filter(|k| !k.starts_with("x-id") && !k.starts_with("max-keys"))
                        .collect();
                    let bucket_path = path.split('?').next().unwrap_or_default();
                    Request {
                        account,
                        operation: format!("{method} {bucket_path}?{}", keys.join("&")),
                        mutating: !matches!(method.as_str(), "GET" | "HEAD"),
                    }
                }
            }
        })
        .collect()
}
