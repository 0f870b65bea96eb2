//! NVRTC: compiles one kernel file to a CUBIN for one GPU architecture, and keeps compiled
//! CUBINs in an on-disk cache keyed by the source, the options and the compiler. Where the
//! library comes from: `nvrtc_load`.
//!
//! Kernel files include the project's headers (`#include "rng.cuh"`); the include is expanded
//! here, with `#line` markers so that compile errors name the right file and line. No CUDA or
//! C++ standard header is needed.

use super::kernels::{HEADERS, KernelFile};
use super::nvrtc_load::{Api, NVRTC_SUCCESS, NvrtcProgram, NvrtcResult};
use crate::error::{Error, Result};
use std::ffi::{CStr, CString, c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A GPU architecture `sm_{major}{minor}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arch {
    pub major: u32,
    pub minor: u32,
}

impl Arch {
    pub const fn new(major: u32, minor: u32) -> Arch {
        Arch { major, minor }
    }
    /// 86 for sm_86.
    pub fn number(self) -> u32 {
        self.major * 10 + self.minor
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sm_{}{}", self.major, self.minor)
    }
}

/// What one compilation produced.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// Device code: a CUBIN for the exact architecture, or PTX text (NUL-terminated) when the
    /// library does not know the device's architecture and the driver has to finish the job.
    pub image: Vec<u8>,
    /// Whether `image` is PTX text rather than a CUBIN.
    pub is_ptx: bool,
    /// The compiler's log (warnings), empty when it had nothing to say.
    pub log: String,
    /// The options the file was compiled with.
    pub options: Vec<String>,
}

/// A loaded NVRTC library.
#[derive(Clone, Debug)]
pub struct Nvrtc {
    version: (i32, i32),
    /// The path it was opened from, when found by path rather than by name.
    path: Option<PathBuf>,
    /// Architectures (as 86, 89, 90, …) this NVRTC can generate code for.
    archs: Vec<u32>,
}

/// The message every "NVRTC missing" error ends with.
pub(crate) const SETUP_HINT: &str = "install the CUDA toolkit, or run tools/setup.sh (pip's nvidia-cuda-nvrtc-cu12 \
     in .venv), or point NDT_NVRTC_LIB at libnvrtc.so.12 or .so.13";

impl Nvrtc {
    /// Finds and opens NVRTC (see `nvrtc_load`). Never panics: a missing or broken library is
    /// an error.
    pub fn load() -> Result<Nvrtc> {
        static LOADED: OnceLock<std::result::Result<Nvrtc, String>> = OnceLock::new();
        LOADED
            .get_or_init(|| {
                let (version, path, archs) = super::nvrtc_load::load()?;
                Ok(Nvrtc {
                    version,
                    path,
                    archs,
                })
            })
            .clone()
            .map_err(Error::Cuda)
    }

    /// (major, minor) of the library, e.g. (12, 9).
    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    /// Where the library was opened from (None: found by name on the search path).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether this NVRTC can generate a CUBIN for `arch`.
    pub fn supports(&self, arch: Arch) -> bool {
        self.archs.contains(&arch.number())
    }

    /// The options every kernel is compiled with for `arch`.
    pub fn options(&self, arch: Arch) -> Vec<String> {
        let target = if self.supports(arch) {
            format!("--gpu-architecture=sm_{}", arch.number())
        } else {
            // Newer GPU than this NVRTC knows: PTX for the newest architecture it knows that is
            // not above the device, which the driver compiles for the device.
            let best = self
                .archs
                .iter()
                .copied()
                .filter(|&a| a <= arch.number())
                .max()
                .unwrap_or(80);
            format!("--gpu-architecture=compute_{best}")
        };
        vec![
            target,
            "--std=c++17".into(),
            "--fmad=true".into(),
            "--generate-line-info".into(),
            "--ptxas-options=--warn-on-spills".into(),
        ]
    }

    /// Compiles `file` for `arch`. A compile error is an `Error::Cuda` carrying the file name,
    /// the options and the full compiler log.
    pub fn compile(&self, file: &KernelFile, arch: Arch) -> Result<Compiled> {
        let source = expand(file)?;
        let options = self.options(arch);
        let is_ptx = !self.supports(arch);
        let (image, log) = compile_source(file.name, &source, &options, is_ptx)?;
        Ok(Compiled {
            image,
            is_ptx,
            log,
            options,
        })
    }

    /// ptxas's report of every kernel of `file` for `arch` (registers, shared memory, spills):
    /// the compiler log of a compile with `--ptxas-options=-v`.
    pub fn resource_report(&self, file: &KernelFile, arch: Arch) -> Result<String> {
        let source = expand(file)?;
        let mut options = self.options(arch);
        options.push("--ptxas-options=-v".into());
        let (_, log) = compile_source(file.name, &source, &options, !self.supports(arch))?;
        Ok(log)
    }

    /// The PTX of `file` for `arch` (used by tests to list the kernels a file defines).
    pub fn ptx(&self, file: &KernelFile, arch: Arch) -> Result<String> {
        let source = expand(file)?;
        let mut options = self.options(arch);
        options[0] = format!("--gpu-architecture=compute_{}", arch.number());
        let (image, _) = compile_source(file.name, &source, &options, true)?;
        let end = image.iter().position(|&b| b == 0).unwrap_or(image.len());
        Ok(String::from_utf8_lossy(&image[..end]).into_owned())
    }

    /// Like `compile`, but looks in the on-disk cache first and stores what it compiles there.
    /// The cache is an optimisation: a cache that cannot be read or written is ignored.
    pub fn compile_cached(&self, file: &KernelFile, arch: Arch) -> Result<Compiled> {
        let source = expand(file)?;
        let options = self.options(arch);
        let key = format!(
            "nvrtc {}.{}\n{}\n{}",
            self.version.0,
            self.version.1,
            options.join(" "),
            source
        );
        let dir = cache_dir();
        let path = dir.as_ref().map(|d| {
            let stem = file.name.trim_end_matches(".cu");
            d.join(format!(
                "{stem}-{arch}-{}.bin",
                crate::hash::id_of(&[key.as_bytes()])
            ))
        });
        if let Some(hit) = path.as_deref().and_then(|p| read_cache(p, &key)) {
            return Ok(Compiled {
                image: hit,
                is_ptx: !self.supports(arch),
                log: String::new(),
                options,
            });
        }
        let is_ptx = !self.supports(arch);
        let (image, log) = compile_source(file.name, &source, &options, is_ptx)?;
        if let (Some(dir), Some(path)) = (dir, path) {
            let _ = std::fs::create_dir_all(&dir);
            let mut bytes = Vec::with_capacity(16 + key.len() + image.len());
            bytes.extend_from_slice(CACHE_MAGIC);
            bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
            bytes.extend_from_slice(key.as_bytes());
            bytes.extend_from_slice(&image);
            let _ = crate::fsutil::write_atomic(&path, &bytes);
        }
        Ok(Compiled {
            image,
            is_ptx,
            log,
            options,
        })
    }
}

const CACHE_MAGIC: &[u8; 8] = b"NDTKRN1\n";

/// The kernel cache folder: `NDT_KERNEL_CACHE`, else `$XDG_CACHE_HOME/ndt/kernels`, else
/// `~/.cache/ndt/kernels`. `NDT_KERNEL_CACHE=off` disables it.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("NDT_KERNEL_CACHE") {
        if d == "off" || d.is_empty() {
            return None;
        }
        return Some(PathBuf::from(d));
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("ndt").join("kernels"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("ndt").join("kernels"))
}

/// A cached image, if the file exists and was stored under exactly `key`.
fn read_cache(path: &Path, key: &str) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let rest = bytes.strip_prefix(CACHE_MAGIC.as_slice())?;
    let (len, rest) = rest.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    if rest.len() <= len || &rest[..len] != key.as_bytes() {
        return None;
    }
    Some(rest[len..].to_vec())
}

/// The source of `file` with the project's headers pasted in (each once), `#pragma once`
/// dropped, and `#line` markers so that the compiler reports original files and lines.
pub fn expand(file: &KernelFile) -> Result<String> {
    let mut out = String::with_capacity(file.text.len() * 2);
    let mut seen = Vec::new();
    expand_into(file.name, file.text, &mut out, &mut seen, 0)?;
    Ok(out)
}

fn expand_into(
    name: &str,
    text: &str,
    out: &mut String,
    seen: &mut Vec<&'static str>,
    depth: usize,
) -> Result<()> {
    if depth > 8 {
        return Err(Error::Cuda(format!(
            "kernels/{name}: includes nest too deep"
        )));
    }
    out.push_str(&format!("#line 1 \"{name}\"\n"));
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("#pragma once") {
            out.push('\n');
            continue;
        }
        if let Some(rest) = t.strip_prefix("#include") {
            let inc = rest
                .trim()
                .trim_matches(|c| c == '"' || c == '<' || c == '>');
            let Some(&(hname, htext)) = HEADERS.iter().find(|(n, _)| *n == inc) else {
                return Err(Error::Cuda(format!(
                    "kernels/{name}:{}: unknown include '{inc}' (kernels include only the project's \
                     own headers: {})",
                    i + 1,
                    HEADERS.iter().map(|h| h.0).collect::<Vec<_>>().join(", ")
                )));
            };
            if !seen.contains(&hname) {
                seen.push(hname);
                expand_into(hname, htext, out, seen, depth + 1)?;
            }
            out.push_str(&format!("#line {} \"{name}\"\n", i + 2));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(())
}

/// Runs NVRTC on `source`. Returns the image (CUBIN, or PTX when `want_ptx`) and the log.
fn compile_source(
    name: &str,
    source: &str,
    options: &[String],
    want_ptx: bool,
) -> Result<(Vec<u8>, String)> {
    let api = super::nvrtc_load::api()
        .ok_or_else(|| Error::Cuda(format!("kernels/{name}: NVRTC is not loaded")))?;
    let fail = |what: &str, r: NvrtcResult| {
        Error::Cuda(format!(
            "kernels/{name}: {what} failed: {}",
            result_name(api, r)
        ))
    };
    let c_src = CString::new(source)
        .map_err(|_| Error::Cuda(format!("kernels/{name}: source contains a NUL byte")))?;
    let c_name = CString::new(name)
        .map_err(|_| Error::Cuda(format!("kernel name {name:?} contains a NUL byte")))?;
    let c_opts: Vec<CString> = options
        .iter()
        .map(|o| CString::new(o.as_str()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Cuda(format!("kernels/{name}: an option contains a NUL byte")))?;
    let opt_ptrs: Vec<*const c_char> = c_opts.iter().map(|o| o.as_ptr()).collect();

    let mut prog: NvrtcProgram = std::ptr::null_mut();
    // SAFETY: the library is loaded (an `Nvrtc` exists only after `load` succeeded); `prog` is
    // an out-pointer; source and name are NUL-terminated and outlive the program.
    let r = unsafe {
        (api.create_program)(
            &mut prog,
            c_src.as_ptr(),
            c_name.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != NVRTC_SUCCESS {
        return Err(fail("nvrtcCreateProgram", r));
    }
    let guard = ProgramGuard(api, prog);

    // SAFETY: `prog` is a live program; the option pointers are valid C strings.
    let compiled =
        unsafe { (api.compile_program)(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr()) };
    let log = program_log(api, prog).unwrap_or_else(|| "(no log)".into());
    if compiled != NVRTC_SUCCESS {
        return Err(Error::Cuda(format!(
            "kernels/{name}: compilation failed ({}), options: {}\n{}",
            result_name(api, compiled),
            options.join(" "),
            log.trim_end()
        )));
    }

    let mut size = 0usize;
    let image = if want_ptx {
        // SAFETY: `prog` compiled successfully; `size` is an out-pointer.
        let r = unsafe { (api.get_ptx_size)(prog, &mut size) };
        if r != NVRTC_SUCCESS {
            return Err(fail("nvrtcGetPTXSize", r));
        }
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` holds exactly the `size` bytes NVRTC asked for.
        let r = unsafe { (api.get_ptx)(prog, buf.as_mut_ptr().cast()) };
        if r != NVRTC_SUCCESS {
            return Err(fail("nvrtcGetPTX", r));
        }
        buf
    } else {
        // SAFETY: as above, for the CUBIN.
        let r = unsafe { (api.get_cubin_size)(prog, &mut size) };
        if r != NVRTC_SUCCESS {
            return Err(fail("nvrtcGetCUBINSize", r));
        }
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` holds exactly the `size` bytes NVRTC asked for.
        let r = unsafe { (api.get_cubin)(prog, buf.as_mut_ptr().cast()) };
        if r != NVRTC_SUCCESS {
            return Err(fail("nvrtcGetCUBIN", r));
        }
        buf
    };
    drop(guard);
    Ok((image, log.trim_end().to_string()))
}

/// Destroys an NVRTC program when dropped.
struct ProgramGuard(&'static Api, NvrtcProgram);

impl Drop for ProgramGuard {
    fn drop(&mut self) {
        // SAFETY: the program was created by nvrtcCreateProgram and is destroyed once.
        unsafe {
            (self.0.destroy_program)(&mut self.1);
        }
    }
}

fn program_log(api: &Api, prog: NvrtcProgram) -> Option<String> {
    let mut size = 0usize;
    // SAFETY: `prog` is a live program; `size` is an out-pointer.
    if unsafe { (api.get_program_log_size)(prog, &mut size) } != NVRTC_SUCCESS {
        return None;
    }
    let mut buf = vec![0u8; size.max(1)];
    // SAFETY: `buf` has room for the `size` bytes of the log, NUL included.
    if unsafe { (api.get_program_log)(prog, buf.as_mut_ptr().cast()) } != NVRTC_SUCCESS {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn result_name(api: &Api, r: NvrtcResult) -> String {
    // SAFETY: nvrtcGetErrorString returns a static NUL-terminated string for any code.
    let p = unsafe { (api.get_error_string)(r) };
    if p.is_null() {
        return format!("NVRTC error {r}");
    }
    // SAFETY: non-null pointer to a static C string owned by the library.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_expand_once_with_line_markers() {
        let f = KernelFile {
            name: "t.cu",
            text: "#include \"rng.cuh\"\n#include \"rng.cuh\"\nint x;\n",
            entries: &[],
        };
        let s = expand(&f).unwrap();
        assert_eq!(s.matches("#line 1 \"rng.cuh\"").count(), 1);
        assert!(s.contains("#line 3 \"t.cu\"\nint x;"));
        assert!(!s.contains("#pragma once"));
    }

    #[test]
    fn unknown_include_is_an_error_naming_the_file() {
        let f = KernelFile {
            name: "t.cu",
            text: "#include <stdio.h>\n",
            entries: &[],
        };
        let e = expand(&f).unwrap_err().to_string();
        assert!(e.contains("kernels/t.cu:1") && e.contains("stdio.h"), "{e}");
    }

    #[test]
    fn cache_entries_check_their_key() {
        let dir = std::env::temp_dir().join(format!("ndt-nvrtc-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.bin");
        let mut bytes = CACHE_MAGIC.to_vec();
        bytes.extend_from_slice(&3u64.to_le_bytes());
        bytes.extend_from_slice(b"keyIMAGE");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read_cache(&p, "key").as_deref(), Some(&b"IMAGE"[..]));
        assert_eq!(read_cache(&p, "kez"), None);
        std::fs::write(&p, &bytes[..10]).unwrap();
        assert_eq!(read_cache(&p, "key"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
