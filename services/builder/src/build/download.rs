//! `ADD <url>`: the download, bounded. A Dockerfile names any URL, so a server that never
//! answers, answers slowly forever or sends without end must not hold a builder or fill its
//! disk: the connection has [`DownloadLimits::connect_timeout`], the whole download (headers
//! and body) [`DownloadLimits::timeout`], and the file [`DownloadLimits::max_size`] bytes (a
//! larger `Content-Length` is refused before the body, a body that grows past it is cut). The
//! body goes to a file as it comes, never whole into memory; an error page is read up to
//! [`ERROR_BODY_LIMIT`] bytes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

/// How much of an error response's body is read for the message.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The bounds of every `ADD <url>` download of a builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadLimits {
    /// Connecting to the server (each address tried, TLS included).
    pub connect_timeout: Duration,
    /// The whole download: from the request to the body's last byte, redirects included.
    pub timeout: Duration,
    /// The largest file.
    pub max_size: u64,
}

impl DownloadLimits {
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
    pub const DEFAULT_MAX_SIZE: u64 = 10 << 30;
}

impl Default for DownloadLimits {
    fn default() -> Self {
        DownloadLimits {
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            timeout: Self::DEFAULT_TIMEOUT,
            max_size: Self::DEFAULT_MAX_SIZE,
        }
    }
}

/// A file downloaded into a directory of its own.
#[derive(Debug)]
pub struct Downloaded {
    pub path: PathBuf,
    /// Its name: from the URL's path, else the response's Content-Disposition, else
    /// `__unnamed__`.
    pub name: String,
    pub size: u64,
    /// The size the server announced, if it did.
    pub total: Option<u64>,
    /// Last-Modified, as seconds since the epoch (0 when absent).
    pub mtime: i64,
}

/// Why a download failed: something about the URL or the server (`Invalid`, the build's
/// fault, as dockerd reports it), or about this host (`Internal`).
#[derive(Debug, PartialEq, Eq)]
pub enum DownloadError {
    Invalid(String),
    Internal(String),
}

impl DownloadError {
    pub fn message(&self) -> &str {
        match self {
            DownloadError::Invalid(m) | DownloadError::Internal(m) => m,
        }
    }
}

/// The HTTP client of a builder's downloads.
pub fn client(limits: &DownloadLimits) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Downloads `url` into `dir` (which must exist), within `limits`. `dest` is the
/// instruction's destination: a URL without a file name is an error when it ends in `/`.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    dest: &str,
    dir: &Path,
    limits: &DownloadLimits,
) -> Result<Downloaded, DownloadError> {
    match tokio::time::timeout(
        limits.timeout,
        fetch_unbounded(client, url, dest, dir, limits),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(DownloadError::Invalid(format!(
            "ADD failed: downloading {url} took longer than {}",
            humanize(limits.timeout)
        ))),
    }
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    let whole = d.subsec_nanos() == 0;
    if whole && secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else if whole && secs > 0 {
        format!("{secs}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn too_large(url: &str, max: u64) -> DownloadError {
    DownloadError::Invalid(format!(
        "ADD failed: {url} is larger than the {} a download may be (--add-max-size)",
        size_text(max)
    ))
}

/// A size limit as [`parse_size`] reads it back: `10GiB`, `512MiB`, or bytes.
fn size_text(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

async fn fetch_unbounded(
    client: &reqwest::Client,
    url: &str,
    dest: &str,
    dir: &Path,
    limits: &DownloadLimits,
) -> Result<Downloaded, DownloadError> {
    let failed = |e: reqwest::Error| {
        if e.is_connect() && e.is_timeout() {
            DownloadError::Invalid(format!(
                "ADD failed: cannot connect to {url} within {}",
                humanize(limits.connect_timeout)
            ))
        } else {
            DownloadError::Invalid(format!("ADD failed: {e}"))
        }
    };
    let response = client.get(url).send().await.map_err(failed)?;
    if !response.status().is_success() {
        // dockerd's GetWithStatusError: the status line, then what the server said.
        let status = response.status();
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            let room = ERROR_BODY_LIMIT - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= ERROR_BODY_LIMIT {
                break;
            }
        }
        let body: String = String::from_utf8_lossy(&body).chars().take(1024).collect();
        return Err(DownloadError::Invalid(format!(
            "ADD failed: failed to GET {url} with status {status}: {}",
            body.trim_end()
        )));
    }
    let total = response.content_length();
    if total.is_some_and(|n| n > limits.max_size) {
        return Err(too_large(url, limits.max_size));
    }
    let name = file_name(&response, url, dest)?;
    let mtime = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0);
    let path = dir.join(&name);
    let internal = |e: std::io::Error| DownloadError::Internal(format!("ADD: {e}"));
    let std_file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(internal)?
    };
    let mut file = tokio::fs::File::from_std(std_file);
    let mut body = response.bytes_stream();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(failed)?;
        size = size.saturating_add(chunk.len() as u64);
        if size > limits.max_size {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(too_large(url, limits.max_size));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    let modified = std::time::UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64);
    file.into_std()
        .await
        .set_modified(modified)
        .map_err(internal)?;
    Ok(Downloaded {
        path,
        name,
        size,
        total,
        mtime,
    })
}

