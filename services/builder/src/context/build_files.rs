//! The build files in a received context: the Dockerfile, found and read as dockerd's
//! `withDockerfileFromContext` does, then deleted with `.dockerignore` itself when that file
//! excludes them (`removeDockerfile`).

use std::fs;
use std::io;
use std::path::Path;

use super::error::io_error;
use super::paths::resolve_in_scope;
use super::{ContextError, DEFAULT_DOCKERFILE_NAME};
use crate::ignore::Matcher;

/// `withDockerfileFromContext`: open the Dockerfile inside the context, falling back from
/// `Dockerfile` to `dockerfile`; returns the name actually used and the text.
pub(super) fn read_dockerfile(root: &Path, name: &str) -> Result<(String, String), ContextError> {
    let path =
        resolve_in_scope(root, name).map_err(|_| ContextError::OutsideContext(name.to_string()))?;
    let meta = match fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if name == DEFAULT_DOCKERFILE_NAME {
                let lowercase = name.to_lowercase();
                let found = resolve_in_scope(root, &lowercase)
                    .map(|p| p.exists())
                    .unwrap_or(false);
                if found {
                    return read_dockerfile(root, &lowercase);
                }
            }
            return Err(ContextError::DockerfileNotFound(name.to_string()));
        }
        Err(e) => return Err(ContextError::DockerfileRead(e)),
    };
    if meta.is_dir() {
        return Err(ContextError::DockerfileRead(io::Error::from_raw_os_error(
            libc::EISDIR,
        )));
    }
    if !meta.is_file() {
        // A fifo would block the read forever.
        return Err(ContextError::DockerfileRead(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} is not a regular file"),
        )));
    }
    let bytes = fs::read(&path).map_err(ContextError::DockerfileRead)?;
    if bytes.is_empty() {
        return Err(ContextError::EmptyDockerfile(name.to_string()));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| ContextError::DockerfileNotUtf8(name.to_string()))?;
    Ok((name.to_string(), text))
}

