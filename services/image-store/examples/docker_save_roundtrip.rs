//! A manual check against real docker (not a test): loads an archive `docker save` made into a
//! fresh store, prints what was loaded, and writes the store's own save of it back for
//! `docker load`.
//!
//!     cargo run -p wharf-image-store --example docker_save_roundtrip -- save.tar [out.tar]

use std::io::Write;

use wharf_image_store::store::{Events, ImageStore};
use wharf_image_store::{archive_export, archive_load};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(input) = args.next() else {
        eprintln!("usage: docker_save_roundtrip <docker-save.tar> [out.tar]");
        std::process::exit(2);
    };
    let dir = tempfile::tempdir().expect("a temporary store");
    let store = ImageStore::open(dir.path()).expect("the store opens");
    let archive = std::fs::File::open(&input).expect("the archive opens");
    let report = archive_load::load(&store, archive, &mut Events::new()).expect("it loads");
    for line in &report.lines {
        println!("{line}");
    }
    let images = store.list(&Default::default()).expect("images list");
    for r in &images {
        println!("{} {:?} size={}", r.id, r.repo_tags, r.size);
    }
    if let Some(out) = args.next() {
        let tags: Vec<String> = images.iter().flat_map(|r| r.repo_tags.clone()).collect();
        let ids: Vec<String> = images.iter().map(|r| r.id.clone()).collect();
        let names = if tags.is_empty() { &ids } else { &tags };
        let plan = archive_export::plan(&store, names).expect("a save plan");
        let mut f = std::fs::File::create(&out).expect("the output file");
        archive_export::write(&store, &plan, &mut f, &mut Events::new()).expect("it saves");
        f.flush().expect("it is written");
        println!("wrote {out}");
    }
}
