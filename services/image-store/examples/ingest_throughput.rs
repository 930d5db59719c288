//! Benchmark (not a test): how fast image-store ingests a gzip layer, against inflating it
//! alone on one thread (the ceiling), then where the time of one ingest goes.
//!
//!     cargo run --release -p wharf-image-store --example ingest_throughput
//!     WHARF_LAYER=<file.tar.gz> cargo run --release -p wharf-image-store --example ingest_throughput
//!
//! A ~600 MB synthetic tar (files that compress about 2.4:1, like distribution layers) is used
//! unless WHARF_LAYER names a real one.

use std::io::Write;
use std::time::Instant;

use bytes::Bytes;
use wharf_bus::digest;
use wharf_image_store::blob_store::{BlobStore, IngestSpec};

const GZ: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A tar of files that compress roughly 2.4:1, like typical distribution layers.
fn layer_tar(total: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545f4914f6cdd1d;
    let words = b"usr lib share locale python3 site-packages __init__.py libssl.so.3 ";
    let mut b = tar::Builder::new(Vec::with_capacity(total + (1 << 20)));
    let file_size = 1 << 20;
    let mut i = 0;
    while i * file_size < total {
        let mut data = vec![0u8; file_size];
        for block in data.chunks_mut(4096) {
            let (noise, text) = block.split_at_mut(1700);
            for byte in noise {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            for (j, byte) in text.iter_mut().enumerate() {
                *byte = words[(j + (x as usize % 7)) % words.len()];
            }
        }
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, format!("usr/lib/file{i}"), &data[..])
            .unwrap();
        i += 1;
    }
    b.into_inner().unwrap()
}

fn main() {
    ingest_rate();
    phases();
}

/// Three ingests of the layer, the best rate, and inflating alone.
fn ingest_rate() {
    // WHARF_LAYER=<file.tar.gz> measures a real layer instead of the synthetic one.
    let gz = match std::env::var("WHARF_LAYER") {
        Ok(path) => std::fs::read(path).unwrap(),
        Err(_) => {
            let tar = layer_tar(600 << 20);
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        }
    };
    let d = digest::sha256_of(&gz);
    println!("layer: {} MB gzip", gz.len() / 1_000_000);
    let chunks: Vec<Bytes> = gz.chunks(512 << 10).map(Bytes::copy_from_slice).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let mut best = 0.0f64;
    for round in 0..3 {
        let _ = store.delete(&d);
        let start = Instant::now();
        let mut ingest = store
            .ingest(IngestSpec::for_blob(&d, Some(gz.len() as u64), Some(GZ)))
            .unwrap();
        for c in &chunks {
            ingest.write(c.clone()).unwrap();
        }
        let r = ingest.commit().unwrap();
        let secs = start.elapsed().as_secs_f64();
        let rate = gz.len() as f64 / secs / 1e6;
        println!(
            "round {round}: {secs:.2}s, {rate:.0} MB/s (compressed), unpacked {}",
            r.layer.unwrap().info.unpacked_size
        );
        best = best.max(rate);
    }
    // The ceiling: inflating alone, on one thread, with nothing else to do.
    let start = Instant::now();
    let mut dec = flate2::read::MultiGzDecoder::new(&gz[..]);
    std::io::copy(&mut dec, &mut std::io::sink()).unwrap();
    let inflate = gz.len() as f64 / start.elapsed().as_secs_f64() / 1e6;
    println!("best: {best:.0} MB/s; inflate alone: {inflate:.0} MB/s");
    println!(
        "ingest reaches {:.0}% of inflating alone",
        100.0 * best / inflate
    );
}

/// One ingest's parts, each timed alone.
fn phases() {
    let tar = layer_tar(300 << 20);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&tar).unwrap();
    let gz = e.finish().unwrap();
    let t = Instant::now();
    let mut dec = flate2::read::MultiGzDecoder::new(&gz[..]);
    std::io::copy(&mut dec, &mut std::io::sink()).unwrap();
    println!("gunzip only: {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let _ = digest::sha256_of(&tar);
    println!("sha256 of tar: {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    wharf_image_store::layer_scan::scan(&gz[..]).unwrap();
    println!("scan: {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    wharf_image_store::layer_scan::scan(&tar[..]).unwrap();
    println!("scan plain: {:.2}s", t.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let mut f = std::fs::File::create(dir.path().join("x")).unwrap();
    f.write_all(&gz).unwrap();
    println!("write: {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    f.sync_all().unwrap();
    println!("fsync: {:.2}s", t.elapsed().as_secs_f64());
}
