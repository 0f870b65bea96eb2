//! The kernel emulator's host side: device memory in host pages with a guard page after each
//! allocation, and the kernel files compiled by the host C++ compiler (`$CXX`, else `c++`)
//! against `kernels/emu.h`, loaded as shared libraries and launched through their
//! `ndt_emu_launch` entry.
//!
//! Selected by `Settings::emulator` (`NDT_CUDA_EMU=1`): `Gpu::open` then returns an emulated device and everything
//! above it (launchers, the CUDA backend, graphs, `--device cuda`) runs unchanged, slowly, on
//! the CPU. What it checks and what it cannot is written in kernels/emu.h and docs/cuda.md.

use super::kernels::KernelFile;
use super::nvrtc::{cache_dir, expand};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::ffi::{CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// The emulator's runtime header, pasted before each kernel file.
const RUNTIME: &str = include_str!("../../kernels/emu.h");

/// Flags of every emulator compile (part of the cache key).
const FLAGS: &[&str] = &[
    "-std=c++17",
    "-O2",
    "-g",
    "-fPIC",
    "-shared",
    "-fvisibility=hidden",
    "-pthread",
    "-fno-strict-aliasing",
    "-ffp-contract=off",
    // Fixed-size array indices checked, a violation traps (SIGILL, caught by kernels/emu.h).
    "-fsanitize=bounds",
    "-fsanitize-undefined-trap-on-error",
    "-Wall",
    "-Wno-unknown-pragmas",
];

/// The order in which the threads of a block run between two barriers or warp operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    FirstToLast,
    LastToFirst,
}

type LaunchFn = unsafe extern "C" fn(
    name: *const c_char,
    grid: *const u32,
    block: *const u32,
    params: *const *const c_void,
    sizes: *const usize,
    nargs: i32,
    reverse: i32,
    threads: u32,
    err: *mut c_char,
    errlen: usize,
) -> i32;

/// One kernel file, compiled and loaded.
struct Module {
    launch: LaunchFn,
    // Keeps the library mapped as long as `launch` may be called.
    _lib: libloading::Library,
}

/// Modules of this process, by kernel file: compiled once, shared by every emulated device.
fn modules() -> &'static Mutex<HashMap<&'static str, Arc<Module>>> {
    static M: OnceLock<Mutex<HashMap<&'static str, Arc<Module>>>> = OnceLock::new();
    M.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The host C++ compiler: `$CXX`, else `c++`.
fn compiler() -> String {
    std::env::var("CXX")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "c++".into())
}

