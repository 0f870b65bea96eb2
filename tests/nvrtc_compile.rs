//! Every kernel file compiles with NVRTC for sm_86, sm_89 and sm_90, with no error and no
//! warning, and defines exactly the kernels its launcher loads. Needs no GPU: NVRTC comes from
//! pip's `nvidia-cuda-nvrtc-cu12` (tools/setup.sh puts it in .venv), a CUDA install, or
//! `NDT_NVRTC_LIB`.

use ndt::cuda::kernels::{ALL, KernelFile};
use ndt::cuda::nvrtc::{Arch, Nvrtc};

const ARCHS: [Arch; 3] = [Arch::new(8, 6), Arch::new(8, 9), Arch::new(9, 0)];

fn nvrtc() -> Nvrtc {
    match Nvrtc::load() {
        Ok(n) => n,
        Err(e) => panic!(
            "NVRTC is needed for this test and was not found: run tools/setup.sh \
             (it installs nvidia-cuda-nvrtc-cu12 into .venv) or set NDT_NVRTC_LIB.\n{e}"
        ),
    }
}

/// Lines of an NVRTC log that report a problem (the log is empty on a clean compile).
fn problems(log: &str) -> Vec<&str> {
    log.lines().filter(|l| !l.trim().is_empty()).collect()
}

fn entries_in_ptx(ptx: &str) -> Vec<String> {
    ptx.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix(".visible .entry ")?;
            Some(rest.split('(').next()?.trim().to_string())
        })
        .collect()
}

fn check_file(nv: &Nvrtc, file: &KernelFile) {
    for arch in ARCHS {
        assert!(
            nv.supports(arch),
            "this NVRTC ({:?}) cannot generate code for {arch}",
            nv.version()
        );
        let c = match nv.compile(file, arch) {
            Ok(c) => c,
            Err(e) => panic!("kernels/{} for {arch}:\n{e}", file.name),
        };
        let p = problems(&c.log);
        assert!(
            p.is_empty(),
            "kernels/{} for {arch} compiled with warnings (options {}):\n{}",
            file.name,
            c.options.join(" "),
            c.log
        );
        assert!(!c.is_ptx);
        assert!(
            c.image.len() > 64 && c.image.starts_with(b"\x7fELF"),
            "kernels/{} for {arch}: not a CUBIN",
            file.name
        );
    }
    let ptx = nv.ptx(file, ARCHS[0]).unwrap();
    for hopper_only in ["wgmma", "setmaxnreg", "cp.async.bulk"] {
        assert!(
            !ptx.contains(hopper_only),
            "kernels/{} uses {hopper_only}: the default path must run on sm_86/sm_89",
            file.name
        );
    }
    let mut have = entries_in_ptx(&ptx);
    have.sort();
    let mut want: Vec<String> = file.entries.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        have, want,
        "kernels/{}: the kernels it defines differ from the list its launcher loads",
        file.name
    );
}

#[test]
fn every_kernel_file_compiles_cleanly_for_sm86_sm89_sm90() {
    let nv = nvrtc();
    eprintln!(
        "NVRTC {}.{} from {}",
        nv.version().0,
        nv.version().1,
        nv.path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the library search path".into())
    );
    for file in ALL {
        check_file(&nv, file);
    }
}

#[test]
fn the_gemm_runs_on_tensor_cores() {
    let nv = nvrtc();
    let gemm = ALL.iter().find(|f| f.name == "gemm.cu").unwrap();
    let ptx = nv.ptx(gemm, ARCHS[0]).unwrap();
    assert!(
        ptx.contains("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"),
        "gemm_bf16 should issue bf16 mma.sync"
    );
    assert!(
        ptx.contains("ldmatrix.sync.aligned.m8n8.x4.shared.b16"),
        "gemm_bf16 should load its mma fragments with ldmatrix"
    );
}

#[test]
fn a_compile_error_reports_the_file_line_and_log() {
    let nv = nvrtc();
    let bad = KernelFile {
        name: "broken.cu",
        text: "#include \"common.cuh\"\nextern \"C\" __global__ void k(float* x) {\n  x[0] = undefined_name;\n}\n",
        entries: &["k"],
    };
    let e = nv.compile(&bad, ARCHS[0]).unwrap_err().to_string();
    assert!(e.contains("kernels/broken.cu"), "{e}");
    assert!(
        e.contains("broken.cu(3)"),
        "log should point at line 3: {e}"
    );
    assert!(e.contains("undefined_name"), "{e}");
}

#[test]
fn a_warning_shows_in_the_log() {
    let nv = nvrtc();
    let warn = KernelFile {
        name: "warn.cu",
        text: "extern \"C\" __global__ void k(float* x) {\n  int unused = 3;\n  x[0] = 1.0f;\n}\n",
        entries: &["k"],
    };
    let c = nv.compile(&warn, ARCHS[0]).unwrap();
    assert!(
        !problems(&c.log).is_empty(),
        "expected a warning for an unused variable"
    );
}

