//! Running nftables scripts: in this process through libnftables (the library the `nft` program
//! is built on) when it can be loaded, else through the `nft` program.
//!
//! Why in-process: `nft -f -` costs a process start and a cache fill, 10-20 ms per call on a
//! small host, while the same script through a kept libnftables context takes about a
//! millisecond. The library is loaded at run time (dlopen), so a host without it still works.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

use super::command::run_with_input;
use super::error::{NetworkError, Result};

const NFT: &str = "nft";

/// Runs `script` as one nftables transaction (like `nft -f -`) and returns its output.
pub(crate) fn run_script(script: &str) -> Result<String> {
    match library() {
        Some(library) => library
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .run(script),
        None => run_with_input(NFT, &["-f", "-"], script),
    }
}

/// Runs a read-only `script` (a `list` or `get`). A listing is interrupted (EINTR) when another
/// process changes the ruleset meanwhile: it is asked again before its error counts.
pub(crate) fn list(script: &str) -> Result<String> {
    let mut outcome = run_script(script);
    for _ in 0..2 {
        if outcome.is_ok() {
            break;
        }
        outcome = run_script(script);
    }
    outcome
}

fn library() -> Option<&'static Mutex<LibNftables>> {
    static LIBRARY: OnceLock<Option<Mutex<LibNftables>>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| LibNftables::load().map(Mutex::new))
        .as_ref()
}

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxGetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// One libnftables context with buffered output and errors. The library is never unloaded.
struct LibNftables {
    context: *mut c_void,
    run_cmd: RunCmd,
    output: CtxGetBuffer,
    error: CtxGetBuffer,
}

// SAFETY: the context is used by one thread at a time (it lives behind a Mutex).
unsafe impl Send for LibNftables {}

impl LibNftables {
    fn load() -> Option<LibNftables> {
        // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast to the type of
        // its declaration in <nftables/libnftables.h>.
        unsafe {
            let handle = libc::dlopen(
                c"libnftables.so.1".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            );
            if handle.is_null() {
                return None;
            }
            let symbol = |name: &CStr| {
                let address = libc::dlsym(handle, name.as_ptr());
                (!address.is_null()).then_some(address)
            };
            let ctx_new: CtxNew = std::mem::transmute(symbol(c"nft_ctx_new")?);
            let buffer_output: CtxBuffer = std::mem::transmute(symbol(c"nft_ctx_buffer_output")?);
            let buffer_error: CtxBuffer = std::mem::transmute(symbol(c"nft_ctx_buffer_error")?);
            let output: CtxGetBuffer = std::mem::transmute(symbol(c"nft_ctx_get_output_buffer")?);
            let error: CtxGetBuffer = std::mem::transmute(symbol(c"nft_ctx_get_error_buffer")?);
            let run_cmd: RunCmd = std::mem::transmute(symbol(c"nft_run_cmd_from_buffer")?);
            let context = ctx_new(0);
            if context.is_null() || buffer_output(context) != 0 || buffer_error(context) != 0 {
                return None;
            }
            Some(LibNftables {
                context,
                run_cmd,
                output,
                error,
            })
        }
    }

    fn run(&mut self, script: &str) -> Result<String> {
        let text = CString::new(script).map_err(|_| NetworkError::Command {
            command: "nft -f -".to_owned(),
            stderr: "script contains a NUL byte".to_owned(),
        })?;
        // SAFETY: the context is valid for the life of self; the buffers returned are owned by
        // the context and copied before the next call (reading one also resets it).
        unsafe {
            let status = (self.run_cmd)(self.context, text.as_ptr());
            let output = read_buffer((self.output)(self.context));
            let error = read_buffer((self.error)(self.context));
            if status != 0 {
                return Err(NetworkError::Command {
                    command: "nft -f -".to_owned(),
                    stderr: error.trim().to_owned(),
                });
            }
            Ok(output)
        }
    }
}

/// # Safety
/// `buffer` is null or a NUL-terminated string.
unsafe fn read_buffer(buffer: *const c_char) -> String {
    if buffer.is_null() {
        return String::new();
    }
    CStr::from_ptr(buffer).to_string_lossy().into_owned()
}