/// The compiler's `--version` line (part of the cache key), or an error saying it is missing.
fn compiler_version(cxx: &str) -> Result<String> {
    let out = Command::new(cxx).arg("--version").output().map_err(|e| {
        Error::Cuda(format!(
            "the kernel emulator needs a C++ compiler: '{cxx}' could not be run ({e}); \
             set CXX or unset NDT_CUDA_EMU"
        ))
    })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

/// The translation unit of `file`: the runtime, the kernel file with its headers, and the
/// table of its kernels.
fn source(file: &KernelFile) -> Result<String> {
    let mut s = String::from("#line 1 \"emu.h\"\n");
    s.push_str(&RUNTIME.replace("#pragma once", ""));
    s.push_str(&expand(file)?);
    s.push_str("\n#line 1 \"emu-table\"\nnamespace {\nconst ndt_emu::Entry ndt_emu_table[] = {\n");
    for e in file.entries {
        s.push_str(&format!(
            "    ndt_emu::Tramp<decltype(&{e}), &{e}>::entry(\"{e}\"),\n"
        ));
    }
    s.push_str("};\n}  // namespace\n");
    s.push_str(
        "extern \"C\" __attribute__((visibility(\"default\"))) int ndt_emu_launch(\
         const char* name, const unsigned int* grid, const unsigned int* block, void** params, \
         const size_t* sizes, int nargs, int reverse, unsigned int threads, char* err, \
         size_t errlen) {\n\
         return ndt_emu::launch(ndt_emu_table, (int)(sizeof ndt_emu_table / sizeof ndt_emu_table[0]), \
         name, grid, block, params, sizes, nargs, reverse, threads, err, errlen);\n}\n",
    );
    Ok(s)
}

/// Compiles `file` (or finds it in the cache) and returns the library's path.
fn build(file: &KernelFile) -> Result<PathBuf> {
    let cxx = compiler();
    let version = compiler_version(&cxx)?;
    let src = source(file)?;
    let key = format!("{cxx}\n{version}\n{}\n{src}", FLAGS.join(" "));
    let dir = cache_dir()
        .unwrap_or_else(|| std::env::temp_dir().join("ndt-emu"))
        .join("emu");
    std::fs::create_dir_all(&dir).map_err(|e| {
        Error::Cuda(format!(
            "kernel emulator: cannot create {}: {e}",
            dir.display()
        ))
    })?;
    let stem = format!(
        "{}-{}",
        file.name.trim_end_matches(".cu"),
        crate::hash::id_of(&[key.as_bytes()])
    );
    let lib = dir.join(format!("{stem}.so"));
    if lib.exists() {
        return Ok(lib);
    }
    let pid = std::process::id();
    let cpp = dir.join(format!("{stem}.{pid}.cpp"));
    let tmp = dir.join(format!("{stem}.{pid}.so"));
    std::fs::write(&cpp, &src).map_err(|e| {
        Error::Cuda(format!(
            "kernel emulator: cannot write {}: {e}",
            cpp.display()
        ))
    })?;
    let out = Command::new(&cxx)
        .args(FLAGS)
        .arg("-o")
        .arg(&tmp)
        .arg(&cpp)
        .output()
        .map_err(|e| Error::Cuda(format!("kernel emulator: running {cxx}: {e}")))?;
    let _ = std::fs::remove_file(&cpp);
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Cuda(format!(
            "kernels/{} does not compile for the kernel emulator ({cxx} {}):\n{}",
            file.name,
            FLAGS.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    std::fs::rename(&tmp, &lib).map_err(|e| {
        Error::Cuda(format!(
            "kernel emulator: cannot store {}: {e}",
            lib.display()
        ))
    })?;
    prune(&dir, file.name.trim_end_matches(".cu"), KEEP);
    Ok(lib)
}

/// Libraries kept per kernel file in the cache (the newest; older sources' go).
const KEEP: usize = 4;

/// Removes all but the `keep` newest libraries of kernel file `stem` from `dir`. A library in
/// use stays mapped after its file is removed; failures are ignored (the cache is optional).
fn prune(dir: &Path, stem: &str, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{stem}-");
    let mut libs: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(&prefix)
                && name.ends_with(".so")
                && name[prefix.len()..name.len() - 3]
                    .chars()
                    .all(|c| c.is_ascii_hexdigit())
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    libs.sort_by_key(|l| std::cmp::Reverse(l.0));
    for (_, old) in libs.into_iter().skip(keep) {
        let _ = std::fs::remove_file(old);
    }
}

fn load(path: &Path, file: &KernelFile) -> Result<Module> {
    // SAFETY: the library was built from the project's kernel sources by `build`; loading it
    // runs only the static initialisers of kernels/emu.h.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| {
        Error::Cuda(format!(
            "kernel emulator: loading {} for kernels/{}: {e}",
            path.display(),
            file.name
        ))
    })?;
    // SAFETY: `ndt_emu_launch` is defined by `source` with exactly the `LaunchFn` signature.
    let launch: LaunchFn = unsafe {
        *lib.get::<LaunchFn>(b"ndt_emu_launch\0").map_err(|e| {
            Error::Cuda(format!(
                "kernel emulator: {} has no ndt_emu_launch: {e}",
                path.display()
            ))
        })?
    };
    Ok(Module { launch, _lib: lib })
}

fn module(file: &KernelFile) -> Result<Arc<Module>> {
    let mut map = modules()
        .lock()
        .map_err(|_| Error::Internal("kernel emulator: module table poisoned".into()))?;
    if let Some(m) = map.get(file.name) {
        return Ok(m.clone());
    }
    let m = Arc::new(load(&build(file)?, file)?);
    map.insert(file.name, m.clone());
    Ok(m)
}

/// Compiles and loads `file` now.
pub fn prepare(file: &KernelFile) -> Result<()> {
    module(file).map(|_| ())
}

/// Runs kernel `name` of `file` on the CPU, the threads of a block in `order`. `args` are the
/// argument values' bytes, in the kernel's parameter order.
pub fn launch(
    file: &KernelFile,
    name: &str,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    args: &[&[u8]],
    order: Order,
    workers: u32,
) -> Result<()> {
    let m = module(file)?;
    let cname = CString::new(name).map_err(|_| Error::Internal(format!("kernel name {name}")))?;
    let grid = [grid.0, grid.1, grid.2];
    let block = [block.0, block.1, block.2];
    // Each argument is copied into 16-aligned storage, as the kernel reads it as its C type.
    let mut store: Vec<[u128; 16]> = Vec::with_capacity(args.len());
    for a in args {
        if a.len() > 256 {
            return Err(Error::Internal(format!(
                "kernel {name}: argument of {} bytes",
                a.len()
            )));
        }
        let mut s = [0u128; 16];
        // SAFETY: `s` has 256 bytes, `a` at most 256.
        unsafe { std::ptr::copy_nonoverlapping(a.as_ptr(), s.as_mut_ptr() as *mut u8, a.len()) };
        store.push(s);
    }
    let params: Vec<*const c_void> = store.iter().map(|s| s.as_ptr() as *const c_void).collect();
    let sizes: Vec<usize> = args.iter().map(|a| a.len()).collect();
    let mut err = vec![0u8; 1024];
    // SAFETY: the pointers are valid for the call; the module checks the argument count and
    // sizes against the kernel's signature before running it.
    let rc = unsafe {
        (m.launch)(
            cname.as_ptr(),
            grid.as_ptr(),
            block.as_ptr(),
            params.as_ptr(),
            sizes.as_ptr(),
            args.len() as i32,
            (order == Order::LastToFirst) as i32,
            workers,
            err.as_mut_ptr() as *mut c_char,
            err.len(),
        )
    };
    if rc != 0 {
        let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
        return Err(Error::Cuda(format!(
            "kernels/{} (emulated): {}",
            file.name,
            String::from_utf8_lossy(&err[..end])
        )));
    }
    Ok(())
}

/// Host memory standing in for one device allocation: the data ends where an inaccessible
/// page begins, so that a kernel reading or writing past the end faults at once.
pub struct HostMem {
    base: *mut c_void,
    map_len: usize,
    data: *mut u8,
}

// SAFETY: the mapping is owned by this value; access is synchronised by the single stream.
unsafe impl Send for HostMem {}
unsafe impl Sync for HostMem {}

fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

impl HostMem {
    /// `bytes` zeroed bytes, 16-aligned, followed by a guard page.
    pub fn new(bytes: usize) -> Result<HostMem> {
        let pg = page();
        let body = bytes.max(1).div_ceil(pg) * pg;
        let map_len = body + pg;
        // SAFETY: a fresh private anonymous mapping; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Error::Cuda(format!(
                "kernel emulator: cannot map {bytes} bytes of host memory"
            )));
        }
        // SAFETY: the last page lies inside the mapping just made.
        let rc = unsafe { libc::mprotect((base as *mut u8).add(body) as *mut c_void, pg, 0) };
        if rc != 0 {
            // SAFETY: unmapping what was mapped above.
            unsafe { libc::munmap(base, map_len) };
            return Err(Error::Cuda(
                "kernel emulator: cannot protect a guard page".into(),
            ));
        }
        let used = bytes.max(1).div_ceil(16) * 16;
        // SAFETY: `body - used` is inside the mapping and 16-aligned (page and used are).
        let data = unsafe { (base as *mut u8).add(body - used) };
        Ok(HostMem {
            base,
            map_len,
            data,
        })
    }

    pub fn addr(&self) -> u64 {
        self.data as u64
    }
}

impl Drop for HostMem {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base, self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest_libraries_of_one_kernel_file() {
        let dir = std::env::temp_dir().join(format!("ndt-emu-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let names = [
            "gemm-0000000000000001.so",
            "gemm-0000000000000002.so",
            "gemm-0000000000000003.so",
            "gemm-extra.so",
            "mask-0000000000000001.so",
        ];
        for (i, n) in names.iter().enumerate() {
            let p = dir.join(n);
            std::fs::write(&p, b"x").unwrap();
            let t =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        prune(&dir, "gemm", 2);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "gemm-0000000000000002.so",
                "gemm-0000000000000003.so",
                "gemm-extra.so",
                "mask-0000000000000001.so"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