/// `removeDockerfile`: delete `.dockerignore` and the Dockerfile when the context's own
/// `.dockerignore` excludes them. As in dockerd, a missing ignore file is fine, an unusable
/// pattern just removes nothing, and a failed removal is only logged; paths are resolved in
/// scope, so a symlinked Dockerfile loses its target.
pub(super) fn drop_ignored_build_files(
    root: &Path,
    dockerfile: &str,
) -> Result<Vec<String>, ContextError> {
    let path =
        resolve_in_scope(root, ".dockerignore").map_err(io_error("opening .dockerignore"))?;
    let meta = match fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("opening .dockerignore")(e)),
    };
    if !meta.is_file() {
        return Err(io_error("reading .dockerignore")(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let bytes = fs::read(&path).map_err(io_error("reading .dockerignore"))?;
    let matcher = match Matcher::parse(&String::from_utf8_lossy(&bytes)) {
        Ok(matcher) => matcher,
        Err(err) => {
            tracing::warn!(%err, "ignoring unusable .dockerignore in the build context");
            return Ok(Vec::new());
        }
    };
    let mut removed = Vec::new();
    for name in matcher.build_files_to_drop(dockerfile) {
        let result = resolve_in_scope(root, &name).and_then(|p| remove_all(&p));
        match result {
            Ok(()) => removed.push(name),
            Err(err) => tracing::error!(%err, file = %name, "failed to remove"),
        }
    }
    Ok(removed)
}

/// Go's `os.RemoveAll` on a path whose symlinks were already resolved.
fn remove_all(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use crate::context::testutil::{Scratch, Tar};
    use crate::context::ContextError;
    use std::fs;

    // ---- locating the Dockerfile ----

    #[test]
    fn custom_dockerfile_name_in_a_subdirectory() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("build/Dockerfile.dev", 0o644, b"FROM dev\n")
            .finish();
        let ctx = s.receive(&body, "build/Dockerfile.dev").unwrap();
        assert_eq!(ctx.dockerfile_name, "build/Dockerfile.dev");
        assert_eq!(ctx.dockerfile_text, "FROM dev\n");
        // An absolute name is taken inside the context, as filepath.Join(root, name) does.
        let s = Scratch::new();
        let ctx = s.receive(&body, "/build/Dockerfile.dev").unwrap();
        assert_eq!(ctx.dockerfile_text, "FROM dev\n");
    }

    #[test]
    fn dockerfile_added_by_the_cli_under_a_random_name_is_read_then_hidden() {
        // `docker build -f ../Dockerfile .` / `-f - .`: the CLI adds the Dockerfile as
        // `.dockerfile.<20 hex>` and appends that name to `.dockerignore`.
        let s = Scratch::new();
        let name = ".dockerfile.0123456789abcdef0123";
        let body = Tar::default()
            .file("app.py", 0o644, b"print(1)\n")
            .file(
                ".dockerignore",
                0o644,
                format!(".dockerignore\n{name}\n").as_bytes(),
            )
            .file(name, 0o600, b"FROM python\n")
            .finish();
        let ctx = s.receive(&body, name).unwrap();
        assert_eq!(ctx.dockerfile_name, name);
        assert_eq!(ctx.dockerfile_text, "FROM python\n");
        assert_eq!(ctx.removed, [".dockerignore", name]);
        assert!(!s.ctx.join(name).exists());
        assert!(!s.ctx.join(".dockerignore").exists());
        assert!(s.ctx.join("app.py").exists());
    }

    #[test]
    fn lowercase_dockerfile_is_the_fallback_for_the_default_name_only() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("dockerfile", 0o644, b"FROM lower\n")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.dockerfile_name, "dockerfile");
        assert_eq!(ctx.dockerfile_text, "FROM lower\n");

        let s = Scratch::new();
        let ctx = s.receive(&body, "Dockerfile").unwrap();
        assert_eq!(ctx.dockerfile_name, "dockerfile");

        // Only the exact default name falls back.
        let s = Scratch::new();
        let body = Tar::default()
            .file("dockerfile.dev", 0o644, b"FROM lower\n")
            .finish();
        let err = s.receive(&body, "Dockerfile.dev").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot locate specified Dockerfile: Dockerfile.dev"
        );
    }

    #[test]
    fn missing_dockerfile_reports_the_requested_name() {
        let s = Scratch::new();
        let body = Tar::default().file("README", 0o644, b"hi").finish();
        let err = s.receive(&body, "").unwrap_err();
        assert!(matches!(err, ContextError::DockerfileNotFound(ref n) if n == "Dockerfile"));
        assert_eq!(
            err.to_string(),
            "Cannot locate specified Dockerfile: Dockerfile"
        );
        let s = Scratch::new();
        let err = s.receive(&body, "build/Dockerfile").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot locate specified Dockerfile: build/Dockerfile"
        );
    }

    #[test]
    fn dockerfile_outside_the_context_is_forbidden() {
        let s = Scratch::new();
        fs::write(s.ctx.parent().unwrap().join("Dockerfile"), "FROM host\n").unwrap();
        let body = Tar::default().dockerfile().finish();
        let err = s.receive(&body, "../Dockerfile").unwrap_err();
        assert_eq!(
            err.to_string(),
            "forbidden path outside the build context: ../Dockerfile ()"
        );
    }

    #[test]
    fn dockerfile_symlinks_are_followed_inside_the_context_only() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("real/Dockerfile", 0o644, b"FROM real\n")
            .symlink("Dockerfile", "/real/Dockerfile")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.dockerfile_text, "FROM real\n");

        // A link climbing out is resolved as if the context were `/`: it never reads the host.
        let s = Scratch::new();
        fs::write(s.outside.join("Dockerfile"), "FROM host\n").unwrap();
        let body = Tar::default()
            .symlink("Dockerfile", "../outside/Dockerfile")
            .finish();
        let err = s.receive(&body, "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot locate specified Dockerfile: Dockerfile"
        );
        let abs = format!("{}/Dockerfile", s.outside_abs());
        let s = Scratch::new();
        fs::write(s.outside.join("Dockerfile"), "FROM host\n").unwrap();
        let body = Tar::default().symlink("Dockerfile", &abs).finish();
        assert!(matches!(
            s.receive(&body, "").unwrap_err(),
            ContextError::DockerfileNotFound(_)
        ));
    }

    #[test]
    fn non_utf8_dockerfile_is_rejected() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("Dockerfile", 0o644, b"FROM a\nLABEL x=\xff\xfe\n")
            .finish();
        let err = s.receive(&body, "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Dockerfile (Dockerfile) is not valid UTF-8"
        );
    }

    #[test]
    fn byte_order_mark_is_left_for_the_parser() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("Dockerfile", 0o644, "\u{feff}FROM a\n".as_bytes())
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.dockerfile_text, "\u{feff}FROM a\n");
    }

    #[test]
    fn a_directory_named_dockerfile_is_a_read_error() {
        let s = Scratch::new();
        let body = Tar::default().dir("Dockerfile/", 0o755).finish();
        let err = s.receive(&body, "").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unexpected error reading Dockerfile:"),
            "{err}"
        );
    }

    // ---- .dockerignore ----

    #[test]
    fn dockerignore_removes_the_dockerfile_and_itself_after_reading() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("Dockerfile", 0o644, b"FROM a\nCOPY . /app\n")
            .file(".dockerignore", 0o644, b"Dockerfile\n.dockerignore\n*.md\n")
            .file("main.go", 0o644, b"package main\n")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.dockerfile_text, "FROM a\nCOPY . /app\n");
        assert_eq!(ctx.removed, [".dockerignore", "Dockerfile"]);
        assert!(!s.ctx.join("Dockerfile").exists());
        assert!(!s.ctx.join(".dockerignore").exists());
        assert!(s.ctx.join("main.go").exists());
    }

    #[test]
    fn dockerignore_keeps_build_files_it_does_not_exclude() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file(".dockerignore", 0o644, b"*.md\n!Dockerfile\n")
            .file("README.md", 0o644, b"# hi\n")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert!(ctx.removed.is_empty());
        assert!(s.ctx.join("Dockerfile").exists());
        assert!(s.ctx.join(".dockerignore").exists());
        // The daemon only hides build files; the CLI already left other ignored files out.
        assert!(s.ctx.join("README.md").exists());
    }

    #[test]
    fn dockerignore_with_a_bad_pattern_removes_nothing() {
        // dockerd ignores the matcher's error here (`rm, _ := fileutils.Matches(...)`).
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file(".dockerignore", 0o644, b"Dockerfile\n[\n")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert!(ctx.removed.is_empty());
        assert!(s.ctx.join("Dockerfile").exists());
    }

    #[test]
    fn dockerignore_applies_to_a_custom_dockerfile_path() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("build/prod.Dockerfile", 0o644, b"FROM prod\n")
            .file(".dockerignore", 0o644, b"build\n")
            .file("build/other", 0o644, b"kept\n")
            .finish();
        let ctx = s.receive(&body, "build/prod.Dockerfile").unwrap();
        assert_eq!(ctx.removed, ["build/prod.Dockerfile"]);
        assert!(!s.ctx.join("build/prod.Dockerfile").exists());
        assert!(s.ctx.join("build/other").exists());
        assert!(s.ctx.join(".dockerignore").exists());
    }
}
