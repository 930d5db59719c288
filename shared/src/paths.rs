//! Slash-separated paths cleaned as Go's `path.Clean` cleans them, for the places that take
//! paths from clients: Dockerfile and `--change` WORKDIRs, COPY destinations, `docker cp` paths,
//! archive entry names.

/// The components of `path` once `.` and empty parts are dropped and each `..` has removed the
/// part before it (a `..` at the top goes nowhere: `/..` is `/`).
pub fn clean_parts(path: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts
}

/// `path` made absolute and cleaned: Go's `path.Clean("/" + path)`.
pub fn clean_absolute(path: &str) -> String {
    format!("/{}", clean_parts(path).join("/"))
}

/// `path` made relative and cleaned: no leading `/` or `./`, no `..` climbing out (`""` for
/// the top itself).
pub fn clean_relative(path: &str) -> String {
    clean_parts(path).join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_clean_as_go_cleans_them() {
        assert_eq!(clean_absolute("a/../../b//c/."), "/b/c");
        assert_eq!(clean_absolute("/.."), "/");
        assert_eq!(clean_absolute(""), "/");
        assert_eq!(clean_relative("./a/b"), "a/b");
        assert_eq!(clean_relative("/../../etc/x"), "etc/x");
        assert_eq!(clean_relative("."), "");
    }
}
