//! Dockerfile instructions `docker import --change` and `docker commit --change` apply to an image
//! config (image-store for import, the runtime for commit):
//! CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR.

use crate::BusError;
use serde_json::{json, Map, Value};

/// An empty container config as dockerd writes it in image configs.
pub fn empty_config() -> Map<String, Value> {
    let v = json!({
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": null, "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "",
        "Entrypoint": null, "OnBuild": null, "Labels": null,
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// Applies `changes` (one instruction each; several lines allowed) to `config`.
pub fn apply(changes: &[String], config: &mut Map<String, Value>) -> Result<(), BusError> {
    let mut cmd_set = false;
    for change in changes {
        for line in change.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, rest) = match line.split_once(char::is_whitespace) {
                Some((w, r)) => (w, r.trim()),
                None => (line, ""),
            };
            let instr = word.to_ascii_lowercase();
            match instr.as_str() {
                "cmd" => {
                    config.insert("Cmd".into(), json!(command(rest)));
                    cmd_set = true;
                }
                "entrypoint" => {
                    config.insert("Entrypoint".into(), json!(command(rest)));
                    if !cmd_set {
                        config.insert("Cmd".into(), Value::Null);
                    }
                }
                "env" => {
                    for (k, v) in pairs(rest, "ENV")? {
                        set_env(config, &k, &v);
                    }
                }
                "label" => {
                    for (k, v) in pairs(rest, "LABEL")? {
                        object(config, "Labels").insert(k, json!(v));
                    }
                }
                "expose" => {
                    for p in words(rest) {
                        for port in expand_port(&p)? {
                            object(config, "ExposedPorts").insert(port, json!({}));
                        }
                    }
                }
                "user" => {
                    config.insert("User".into(), json!(required(rest, "USER")?));
                }
                "volume" => {
                    let list = json_array(rest).unwrap_or_else(|| words(rest));
                    if list.is_empty() {
                        return Err(BusError::invalid(
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    for v in list {
                        object(config, "Volumes").insert(v, json!({}));
                    }
                }
                "workdir" => {
                    let dir = required(rest, "WORKDIR")?;
                    let base = config
                        .get("WorkingDir")
                        .and_then(|w| w.as_str())
                        .filter(|w| !w.is_empty())
                        .unwrap_or("/")
                        .to_string();
                    let joined = if dir.starts_with('/') {
                        dir.to_string()
                    } else {
                        format!("{base}/{dir}")
                    };
                    config.insert("WorkingDir".into(), json!(clean(&joined)));
                }
                "onbuild" => {
                    let trigger = required(rest, "ONBUILD")?;
                    let first = trigger
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    if matches!(first.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                        return Err(BusError::invalid(format!(
                            "{first} isn't allowed as an ONBUILD trigger"
                        )));
                    }
                    let list = config.entry("OnBuild").or_insert(Value::Null);
                    if !list.is_array() {
                        *list = json!([]);
                    }
                    list.as_array_mut().unwrap().push(json!(trigger));
                }
                "stopsignal" => {
                    config.insert("StopSignal".into(), json!(required(rest, "STOPSIGNAL")?));
                }
                _ => {
                    return Err(BusError::invalid(format!(
                        "{instr} is not a valid change command"
                    )))
                }
            }
        }
    }
    Ok(())
}

fn required<'a>(rest: &'a str, instr: &str) -> Result<&'a str, BusError> {
    if rest.is_empty() {
        Err(BusError::invalid(format!(
            "{instr} requires exactly one argument"
        )))
    } else {
        Ok(rest)
    }
}

fn object<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = config.entry(key.to_string()).or_insert(Value::Null);
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().unwrap()
}

fn json_array(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(rest).ok()
}

/// Exec form (a JSON array) or shell form (`/bin/sh -c`).
fn command(rest: &str) -> Vec<String> {
    json_array(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

fn set_env(config: &mut Map<String, Value>, key: &str, value: &str) {
    let env = config.entry("Env").or_insert(Value::Null);
    if !env.is_array() {
        *env = json!([]);
    }
    let list = env.as_array_mut().unwrap();
    let entry = json!(format!("{key}={value}"));
    let prefix = format!("{key}=");
    match list.iter_mut().find(|e| {
        e.as_str()
            .is_some_and(|s| s.starts_with(&prefix) || s == key)
    }) {
        Some(e) => *e = entry,
        None => list.push(entry),
    }
}

/// `k=v k2="v 2"`, or the legacy `k value with spaces`.
fn pairs(rest: &str, instr: &str) -> Result<Vec<(String, String)>, BusError> {
    let tokens = words(rest);
    if tokens.is_empty() {
        return Err(BusError::invalid(format!(
            "{instr} requires at least one argument"
        )));
    }
    if !tokens[0].contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| BusError::invalid(format!("{instr} must have two arguments")))?;
        let v = words(v.trim()).join(" ");
        return Ok(vec![(k.to_string(), v)]);
    }
    tokens
        .into_iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(BusError::invalid(format!(
                "Syntax error - can't find = in {t:?}. Must be of the form: name=value"
            ))),
        })
        .collect()
}

