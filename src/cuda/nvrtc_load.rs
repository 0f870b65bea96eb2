//! Finding and opening NVRTC without panicking. Order: `NDT_NVRTC_LIB` (a file or a folder;
//! when set, the only place looked at), the library search path (`LD_LIBRARY_PATH`, a system
//! CUDA), `$CUDA_HOME`/`$CUDA_PATH`, `/usr/local/cuda`, and pip's `nvidia-cuda-nvrtc-cu12` inside
//! `$VIRTUAL_ENV` or a `.venv` beside the binary or in the checkout. A library found by path is
//! opened once with its symbols global and kept open, so that `cudarc` (which looks libraries up
//! by name, and panics when it finds none) resolves to it through its soname.

use super::nvrtc::SETUP_HINT;
use cudarc::nvrtc::sys;
use std::ffi::c_int;
use std::path::{Path, PathBuf};

/// Candidate files for libnvrtc when NDT_NVRTC_LIB is not set, most specific first.
fn candidate_paths() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            dirs.push(PathBuf::from(&p).join("lib64"));
            dirs.push(PathBuf::from(&p).join("lib"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    let mut venvs: Vec<PathBuf> = Vec::new();
    if let Some(v) = std::env::var_os("VIRTUAL_ENV").filter(|p| !p.is_empty()) {
        venvs.push(PathBuf::from(v));
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/ndt (or target/debug/deps/test-…) inside the project.
        for anc in exe.ancestors().skip(1).take(5) {
            venvs.push(anc.join(".venv"));
        }
    }
    venvs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    for venv in venvs {
        let Ok(rd) = std::fs::read_dir(venv.join("lib")) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("python") {
                dirs.push(e.path().join("site-packages/nvidia/cuda_nvrtc/lib"));
            }
        }
    }
    for d in dirs {
        for name in ["libnvrtc.so.12", "libnvrtc.so"] {
            files.push(d.join(name));
        }
    }
    files
}

/// Opens NVRTC; returns its version, the path it was opened from (None: found by name) and the
/// architectures it can generate code for.
#[allow(clippy::type_complexity)]
pub(crate) fn load() -> std::result::Result<((i32, i32), Option<PathBuf>, Vec<u32>), String> {
    let explicit = std::env::var_os("NDT_NVRTC_LIB").filter(|p| !p.is_empty());
    let mut opened: Option<PathBuf> = None;
    // With an explicit NDT_NVRTC_LIB, or when the search path has no NVRTC, open one by path.
    // SAFETY: is_culib_present only tries to open libraries by name and closes them again.
    let on_search_path = explicit.is_none() && unsafe { sys::is_culib_present() };
    if !on_search_path {
        // An explicit NDT_NVRTC_LIB is the only place looked at.
        let candidates: Vec<PathBuf> = match &explicit {
            Some(p) => {
                let p = PathBuf::from(p);
                if p.is_dir() {
                    vec![p.join("libnvrtc.so.12"), p.join("libnvrtc.so")]
                } else {
                    vec![p]
                }
            }
            None => candidate_paths(),
        };
        for path in candidates {
            if !path.is_file() {
                continue;
            }
            match open_global(&path) {
                Ok(()) => {
                    opened = Some(path);
                    break;
                }
                Err(e) if explicit.is_some() => {
                    return Err(format!(
                        "NDT_NVRTC_LIB: cannot open {}: {e}",
                        path.display()
                    ));
                }
                Err(_) => continue,
            }
        }
        if opened.is_none() {
            return Err(match explicit {
                Some(p) => format!(
                    "NVRTC not found at NDT_NVRTC_LIB={}; {SETUP_HINT}",
                    PathBuf::from(p).display()
                ),
                None => format!("NVRTC (libnvrtc.so) not found; {SETUP_HINT}"),
            });
        }
        // SAFETY: as above.
        if !unsafe { sys::is_culib_present() } {
            return Err(format!(
                "opened {} but it is not visible as libnvrtc.so.12; {SETUP_HINT}",
                opened
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ));
        }
    }
    // cudarc panics on a missing symbol; a library too old to have one is an error here.
    let version = std::panic::catch_unwind(|| {
        let (mut major, mut minor) = (0 as c_int, 0 as c_int);
        // SAFETY: the library is present; both are out-pointers.
        let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
        (r, major, minor)
    })
    .map_err(|_| format!("the NVRTC library found is unusable; {SETUP_HINT}"))?;
    if version.0 != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(format!("nvrtcVersion failed: {:?}", version.0));
    }
    if version.1 < 12 {
        return Err(format!(
            "NVRTC {}.{} is too old (12.0 or newer needed); {SETUP_HINT}",
            version.1, version.2
        ));
    }
    let archs = std::panic::catch_unwind(|| {
        let mut n: c_int = 0;
        // SAFETY: out-pointer.
        if unsafe { sys::nvrtcGetNumSupportedArchs(&mut n) } != sys::nvrtcResult::NVRTC_SUCCESS {
            return Vec::new();
        }
        let mut v = vec![0 as c_int; n.max(0) as usize];
        // SAFETY: `v` has room for the `n` architectures NVRTC reports.
        if unsafe { sys::nvrtcGetSupportedArchs(v.as_mut_ptr()) } != sys::nvrtcResult::NVRTC_SUCCESS
        {
            return Vec::new();
        }
        v.into_iter().map(|a| a as u32).collect()
    })
    .map_err(|_| format!("the NVRTC library found is unusable; {SETUP_HINT}"))?;
    Ok(((version.1, version.2), opened, archs))
}

/// Opens a shared library by path and keeps it open for the life of the process, with its
/// symbols global so that a later lookup by soname finds it.
fn open_global(path: &Path) -> std::result::Result<(), String> {
    #[cfg(unix)]
    {
        use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
        // SAFETY: loading NVRTC runs its (trusted, side-effect free) initialisers only.
        let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }
            .map_err(|e| e.to_string())?;
        std::mem::forget(lib);
        Ok(())
    }
    #[cfg(not(unix))]
    {
        // SAFETY: as above.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
        std::mem::forget(lib);
        Ok(())
    }
}
