//! Finding and opening NVRTC without panicking, and its entry points as a table of function
//! pointers (`Api`), so that any NVRTC 12 or 13 works whatever its file is called.
//!
//! Order: `NDT_NVRTC_LIB` (a file or a folder; when set, the only place looked at), then by name
//! on the library search path (`LD_LIBRARY_PATH`, a system CUDA: `libnvrtc.so`, `.so.12`,
//! `.so.13`), then by path: `$CUDA_HOME`/`$CUDA_PATH`, `/usr/local/cuda`, versioned toolkits
//! `/usr/local/cuda-X.Y` (newest first), and pip's NVRTC wheels
//! (`nvidia-cuda-nvrtc-cu12`: `nvidia/cuda_nvrtc/lib`; `nvidia-cuda-nvrtc` 13: `nvidia/cu13/lib`)
//! inside `$VIRTUAL_ENV` or a `.venv` beside the binary or in the checkout. The first library
//! that opens and has every entry point wins; it stays open for the life of the process.

use super::nvrtc::SETUP_HINT;
use libloading::Library;
use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::OnceLock;

/// `nvrtcResult`; 0 is success.
pub(crate) type NvrtcResult = c_int;
pub(crate) const NVRTC_SUCCESS: NvrtcResult = 0;
/// `nvrtcProgram`, an opaque handle.
pub(crate) type NvrtcProgram = *mut c_void;

/// The NVRTC entry points ndt uses (signatures from `nvrtc.h`, unchanged from 12.0 to 13.x).
pub(crate) struct Api {
    _lib: Library,
    pub version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult,
    pub get_num_supported_archs: unsafe extern "C" fn(*mut c_int) -> NvrtcResult,
    pub get_supported_archs: unsafe extern "C" fn(*mut c_int) -> NvrtcResult,
    pub get_error_string: unsafe extern "C" fn(NvrtcResult) -> *const c_char,
    pub create_program: unsafe extern "C" fn(
        *mut NvrtcProgram,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> NvrtcResult,
    pub compile_program:
        unsafe extern "C" fn(NvrtcProgram, c_int, *const *const c_char) -> NvrtcResult,
    pub destroy_program: unsafe extern "C" fn(*mut NvrtcProgram) -> NvrtcResult,
    pub get_program_log_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult,
    pub get_program_log: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult,
    pub get_ptx_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult,
    pub get_ptx: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult,
    pub get_cubin_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult,
    pub get_cubin: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult,
}

impl Api {
    /// Resolves every entry point of an opened library.
    fn resolve(lib: Library) -> std::result::Result<Api, String> {
        /// One symbol as a function pointer of the type the field expects.
        ///
        /// SAFETY (of the callers): the field's type is the C signature of `name` in nvrtc.h.
        unsafe fn sym<T: Copy>(lib: &Library, name: &str) -> std::result::Result<T, String> {
            // SAFETY: see above.
            unsafe { lib.get::<T>(name.as_bytes()) }
                .map(|s| *s)
                .map_err(|_| format!("it has no symbol {name}"))
        }
        // SAFETY: every field's type is the signature of the symbol of that name in nvrtc.h.
        unsafe {
            Ok(Api {
                version: sym(&lib, "nvrtcVersion")?,
                get_num_supported_archs: sym(&lib, "nvrtcGetNumSupportedArchs")?,
                get_supported_archs: sym(&lib, "nvrtcGetSupportedArchs")?,
                get_error_string: sym(&lib, "nvrtcGetErrorString")?,
                create_program: sym(&lib, "nvrtcCreateProgram")?,
                compile_program: sym(&lib, "nvrtcCompileProgram")?,
                destroy_program: sym(&lib, "nvrtcDestroyProgram")?,
                get_program_log_size: sym(&lib, "nvrtcGetProgramLogSize")?,
                get_program_log: sym(&lib, "nvrtcGetProgramLog")?,
                get_ptx_size: sym(&lib, "nvrtcGetPTXSize")?,
                get_ptx: sym(&lib, "nvrtcGetPTX")?,
                get_cubin_size: sym(&lib, "nvrtcGetCUBINSize")?,
                get_cubin: sym(&lib, "nvrtcGetCUBIN")?,
                _lib: lib,
            })
        }
    }
}

/// File names NVRTC goes by, most generic first.
const NAMES: [&str; 3] = ["libnvrtc.so", "libnvrtc.so.12", "libnvrtc.so.13"];

/// Where a candidate library is.
enum Candidate {
    /// Looked up by the dynamic linker (the library search path).
    Name(&'static str),
    Path(PathBuf),
}

/// Candidates when NDT_NVRTC_LIB is not set, in the order of the module doc.
fn candidates() -> Vec<Candidate> {
    let mut out: Vec<Candidate> = NAMES.iter().map(|n| Candidate::Name(n)).collect();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            dirs.push(PathBuf::from(&p).join("lib64"));
            dirs.push(PathBuf::from(&p).join("lib"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    dirs.extend(versioned_toolkits(std::path::Path::new("/usr/local")));
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
                let site = e.path().join("site-packages/nvidia");
                dirs.push(site.join("cuda_nvrtc/lib"));
                dirs.push(site.join("cu13/lib"));
            }
        }
    }
    for d in dirs {
        out.extend(NAMES.iter().map(|n| Candidate::Path(d.join(n))));
    }
    out
}

/// The library folders of versioned toolkits under `root` (`cuda-13.0`, `cuda-12.4`, …), newest
/// version first: a machine may have them without a `cuda` link.
fn versioned_toolkits(root: &std::path::Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("cuda-")?;
            let key: Option<Vec<u32>> = version.split('.').map(|p| p.parse().ok()).collect();
            Some((key?, e.path()))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found
        .into_iter()
        .flat_map(|(_, d)| [d.join("lib64"), d.join("targets/x86_64-linux/lib")])
        .collect()
}

/// Opens a candidate and resolves its entry points.
fn open(c: &Candidate) -> std::result::Result<Api, String> {
    // SAFETY: loading NVRTC runs its (trusted, side-effect free) initialisers only.
    let lib = match c {
        Candidate::Name(n) => unsafe { Library::new(*n) },
        Candidate::Path(p) => unsafe { Library::new(p) },
    }
    .map_err(|e| e.to_string())?;
    Api::resolve(lib)
}

/// The opened library and where it came from (None: found by name).
struct Loaded {
    api: Api,
    path: Option<PathBuf>,
}

fn find() -> std::result::Result<Loaded, String> {
    if let Some(p) = std::env::var_os("NDT_NVRTC_LIB").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        let files: Vec<PathBuf> = if p.is_dir() {
            NAMES
                .iter()
                .map(|n| p.join(n))
                .filter(|f| f.is_file())
                .collect()
        } else {
            vec![p.clone()]
                .into_iter()
                .filter(|f| f.is_file())
                .collect()
        };
        let Some(file) = files.first() else {
            return Err(format!(
                "NVRTC not found at NDT_NVRTC_LIB={} (no such file, nor a folder with {}); \
                 {SETUP_HINT}",
                p.display(),
                NAMES.join(", ")
            ));
        };
        return open(&Candidate::Path(file.clone()))
            .map(|api| Loaded {
                api,
                path: Some(file.clone()),
            })
            .map_err(|e| format!("NDT_NVRTC_LIB: cannot use {}: {e}", file.display()));
    }
    let mut unusable: Option<String> = None;
    for c in candidates() {
        if let Candidate::Path(p) = &c
            && !p.is_file()
        {
            continue;
        }
        match open(&c) {
            Ok(api) => {
                let path = match c {
                    Candidate::Name(_) => None,
                    Candidate::Path(p) => Some(p),
                };
                return Ok(Loaded { api, path });
            }
            // A file that exists but cannot be used is worth naming if nothing else works.
            Err(e) => {
                if let Candidate::Path(p) = &c {
                    unusable.get_or_insert_with(|| format!(" ({}: {e})", p.display()));
                }
            }
        }
    }
    Err(format!(
        "NVRTC (libnvrtc.so) not found{}; {SETUP_HINT}",
        unusable.unwrap_or_default()
    ))
}

