//! The json-file log driver against real files: dockerd's line format, partial entries,
//! rotation, `docker logs` selection, following across rotation, and the output framing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use wharf_runtime::logs::{
    multiplex_frame, multiplex_header, payload, rotated_path, timestamp_prefix, LogEntry,
    LogReader, LogWriter, ReadOptions, Stream, MAX_ENTRY_BYTES,
};

fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("container-json.log")
}

fn at(nanos: i64) -> DateTime<Utc> {
    Utc.timestamp_nanos(nanos)
}

fn lines_of(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn texts(entries: &[LogEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8(e.log.clone()).unwrap())
        .collect()
}

fn read_all(path: &Path) -> Vec<LogEntry> {
    LogReader::new(path).read(&ReadOptions::default()).unwrap()
}

#[test]
fn written_lines_are_dockerd_json_objects_with_log_stream_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, None, 1).unwrap();
    let time = Utc.timestamp_nanos(1_704_067_200_123_450_000);
    writer
        .write_at(Stream::Stdout, b"hello world\n", time)
        .unwrap();
    writer
        .write_at(Stream::Stderr, b"oops\n", at(1_704_067_200_000_000_000))
        .unwrap();

    let raw = std::fs::read_to_string(&path).unwrap();
    // Byte for byte what dockerd writes: field order, Go's RFC3339Nano (trailing zeros
    // trimmed, none on a whole second), one object per line.
    assert_eq!(
        raw,
        "{\"log\":\"hello world\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T00:00:00.12345Z\"}\n\
         {\"log\":\"oops\\n\",\"stream\":\"stderr\",\"time\":\"2024-01-01T00:00:00Z\"}\n"
    );
    let lines = lines_of(&path);
    let keys: Vec<&String> = lines[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["log", "stream", "time"]);
    assert_eq!(lines[1]["stream"], "stderr");
}

#[test]
fn real_time_is_utc_rfc3339_with_nanoseconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, None, 1).unwrap();
    let before = Utc::now();
    writer.write(Stream::Stdout, b"now\n").unwrap();
    let time = lines_of(&path)[0]["time"].as_str().unwrap().to_string();
    assert!(time.ends_with('Z'), "{time}");
    let parsed = DateTime::parse_from_rfc3339(&time).unwrap();
    assert!(parsed >= before && parsed <= Utc::now());
}

#[test]
fn stdout_and_stderr_interleaving_is_preserved() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, None, 1).unwrap();
    writer.write(Stream::Stdout, b"out 1\nout").unwrap();
    writer.write(Stream::Stderr, b"err 1\n").unwrap();
    writer.write(Stream::Stdout, b" 2\n").unwrap();
    writer.write(Stream::Stderr, b"err 2\nerr 3\n").unwrap();

    let entries = read_all(&path);
    let got: Vec<(Stream, String)> = entries
        .iter()
        .map(|e| (e.stream, String::from_utf8(e.log.clone()).unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (Stream::Stdout, "out 1\n".to_string()),
            (Stream::Stderr, "err 1\n".to_string()),
            (Stream::Stdout, "out 2\n".to_string()),
            (Stream::Stderr, "err 2\n".to_string()),
            (Stream::Stderr, "err 3\n".to_string()),
        ]
    );
}

#[test]
fn a_40_kib_line_splits_into_16_kib_partial_entries_that_rejoin() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, None, 1).unwrap();
    let line: Vec<u8> = (0..40 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    // Written in odd-sized chunks, as a pipe delivers it.
    for chunk in line.chunks(3000) {
        writer.write(Stream::Stdout, chunk).unwrap();
    }
    writer.write(Stream::Stdout, b"\nnext\n").unwrap();

    let raw = lines_of(&path);
    let logs: Vec<&str> = raw.iter().map(|v| v["log"].as_str().unwrap()).collect();
    assert_eq!(raw.len(), 4);
    assert_eq!(logs[0].len(), MAX_ENTRY_BYTES);
    assert_eq!(logs[1].len(), MAX_ENTRY_BYTES);
    assert!(!logs[0].ends_with('\n') && !logs[1].ends_with('\n'));
    assert_eq!(logs[2].len(), 40 * 1024 - 2 * MAX_ENTRY_BYTES + 1);
    assert!(logs[2].ends_with('\n'));
    // All pieces of one line carry the time of the first, as dockerd's copier stamps them.
    assert_eq!(raw[0]["time"], raw[2]["time"]);

    let entries = read_all(&path);
    assert!(entries[0].is_partial() && entries[1].is_partial() && !entries[2].is_partial());
    let rejoined: Vec<u8> = entries[..3].iter().flat_map(|e| e.log.clone()).collect();
    let mut expected = line.clone();
    expected.push(b'\n');
    assert_eq!(rejoined, expected);
    assert_eq!(entries[3].log, b"next\n");
}