/// The downloaded file's name, as dockerd's classic builder picks it.
fn file_name(response: &reqwest::Response, url: &str, dest: &str) -> Result<String, DownloadError> {
    let url_path = response.url().path().to_string();
    let mut name = Path::new(&url_path)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .filter(|_| !url_path.ends_with('/'))
        .unwrap_or_default();
    if name.is_empty() {
        if let Some(cd) = response
            .headers()
            .get(reqwest::header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
        {
            if let Some(f) = cd
                .split(';')
                .find_map(|p| p.trim().strip_prefix("filename="))
            {
                let f = f.trim_matches('"');
                if !f.ends_with('/') {
                    name = Path::new(f)
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default();
                }
            }
        }
    }
    if name.is_empty() {
        if dest.ends_with('/') {
            return Err(DownloadError::Invalid(format!(
                "ADD failed: cannot determine filename for source {url}"
            )));
        }
        name = "__unnamed__".to_string();
    }
    Ok(name)
}

/// A size as people write it: bytes, or a number with a unit (`k`/`KiB`, `m`/`MiB`,
/// `g`/`GiB`, `t`/`TiB`; as Docker's sizes, every unit is a power of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}: use bytes or a unit (512MiB, 10GiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("invalid size {text:?}: unknown unit {other:?}")),
    };
    let bytes = number * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("invalid size {text:?}: must be at least 1 byte"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A one-connection-at-a-time HTTP server on loopback: `answer` gets each connection
    /// after its request head was read.
    async fn serve<F, Fut>(answer: F) -> String
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                answer(conn).await;
            }
        });
        format!("http://{addr}")
    }

    fn limits(timeout_ms: u64, max_size: u64) -> DownloadLimits {
        DownloadLimits {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_millis(timeout_ms),
            max_size,
        }
    }

    async fn get(
        url: &str,
        limits: &DownloadLimits,
    ) -> (Result<Downloaded, DownloadError>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let result = fetch(&client(limits), url, "/dest/", dir.path(), limits).await;
        (result, dir)
    }

    #[tokio::test]
    async fn a_file_within_the_limits_arrives_whole() {
        let base = serve(|mut c| async move {
            let _ = c
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                )
                .await;
        })
        .await;
        let (got, _dir) = get(&format!("{base}/f.txt"), &limits(5000, 5)).await;
        let got = got.unwrap();
        assert_eq!((got.name.as_str(), got.size), ("f.txt", 5));
        assert_eq!(std::fs::read(&got.path).unwrap(), b"hello");
    }

    #[tokio::test]
    async fn a_server_that_stalls_fails_the_download_at_the_timeout() {
        // Headers, a little of the body, then nothing.
        let base = serve(|mut c| async move {
            let _ = c
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc")
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        let started = std::time::Instant::now();
        let (got, _dir) = get(&format!("{base}/slow"), &limits(500, 1 << 20)).await;
        let err = got.unwrap_err();
        assert!(
            matches!(&err, DownloadError::Invalid(m) if m.contains("took longer than 500ms")),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_fails_at_the_timeout() {
        let base = serve(|c| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(c);
        })
        .await;
        let (got, _dir) = get(&format!("{base}/silent"), &limits(300, 1 << 20)).await;
        assert!(got
            .unwrap_err()
            .message()
            .contains("took longer than 300ms"));
    }

    #[tokio::test]
    async fn an_announced_size_over_the_cap_is_refused_before_the_body() {
        let base = serve(|mut c| async move {
            let _ = c
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n")
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        let (got, dir) = get(&format!("{base}/huge"), &limits(5000, 1 << 20)).await;
        let err = got.unwrap_err();
        assert!(err.message().contains("larger than the 1MiB"), "{err:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_body_that_grows_past_the_cap_is_cut_and_removed() {
        // No Content-Length: chunks without end.
        let base = serve(|mut c| async move {
            if c.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            let chunk = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
            for _ in 0..100_000 {
                if c.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
        })
        .await;
        let (got, dir) = get(&format!("{base}/endless"), &limits(10_000, 64 << 10)).await;
        let err = got.unwrap_err();
        assert!(err.message().contains("larger than the 64KiB"), "{err:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn an_error_page_is_read_only_in_part() {
        let base = serve(|mut c| async move {
            let _ = c
                .write_all(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let chunk = format!("{:x}\r\n{}\r\n", 4096, "n".repeat(4096));
            for _ in 0..100_000 {
                if c.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
        })
        .await;
        let (got, _dir) = get(&format!("{base}/missing"), &limits(10_000, 1 << 20)).await;
        let err = got.unwrap_err();
        assert!(
            err.message().contains("with status 404 Not Found"),
            "{err:?}"
        );
        assert!(err.message().len() < 2048, "{}", err.message().len());
    }

    #[test]
    fn sizes_take_docker_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(size_text(10 << 30), "10GiB");
        assert_eq!(size_text(1536), "1536 bytes");
        assert_eq!(parse_size(&size_text(64 << 10)), Ok(64 << 10));
    }
}
