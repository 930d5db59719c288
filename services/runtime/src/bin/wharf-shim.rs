//! `wharf-shim <bundle-dir>`: the detached per-container shim (see `wharf_runtime::shim`).
//! No argument parser and no async runtime: each container has one of these, so it stays small.

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(bundle), None) = (args.next(), args.next()) else {
        eprintln!("usage: wharf-shim <bundle-dir>");
        std::process::exit(2);
    };
    std::process::exit(wharf_runtime::shim::serve(std::path::Path::new(&bundle)));
}