#[test]
fn final_line_without_newline_is_kept_when_the_stream_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, None, 1).unwrap();
    writer.write(Stream::Stdout, b"first\nno newline").unwrap();
    writer.write(Stream::Stderr, b"err tail").unwrap();
    // Nothing of the incomplete lines is on disk until the streams end.
    assert_eq!(texts(&read_all(&path)), ["first\n"]);
    writer.flush_partial().unwrap();
    // dockerd's json-file driver ends every non-partial entry with '\n', this one included.
    assert_eq!(
        texts(&read_all(&path)),
        ["first\n", "no newline\n", "err tail\n"]
    );
    writer.flush_partial().unwrap();
    assert_eq!(read_all(&path).len(), 3, "a second flush writes nothing");
}

#[test]
fn rotation_keeps_at_most_max_files_and_reader_returns_what_remains_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, Some(200), 3).unwrap();
    for i in 0..100 {
        writer
            .write_at(Stream::Stdout, format!("line {i:03}\n").as_bytes(), at(i))
            .unwrap();
    }
    assert!(path.exists() && rotated_path(&path, 1).exists() && rotated_path(&path, 2).exists());
    assert!(!rotated_path(&path, 3).exists());
    for file in [path.clone(), rotated_path(&path, 1), rotated_path(&path, 2)] {
        let size = std::fs::metadata(&file).unwrap().len();
        // At most one entry past max-size, as dockerd rotates before the entry that follows.
        assert!(size < 200 + 80, "{} is {size} bytes", file.display());
    }

    let entries = read_all(&path);
    let numbers: Vec<i64> = entries.iter().map(|e| e.unix_nanos()).collect();
    assert_eq!(*numbers.last().unwrap(), 99);
    assert!(numbers.len() < 100, "old files were dropped");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    let on_disk: usize = [path.clone(), rotated_path(&path, 1), rotated_path(&path, 2)]
        .iter()
        .map(|f| lines_of(f).len())
        .sum();
    assert_eq!(entries.len(), on_disk);
}

#[test]
fn max_file_1_truncates_the_only_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, Some(100), 1).unwrap();
    for i in 0..20 {
        writer
            .write_at(Stream::Stdout, format!("line {i}\n").as_bytes(), at(i))
            .unwrap();
    }
    assert!(!rotated_path(&path, 1).exists());
    let entries = read_all(&path);
    assert_eq!(entries.last().unwrap().log, b"line 19\n");
    assert!(entries.len() < 20);
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(LogWriter::create(log_path(&dir), None, 0).is_err());
    assert!(LogWriter::create(log_path(&dir), Some(0), 2).is_err());
}

#[test]
fn tail_takes_the_last_lines_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, Some(150), 5).unwrap();
    for i in 0..20 {
        writer
            .write_at(Stream::Stdout, format!("line {i:02}\n").as_bytes(), at(i))
            .unwrap();
    }
    let current_len = lines_of(&path).len();
    let tail = current_len + 2;
    let options = ReadOptions {
        tail: Some(tail),
        ..ReadOptions::default()
    };
    let entries = LogReader::new(&path).read(&options).unwrap();
    let expected: Vec<String> = (20 - tail..20).map(|i| format!("line {i:02}\n")).collect();
    assert_eq!(texts(&entries), expected);

    let none = ReadOptions {
        tail: Some(0),
        ..ReadOptions::default()
    };
    assert!(LogReader::new(&path).read(&none).unwrap().is_empty());
}

#[test]
fn since_and_until_select_by_nanosecond_time_inclusively() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, None, 1).unwrap();
    for i in 0..10 {
        writer
            .write_at(Stream::Stdout, format!("{i}\n").as_bytes(), at(1_000 + i))
            .unwrap();
    }
    let options = ReadOptions {
        since: Some(1_003),
        until: Some(1_006),
        ..ReadOptions::default()
    };
    assert_eq!(
        texts(&LogReader::new(&path).read(&options).unwrap()),
        ["3\n", "4\n", "5\n", "6\n"]
    );
}

#[test]
fn stream_selection_keeps_only_the_asked_streams() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, None, 1).unwrap();
    writer.write(Stream::Stdout, b"out\n").unwrap();
    writer.write(Stream::Stderr, b"err\n").unwrap();
    let stderr_only = ReadOptions {
        stdout: false,
        ..ReadOptions::default()
    };
    assert_eq!(
        texts(&LogReader::new(&path).read(&stderr_only).unwrap()),
        ["err\n"]
    );
}

