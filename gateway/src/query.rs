//! Query strings as dockerd reads them: repeated keys, `1`/`true` booleans, and `filters` JSON in
//! both the current (`{"k":{"v":true}}`) and the old (`{"k":["v"]}`) shape.

use std::collections::BTreeMap;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// dockerd's boolean: absent, empty, `0`, `false`, `none` are false.
    pub fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "none"),
        }
    }

    pub fn filters(&self) -> ApiResult<BTreeMap<String, Vec<String>>> {
        parse_filters(self.get("filters").unwrap_or(""))
    }
}

pub fn parse_filters(raw: &str) -> ApiResult<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    if raw.trim().is_empty() {
        return Ok(out);
    }
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
    let map = value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid filter: not an object"))?;
    for (key, values) in map {
        let list: Vec<String> = match values {
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(_, on)| on.as_bool().unwrap_or(true))
                .map(|(v, _)| v.clone())
                .collect(),
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            serde_json::Value::String(s) => vec![s.clone()],
            _ => return Err(ApiError::bad_request(format!("invalid filter '{key}'"))),
        };
        out.insert(key.clone(), list);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_in_both_shapes() {
        let a = parse_filters(r#"{"dangling":{"true":true},"label":{"a=b":true}}"#).unwrap();
        assert_eq!(a["dangling"], vec!["true"]);
        assert_eq!(a["label"], vec!["a=b"]);
        let b = parse_filters(r#"{"reference":["busy*"]}"#).unwrap();
        assert_eq!(b["reference"], vec!["busy*"]);
        assert!(parse_filters("{").is_err());
    }

    #[test]
    fn repeated_keys_and_flags() {
        let q = Query::parse(Some("names=a&names=b%2Fc&force=1&noprune=false"));
        assert_eq!(q.all("names"), vec!["a", "b/c"]);
        assert!(q.flag("force"));
        assert!(!q.flag("noprune"));
        assert!(!q.flag("missing"));
    }
}
