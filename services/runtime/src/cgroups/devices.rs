//! Device access rules of a group (the `devices` controller of cgroup v1): which device nodes
//! the container's processes may read, write or create.

/// One rule: allow or deny `access` (some of `r`, `w`, `m`) to the devices of `kind` (`a` all,
/// `c` character, `b` block) with this major and minor (`None`: any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: String,
}

impl DeviceRule {
    pub fn allow(kind: char, major: Option<u32>, minor: Option<u32>, access: &str) -> Self {
        DeviceRule {
            allow: true,
            kind,
            major,
            minor,
            access: access.to_string(),
        }
    }

    /// Every device, every access.
    pub fn all(allow: bool) -> Self {
        DeviceRule {
            allow,
            ..DeviceRule::allow('a', None, None, "rwm")
        }
    }

    fn matches_everything(&self) -> bool {
        self.kind == 'a'
    }

    /// The rule as cgroup v1's `devices.allow`/`devices.deny` take it: `c 1:3 rwm`.
    pub fn to_v1(&self) -> String {
        if self.matches_everything() {
            return "a".to_string();
        }
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }

    /// Reads a rule as `--device-cgroup-rule` takes it (`c 1:3 rwm`, `a *:* m`), in dockerd's
    /// words when it cannot.
    pub fn parse(rule: &str) -> Result<DeviceRule, String> {
        let invalid = || format!("invalid device cgroup rule format: '{rule}'");
        let mut words = rule.split(' ');
        let (Some(kind), Some(numbers), Some(access), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(invalid());
        };
        let kind = match kind {
            "a" | "b" | "c" => kind.chars().next().expect("one letter"),
            _ => return Err(invalid()),
        };
        let (major, minor) = numbers.split_once(':').ok_or_else(invalid)?;
        let number = |n: &str| -> Result<Option<u32>, String> {
            match n {
                "*" => Ok(None),
                n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    n.parse().map(Some).map_err(|_| invalid())
                }
                _ => Err(invalid()),
            }
        };
        let (major, minor) = (number(major)?, number(minor)?);
        if access.is_empty() || access.len() > 3 || !access.chars().all(|c| "rwm".contains(c)) {
            return Err(invalid());
        }
        Ok(DeviceRule::allow(kind, major, minor, access))
    }
}

/// runc's default rules, which dockerd's containers get: nothing but creating nodes (`m`) and
/// using the harmless character devices: null, zero, full, random, urandom, tty, console, ptmx
/// and the pseudo-terminals.
pub fn default_rules() -> Vec<DeviceRule> {
    let c = |major, minor: Option<u32>| DeviceRule::allow('c', Some(major), minor, "rwm");
    vec![
        DeviceRule::all(false),
        DeviceRule::allow('c', None, None, "m"),
        DeviceRule::allow('b', None, None, "m"),
        c(1, Some(3)),
        c(1, Some(5)),
        c(1, Some(7)),
        c(1, Some(8)),
        c(1, Some(9)),
        c(5, Some(0)),
        c(5, Some(1)),
        c(5, Some(2)),
        c(136, None),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_and_write_as_the_kernel_and_dockerd_take_them() {
        let r = DeviceRule::parse("c 13:* rwm").unwrap();
        assert_eq!(r, DeviceRule::allow('c', Some(13), None, "rwm"));
        assert_eq!(r.to_v1(), "c 13:* rwm");
        assert_eq!(DeviceRule::parse("a *:* m").unwrap().to_v1(), "a");
        assert_eq!(DeviceRule::parse("b 8:0 r").unwrap().to_v1(), "b 8:0 r");
        for bad in [
            "c 1:3",
            "x 1:3 rwm",
            "c 1:3 rwx",
            "c a:3 rw",
            "c 1:3 rwm extra",
            "c 1-3 rw",
            "",
        ] {
            let e = DeviceRule::parse(bad).unwrap_err();
            assert!(
                e.contains("invalid device cgroup rule format"),
                "{bad}: {e}"
            );
        }
        let defaults: Vec<String> = default_rules().iter().map(DeviceRule::to_v1).collect();
        assert_eq!(defaults[0], "a");
        assert!(!default_rules()[0].allow);
        assert!(defaults.contains(&"c 136:* rwm".to_string()));
    }
}