/// Splits on blanks, honouring quotes and backslash escapes; quotes are removed.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// An EXPOSE port spec (`80`, `53/udp`, `8000-8002`) as the `port/proto` keys of
/// `ExposedPorts`, with dockerd's error text.
pub fn expand_port(p: &str) -> Result<Vec<String>, BusError> {
    let (ports, proto) = match p.split_once('/') {
        Some((a, b)) => (a, b.to_ascii_lowercase()),
        None => (p, "tcp".to_string()),
    };
    let bad = || BusError::invalid(format!("invalid containerPort: {ports}"));
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let n = ports.parse::<u16>().map_err(|_| bad())?;
            (n, n)
        }
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect())
}

fn clean(path: &str) -> String {
    crate::paths::clean_absolute(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Map<String, Value> {
        let mut c = empty_config();
        apply(
            &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &mut c,
        )
        .unwrap();
        c
    }

    #[test]
    fn every_import_change_lands_in_the_config() {
        let c = applied(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/init",
            "ENV A=b C=\"d e\"",
            "ENV A z",
            "EXPOSE 80 53/udp 8000-8001",
            "LABEL com.example=\"yes\" x=y",
            "USER nobody",
            "VOLUME /data /cache",
            "WORKDIR /app",
            "WORKDIR sub",
            "ONBUILD RUN echo built",
            "STOPSIGNAL SIGTERM",
        ]);
        assert_eq!(c["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/bin/init"]));
        assert_eq!(c["Env"], json!(["A=z", "C=d e"]));
        assert_eq!(
            c["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}})
        );
        assert_eq!(c["Labels"], json!({"com.example": "yes", "x": "y"}));
        assert_eq!(c["User"], json!("nobody"));
        assert_eq!(c["Volumes"], json!({"/data": {}, "/cache": {}}));
        assert_eq!(c["WorkingDir"], json!("/app/sub"));
        assert_eq!(c["OnBuild"], json!(["RUN echo built"]));
        assert_eq!(c["StopSignal"], json!("SIGTERM"));
    }

    #[test]
    fn entrypoint_without_cmd_clears_cmd() {
        let mut c = empty_config();
        c.insert("Cmd".into(), json!(["old"]));
        apply(&["ENTRYPOINT [\"x\"]".to_string()], &mut c).unwrap();
        assert_eq!(c["Cmd"], Value::Null);
    }

    #[test]
    fn other_instructions_are_not_valid_changes() {
        let mut c = empty_config();
        let err = apply(&["RUN rm -rf /".to_string()], &mut c).unwrap_err();
        assert_eq!(err.message, "run is not a valid change command");
    }
}