#[test]
fn follow_sees_lines_appended_later_and_continues_across_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, Some(120), 3).unwrap();
    writer.write(Stream::Stdout, b"before\n").unwrap();

    let mut follow = LogReader::new(&path)
        .follow(&ReadOptions::default())
        .unwrap()
        .with_poll_interval(Duration::from_millis(10));
    let wait = Duration::from_secs(5);
    assert_eq!(follow.next_timeout(wait).unwrap().unwrap().log, b"before\n");
    assert!(follow.try_next().unwrap().is_none());

    // Pairs of lines written between polls: each pair may cross a rotation, which the
    // follower must notice after taking the end of the old file.
    let mut seen = Vec::new();
    for pair in 0..10 {
        for i in [2 * pair, 2 * pair + 1] {
            writer
                .write(Stream::Stdout, format!("after {i:02}\n").as_bytes())
                .unwrap();
        }
        for _ in 0..2 {
            let entry = follow.next_timeout(wait).unwrap().expect("line followed");
            seen.push(String::from_utf8(entry.log).unwrap());
        }
    }
    let expected: Vec<String> = (0..20).map(|i| format!("after {i:02}\n")).collect();
    assert_eq!(seen, expected);
    assert!(
        rotated_path(&path, 2).exists(),
        "the writer rotated more than once"
    );

    // Stopping (the container exited) drains what is on disk, then ends.
    writer.write(Stream::Stderr, b"last").unwrap();
    writer.flush_partial().unwrap();
    follow.stopper().stop();
    let rest: Vec<LogEntry> = follow.by_ref().map(Result::unwrap).collect();
    assert_eq!(texts(&rest), ["last\n"]);
    assert!(follow.is_finished());
}

#[test]
fn follow_with_tail_starts_from_the_last_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, None, 1).unwrap();
    writer.write(Stream::Stdout, b"a\nb\nc\n").unwrap();
    let options = ReadOptions {
        tail: Some(1),
        ..ReadOptions::default()
    };
    let mut follow = LogReader::new(&path).follow(&options).unwrap();
    assert_eq!(follow.try_next().unwrap().unwrap().log, b"c\n");
    assert!(follow.try_next().unwrap().is_none());
    writer.write(Stream::Stderr, b"d\n").unwrap();
    assert_eq!(follow.try_next().unwrap().unwrap().log, b"d\n");
}

#[tokio::test]
async fn follow_as_async_stream_ends_at_until() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut writer = LogWriter::create(&path, None, 1).unwrap();
    writer.write_at(Stream::Stdout, b"1\n", at(1)).unwrap();
    let options = ReadOptions {
        until: Some(2),
        ..ReadOptions::default()
    };
    let mut follow = LogReader::new(&path).follow(&options).unwrap();
    assert_eq!(follow.next_async().await.unwrap().unwrap().log, b"1\n");
    writer.write_at(Stream::Stdout, b"2\n", at(2)).unwrap();
    writer.write_at(Stream::Stdout, b"3\n", at(3)).unwrap();
    assert_eq!(follow.next_async().await.unwrap().unwrap().log, b"2\n");
    assert!(follow.next_async().await.is_none());
}

#[test]
fn multiplex_frames_are_dockerds_exact_bytes() {
    assert_eq!(
        multiplex_header(Stream::Stdout, 5),
        [1, 0, 0, 0, 0, 0, 0, 5]
    );
    assert_eq!(
        multiplex_header(Stream::Stderr, 0x0102_0304),
        [2, 0, 0, 0, 1, 2, 3, 4]
    );
    assert_eq!(
        multiplex_frame(Stream::Stderr, b"hi\n"),
        [2, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']
    );
    let big = vec![b'x'; MAX_ENTRY_BYTES];
    assert_eq!(
        &multiplex_frame(Stream::Stdout, &big)[..8],
        [1, 0, 0, 0, 0, 0, 0x40, 0]
    );
}

#[test]
fn timestamp_prefix_has_nine_fraction_digits_like_docker_logs_t() {
    assert_eq!(
        timestamp_prefix(Utc.timestamp_nanos(1_704_067_200_123_456_789)),
        "2024-01-01T00:00:00.123456789Z "
    );
    assert_eq!(
        timestamp_prefix(Utc.timestamp_nanos(1_704_067_200_100_000_000)),
        "2024-01-01T00:00:00.100000000Z "
    );
    let entry = LogEntry {
        stream: Stream::Stdout,
        log: b"hi\n".to_vec(),
        time: Utc.timestamp_nanos(1_704_067_200_000_000_000),
    };
    assert_eq!(
        payload(&entry, true),
        b"2024-01-01T00:00:00.000000000Z hi\n"
    );
    assert_eq!(payload(&entry, false), b"hi\n");
}
