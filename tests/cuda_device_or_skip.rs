//! The CUDA tests' device helper (`cuda_common::gpu`) skips only when the machine has no GPU and
//! no emulator was asked for; a bad `NDT_CUDA_EMU` or a GPU demanded by `NDT_TEST_REQUIRE_GPU`
//! and absent fails. Each case runs this test binary again in a child process with the
//! environment set, since the helper reads it.

mod cuda_common;

use std::process::{Command, Output};

/// In the child: open the device as a CUDA test does, and say what came of it.
#[test]
fn child_opens_the_device() {
    if std::env::var_os("NDT_TEST_CHILD").is_none() {
        return;
    }
    match cuda_common::gpu("child_opens_the_device") {
        Some(g) => println!("child: opened {}", g.info.name),
        None => println!("child: skipped"),
    }
}

fn child(env: &[(&str, &str)], remove: &[&str]) -> (bool, String) {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_opens_the_device", "--nocapture"])
        .env("NDT_TEST_CHILD", "1");
    for k in ["NDT_CUDA_EMU", "NDT_TEST_REQUIRE_GPU"] {
        c.env_remove(k);
    }
    for k in remove {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().unwrap();
    (
        status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    )
}

/// Whether this machine has a usable GPU (then the no-GPU cases cannot be checked here).
fn has_gpu() -> bool {
    let (ok, out) = child(&[], &[]);
    ok && out.contains("child: opened")
}

#[test]
fn a_bad_emulator_setting_fails_instead_of_skipping() {
    for bad in ["yes", "2", "Reverse"] {
        let (ok, out) = child(&[("NDT_CUDA_EMU", bad)], &[]);
        assert!(!ok, "NDT_CUDA_EMU={bad} passed:\n{out}");
        assert!(
            out.contains(&format!("NDT_CUDA_EMU={bad}")) && !out.contains("SKIPPED"),
            "NDT_CUDA_EMU={bad}:\n{out}"
        );
    }
}

#[test]
fn the_emulator_runs_and_says_in_which_order() {
    for (v, order) in [("1", "1"), ("reverse", "reverse")] {
        let (ok, out) = child(&[("NDT_CUDA_EMU", v)], &[]);
        assert!(ok, "NDT_CUDA_EMU={v}:\n{out}");
        assert!(
            out.contains(&format!(
                "CUDA-TEST ran child_opens_the_device on emulator order {order}\n"
            )),
            "NDT_CUDA_EMU={v}:\n{out}"
        );
        assert!(!out.contains("SKIPPED"), "{out}");
    }
}

#[test]
fn without_a_gpu_the_skip_is_named_unless_a_gpu_is_required() {
    if has_gpu() {
        let (ok, out) = child(&[("NDT_TEST_REQUIRE_GPU", "1")], &[]);
        assert!(ok, "{out}");
        assert!(
            out.contains("CUDA-TEST ran child_opens_the_device on GPU "),
            "{out}"
        );
        return;
    }
    let (ok, out) = child(&[], &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("SKIPPED: no CUDA device: child_opens_the_device (")
            && out.contains("child: skipped"),
        "{out}"
    );
    let (ok, out) = child(&[("NDT_CUDA_EMU", "0")], &[]);
    assert!(ok && out.contains("SKIPPED: no CUDA device: "), "{out}");
    let (ok, out) = child(&[("NDT_TEST_REQUIRE_GPU", "1")], &[]);
    assert!(!ok, "a required GPU that is absent passed:\n{out}");
    assert!(
        out.contains("cannot open the CUDA device") && !out.contains("SKIPPED"),
        "{out}"
    );
}