static LOADED: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

/// The entry points, once `load` has succeeded.
pub(crate) fn api() -> Option<&'static Api> {
    LOADED.get().and_then(|l| l.as_ref().ok()).map(|l| &l.api)
}

/// Opens NVRTC (once per process); returns its version, the path it was opened from (None:
/// found by name) and the architectures it can generate code for.
#[allow(clippy::type_complexity)]
pub(crate) fn load() -> std::result::Result<((i32, i32), Option<PathBuf>, Vec<u32>), String> {
    let loaded = LOADED.get_or_init(find).as_ref().map_err(|e| e.clone())?;
    let api = &loaded.api;
    let (mut major, mut minor) = (0 as c_int, 0 as c_int);
    // SAFETY: both are out-pointers.
    let r = unsafe { (api.version)(&mut major, &mut minor) };
    if r != NVRTC_SUCCESS {
        return Err(format!("nvrtcVersion failed with code {r}"));
    }
    if major < 12 {
        return Err(format!(
            "NVRTC {major}.{minor} is too old (12.0 or newer needed); {SETUP_HINT}"
        ));
    }
    let mut n: c_int = 0;
    let mut archs = Vec::new();
    // SAFETY: out-pointer.
    if unsafe { (api.get_num_supported_archs)(&mut n) } == NVRTC_SUCCESS {
        let mut v = vec![0 as c_int; n.max(0) as usize];
        // SAFETY: `v` has room for the `n` architectures NVRTC reports.
        if unsafe { (api.get_supported_archs)(v.as_mut_ptr()) } == NVRTC_SUCCESS {
            archs = v.into_iter().map(|a| a as u32).collect();
        }
    }
    Ok(((major, minor), loaded.path.clone(), archs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_toolkits_come_newest_first() {
        let root = std::env::temp_dir().join(format!("ndt-cuda-dirs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in [
            "cuda-12.4",
            "cuda-13.0",
            "cuda-12.10",
            "cuda",
            "cuda-x",
            "other",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let got: Vec<String> = versioned_toolkits(&root)
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "cuda-13.0/lib64",
                "cuda-13.0/targets/x86_64-linux/lib",
                "cuda-12.10/lib64",
                "cuda-12.10/targets/x86_64-linux/lib",
                "cuda-12.4/lib64",
                "cuda-12.4/targets/x86_64-linux/lib",
            ]
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
