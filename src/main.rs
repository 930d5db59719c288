//! `wharf`: one binary for the whole stack (`wharf up`) and for each service alone.

mod cli;
mod supervisor;
mod sync;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Started as a container's shim (the runtime runs this binary under the shim's name when
    // no `wharf-shim` is installed): serve that container and nothing else.
    let mut args = std::env::args_os();
    let name = args.next();
    let called = name.as_deref().map(std::path::Path::new);
    if called.and_then(|p| p.file_name()) == Some(wharf_runtime::shim::SHIM_NAME.as_ref()) {
        let (Some(bundle), None) = (args.next(), args.next()) else {
            eprintln!("usage: wharf-shim <bundle-dir>");
            std::process::exit(2);
        };
        std::process::exit(wharf_runtime::shim::serve(std::path::Path::new(&bundle)));
    }
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wharf: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
