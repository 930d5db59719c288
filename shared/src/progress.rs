//! Docker's JSON progress messages (`jsonmessage.JSONMessage`), as `docker pull` and `docker load`
//! stream them and the CLI draws them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JsonMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(
        default,
        rename = "progressDetail",
        skip_serializing_if = "Option::is_none"
    )]
    pub progress_detail: Option<ProgressDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(
        default,
        rename = "errorDetail",
        skip_serializing_if = "Option::is_none"
    )]
    pub error_detail: Option<ErrorDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
}

impl JsonMessage {
    /// A status line: `{"status":"Pulling from library/busybox","id":"latest"}`.
    pub fn status(status: impl Into<String>, id: Option<&str>) -> Self {
        JsonMessage {
            status: Some(status.into()),
            id: id.map(str::to_string),
            ..Default::default()
        }
    }

    /// A progress line with a bar, as dockerd renders it for old clients.
    pub fn progress(status: &str, id: &str, current: u64, total: Option<u64>) -> Self {
        JsonMessage {
            status: Some(status.to_string()),
            id: Some(id.to_string()),
            progress: Some(bar(current, total)),
            progress_detail: Some(ProgressDetail {
                current: Some(current),
                total,
            }),
            ..Default::default()
        }
    }

    /// A build/load output line: `{"stream":"Loaded image: x\n"}`.
    pub fn stream(text: impl Into<String>) -> Self {
        JsonMessage {
            stream: Some(text.into()),
            ..Default::default()
        }
    }

    /// The error line that ends a failed operation.
    pub fn error(message: impl Into<String>) -> Self {
        let message = message.into();
        JsonMessage {
            error_detail: Some(ErrorDetail {
                code: None,
                message: message.clone(),
            }),
            error: Some(message),
            ..Default::default()
        }
    }
}

pub use crate::digest::short_id;

/// Human size as dockerd (go-units `HumanSize`) writes it: decimal units, four significant
/// digits (`4.261MB`, `12.35MB`, `534.5MB`).
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    // %.4g: four significant digits, trailing zeros dropped.
    let decimals = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", units[i])
}

fn bar(current: u64, total: Option<u64>) -> String {
    const WIDTH: u64 = 50;
    match total {
        Some(total) if total > 0 => {
            let filled = (current.min(total) * WIDTH / total) as usize;
            let (arrow, rest) = if filled < WIDTH as usize {
                (">", WIDTH as usize - filled - 1)
            } else {
                ("", 0)
            };
            format!(
                "[{}{}{}] {}/{}",
                "=".repeat(filled),
                arrow,
                " ".repeat(rest),
                human_size(current),
                human_size(total)
            )
        }
        _ => human_size(current),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockerd() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.261MB");
        assert_eq!(human_size(12_300_000), "12.3MB");
        assert_eq!(human_size(12_345_678), "12.35MB");
        assert_eq!(human_size(534_000_000), "534MB");
        assert_eq!(human_size(534_512_345), "534.5MB");
    }

    #[test]
    fn progress_messages_carry_detail_for_the_cli() {
        let m = JsonMessage::progress("Downloading", "abc", 50, Some(100));
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["progressDetail"]["current"], 50);
        assert_eq!(v["progressDetail"]["total"], 100);
        assert!(v["progress"].as_str().unwrap().starts_with('['));
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
