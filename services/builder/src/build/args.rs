//! Build arguments as the classic builder tracks them: `--build-arg` values, the ARGs a stage
//! declared (allowed), the ARGs before the first FROM (meta), and which were referenced, for the
//! "were not consumed" warning.

use std::collections::{BTreeMap, BTreeSet};

/// Proxy variables every build accepts without an ARG; they are left out of cache keys and
/// history unless a stage declares them.
pub const BUILTIN: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

fn builtin(key: &str) -> bool {
    BUILTIN.contains(&key)
}

#[derive(Debug, Clone, Default)]
pub struct BuildArgs {
    /// ARGs the current stage declared, with their defaults.
    allowed: BTreeMap<String, Option<String>>,
    /// ARGs declared before the first FROM.
    meta: BTreeMap<String, Option<String>>,
    referenced: BTreeSet<String>,
    /// `--build-arg` values (`None`: given without a value and not in the client's environment).
    from_options: BTreeMap<String, Option<String>>,
}

impl BuildArgs {
    pub fn new(from_options: BTreeMap<String, Option<String>>) -> BuildArgs {
        BuildArgs {
            from_options,
            ..Default::default()
        }
    }

    /// A fresh stage's copy: meta ARGs and references carry over, declarations do not.
    pub fn for_stage(&self) -> BuildArgs {
        BuildArgs {
            allowed: BTreeMap::new(),
            ..self.clone()
        }
    }

    pub fn add_meta(&mut self, key: &str, value: Option<String>) {
        self.meta.insert(key.to_string(), value);
    }

    pub fn add(&mut self, key: &str, value: Option<String>) {
        self.allowed.insert(key.to_string(), value);
        self.referenced.insert(key.to_string());
    }

    pub fn merge_referenced(&mut self, other: &BuildArgs) {
        self.referenced.extend(other.referenced.iter().cloned());
    }

    /// Whether `key` belongs in the `|N k=v` prefix of a RUN's cache key and history.
    pub fn referenced_or_not_builtin(&self, key: &str) -> bool {
        self.allowed.contains_key(key) || !builtin(key)
    }

    fn value(&self, key: &str, mapping: &BTreeMap<String, Option<String>>) -> Option<String> {
        let default = mapping.get(key);
        if let Some(Some(v)) = self.from_options.get(key) {
            // Only for keys the mapping knows, or the builtins.
            if default.is_some() || builtin(key) {
                return Some(v.clone());
            }
        }
        match default {
            None => None,
            Some(None) => self.meta.get(key).cloned().flatten(),
            Some(Some(v)) => Some(v.clone()),
        }
    }

    fn all_from(&self, mapping: &BTreeMap<String, Option<String>>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for key in mapping.keys().map(String::as_str).chain(BUILTIN) {
            if let Some(v) = self.value(key, mapping) {
                out.insert(key.to_string(), v);
            }
        }
        out
    }

    /// Every allowed ARG with a value (declared ones, and builtins given with --build-arg).
    pub fn all_allowed(&self) -> BTreeMap<String, String> {
        self.all_from(&self.allowed)
    }

    /// Every meta ARG with a value: what FROM lines expand with.
    pub fn all_meta(&self) -> BTreeMap<String, String> {
        self.all_from(&self.meta)
    }

    /// `KEY=value` for the allowed ARGs the environment `env` does not already set (ENV wins
    /// over ARG).
    pub fn filter_allowed(&self, env: &[String]) -> Vec<String> {
        let set: BTreeSet<&str> = env
            .iter()
            .map(|e| e.split('=').next().unwrap_or(""))
            .collect();
        self.all_allowed()
            .into_iter()
            .filter(|(k, _)| !set.contains(k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    /// `--build-arg`s no stage declared (builtins excepted), sorted: dockerd's warning lists them.
    pub fn unused(&self) -> Vec<String> {
        self.from_options
            .keys()
            .filter(|k| !builtin(k) && !self.referenced.contains(*k))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn declared_args_take_options_then_defaults_then_meta() {
        let mut a = BuildArgs::new(opts(&[("A", Some("opt")), ("UNUSED", Some("x"))]));
        a.add_meta("M", Some("meta".into()));
        let mut s = a.for_stage();
        s.add("A", Some("default".into()));
        s.add("B", Some("bee".into()));
        s.add("M", None);
        let all = s.all_allowed();
        assert_eq!(all["A"], "opt");
        assert_eq!(all["B"], "bee");
        assert_eq!(all["M"], "meta");
        a.merge_referenced(&s);
        assert_eq!(a.unused(), vec!["UNUSED".to_string()]);
    }

    #[test]
    fn env_shadows_args_and_builtins_pass_without_declaration() {
        let mut s = BuildArgs::new(opts(&[("http_proxy", Some("p")), ("A", Some("1"))]));
        s.add("A", None);
        let mut env = s.filter_allowed(&["A=env".to_string()]);
        env.sort();
        assert_eq!(env, vec!["http_proxy=p".to_string()]);
        assert!(!s.referenced_or_not_builtin("http_proxy"));
        assert!(s.referenced_or_not_builtin("A"));
        assert!(s.unused().is_empty());
    }
}
