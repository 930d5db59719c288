//! Idmapped layers against the real kernel: an overlay whose lower directory (owned by host
//! root, as unpacked layers are) is mounted idmapped into a user namespace's range shows its
//! files owned by that range, and writes go to the upper directory, the layer untouched.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use wharf_runtime::userns::{idmapped_bind, IdMap};

const MAP: IdMap = IdMap {
    uid: 296_608,
    gid: 296_608,
    size: 65_536,
};

struct Mounted(Vec<std::path::PathBuf>);

impl Drop for Mounted {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[test]
fn an_overlay_on_idmapped_layers_shows_them_owned_by_the_containers_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p);
    for p in ["layer/etc", "idmapped", "upper", "work", "merged"] {
        std::fs::create_dir_all(d(p)).unwrap();
    }
    std::fs::write(d("layer/etc/conf"), b"from the layer\n").unwrap();
    let ns = MAP.user_namespace().unwrap();
    idmapped_bind(&d("layer"), &d("idmapped"), &ns).unwrap();
    let mut mounted = Mounted(vec![d("idmapped")]);
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        d("idmapped").display(),
        d("upper").display(),
        d("work").display()
    );
    nix::mount::mount(
        Some("overlay"),
        &d("merged"),
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    )
    .unwrap();
    mounted.0.push(d("merged"));

    let owner = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    // Host root's layer, seen through the overlay: owned by the range's first ID.
    assert_eq!(owner(&d("merged/etc/conf")), (MAP.uid, MAP.gid));
    assert_eq!(owner(&d("layer/etc/conf")), (0, 0));
    // A change copies the file up; the layer keeps its owner and content.
    std::fs::write(d("merged/etc/conf"), b"changed\n").unwrap();
    assert_eq!(
        std::fs::read(d("layer/etc/conf")).unwrap(),
        b"from the layer\n"
    );
    assert_eq!(owner(&d("layer/etc/conf")), (0, 0));
    assert_eq!(owner(&d("upper/etc/conf")), (MAP.uid, MAP.gid));
    drop(mounted);
}