#[test]
fn the_cache_returns_what_was_compiled() {
    let nv = nvrtc();
    let dir = std::env::temp_dir().join(format!("ndt-kcache-{}", std::process::id()));
    // SAFETY: this test binary's other tests do not read NDT_KERNEL_CACHE.
    unsafe { std::env::set_var("NDT_KERNEL_CACHE", &dir) };
    let file = &ALL[0];
    let first = nv.compile_cached(file, ARCHS[1]).unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one cache entry");
    let second = nv.compile_cached(file, ARCHS[1]).unwrap();
    assert_eq!(first.image, second.image);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bad `NDT_NVRTC_LIB` (missing, or a file that is not NVRTC) is an error naming the variable
/// and the path, never a panic. NVRTC is opened once per process, so each case runs this test
/// again in a child process with the variable set.
#[test]
fn a_bad_nvrtc_lib_is_an_error_naming_it() {
    if let Ok(bad) = std::env::var("NDT_TEST_BAD_NVRTC") {
        let e = match Nvrtc::load() {
            Ok(_) => panic!("NDT_NVRTC_LIB={bad} loaded"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("NDT_NVRTC_LIB") && e.contains(&bad), "{e}");
        println!("child checked: {e}");
        return;
    }
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for bad in ["/nonexistent/libnvrtc.so.12", manifest] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_bad_nvrtc_lib_is_an_error_naming_it",
                "--nocapture",
            ])
            .env("NDT_NVRTC_LIB", bad)
            .env("NDT_TEST_BAD_NVRTC", bad)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("child checked:"),
            "{bad}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Registers per kernel from ptxas (`-- --nocapture` prints them). The gemm_bf16 kernels run
/// 128 threads per block and must keep to 168 registers, so that three blocks fit in an SM's
/// 64 K registers; no kernel spills. Every kernel of every file (`kernels::ALL`) must appear in
/// the report with its spill line and its register count: a report that stops matching the
/// patterns below fails instead of checking nothing.
#[test]
fn kernel_registers_fit_the_occupancy_the_gemm_is_built_for() {
    let nv = nvrtc();
    for arch in ARCHS {
        for file in ALL {
            let log = nv.resource_report(file, arch).unwrap();
            let seen = register_report(&log, &arch.to_string());
            let mut have: Vec<&str> = seen.keys().map(|k| k.as_str()).collect();
            have.sort();
            let mut want: Vec<&str> = file.entries.to_vec();
            want.sort();
            assert_eq!(
                have, want,
                "kernels/{} on {arch}: the kernels in ptxas's report differ from the file's \
                 list (a changed report format?):\n{log}",
                file.name
            );
        }
    }
}

/// The register count of each kernel in a ptxas resource report. Fails on a
/// spill, on a gemm_bf16 kernel over 168 registers, and on a kernel with no spill line or no
/// register count.
fn register_report(log: &str, arch: &str) -> std::collections::BTreeMap<String, u32> {
    let mut spills = std::collections::BTreeSet::new();
    let mut regs = std::collections::BTreeMap::new();
    let mut kernel = String::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Function properties for ").nth(1) {
            kernel = rest.trim().to_string();
            continue;
        }
        if line.contains("spill stores") {
            assert!(!kernel.is_empty(), "a spill line before any kernel:\n{log}");
            assert!(
                line.contains(" 0 bytes spill stores, 0 bytes spill loads"),
                "{kernel} on {arch} spills: {line}"
            );
            spills.insert(kernel.clone());
        }
        let Some(rest) = line.split("Used ").nth(1) else {
            continue;
        };
        assert!(
            !kernel.is_empty(),
            "a register count before any kernel:\n{log}"
        );
        let n: u32 = rest
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("{kernel} on {arch}: unreadable register count: {line}"));
        eprintln!("{arch} {kernel:<28} {}", rest.trim());
        if kernel.starts_with("gemm_bf16") {
            assert!(n <= 168, "{kernel} on {arch}: {n} registers > 168");
        }
        assert!(
            regs.insert(kernel.clone(), n).is_none(),
            "{kernel} on {arch}: two register counts"
        );
    }
    // A `__noinline__` device function (C++-mangled, `_Z...`; the kernels are `extern "C"`)
    // gets its own spill line but no register count: checked for spills above, not counted.
    spills.retain(|k| !k.starts_with("_Z") || regs.contains_key(k));
    let counted: std::collections::BTreeSet<String> = regs.keys().cloned().collect();
    assert_eq!(
        spills, counted,
        "on {arch}: kernels with a spill line differ from kernels with a register count:\n{log}"
    );
    regs
}

/// The report parser itself: a report in another format is not "no spills, no registers".
#[test]
fn a_report_in_another_format_checks_nothing_and_fails() {
    let good = "ptxas info    : Function properties for k1\n\
                ptxas .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
                ptxas info    : Used 40 registers, 380 bytes cmem[0]\n";
    let r = register_report(good, "sm_86");
    assert_eq!(
        r.into_iter().collect::<Vec<_>>(),
        vec![("k1".to_string(), 40)]
    );
    // Without its spill line the kernel is not counted as checked.
    let no_spill = "ptxas info    : Function properties for k1\n\
                    ptxas info    : Used 40 registers\n";
    assert!(std::panic::catch_unwind(|| register_report(no_spill, "sm_86")).is_err());
    // A report the patterns do not match yields no kernels: the caller's list check fails.
    assert!(register_report("Resource usage: k1 regs=40 spill=0\n", "sm_86").is_empty());
    let spill = good.replace("0 bytes spill stores", "8 bytes spill stores");
    assert!(std::panic::catch_unwind(|| register_report(&spill, "sm_86")).is_err());
}
