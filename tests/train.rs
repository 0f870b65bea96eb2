//! Training end to end on a small synthetic dataset, through the `ndt` binary: pretraining lowers
//! the validation loss and beats the per-neuron-mean predictor on every evaluation task;
//! finetuning in frozen-core mode leaves the core untouched; a run stopped and resumed is
//! bit-identical to an uninterrupted one; a diverging run stops with exit status 1 and keeps its
//! last good checkpoint; bad settings are errors.

use ndt::model::{ParamTable, checkpoint};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const NDT: &str = env!("CARGO_BIN_EXE_ndt");

/// A model small enough for debug-profile tests (3 blocks so block 3 exists for choice decoding).
const TINY: &str = "preset = \"small\"
[model]
d_model = 32
d_tok = 32
d_embed_hidden = 64
n_layers = 3
n_heads = 2
d_ff = 64
[train]
lr = 1e-2
dropout = 0.1
";

/// Runs `ndt` with a command line split on whitespace (test paths have no spaces).
fn ndt(line: &str) -> Output {
    Command::new(NDT)
        .args(line.split_whitespace())
        .output()
        .expect("run ndt")
}

/// Runs `ndt` and insists on success; returns stdout.
fn ok(line: &str) -> String {
    let o = ndt(line);
    assert!(
        o.status.success(),
        "ndt {line} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("train-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Two sessions of 300 trials, 60 neurons in 3 regions, 30 bins (onset at 5), 20 Hz: enough
/// signal for a tiny model to learn in seconds. Returns the dataset and the tiny config file.
fn data() -> (String, String) {
    static DATA: OnceLock<(String, String)> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tmp("data");
        let ds = dir.join("ds").display().to_string();
        ok(&format!(
            "synth --preset rs --out {ds} --sessions 2 --trials 300 --neurons 60 --bins 30 \
             --onset-bin 5 --rate 20 --regions 3 --seed 3"
        ));
        let cfg = dir.join("tiny.toml");
        std::fs::write(&cfg, TINY).unwrap();
        (ds, cfg.display().to_string())
    })
    .clone()
}

fn log_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn pretraining_learns_and_beats_the_mean_on_every_task() {
    let (ds, cfg) = data();
    let dir = tmp("learn");
    let run = dir.join("run");
    let r = run.display();
    let out = ok(&format!(
        "train {ds} --out {r} --sessions syn-0000 --config {cfg} --epochs 40 --device cpu --threads 1 --json"
    ));
    let o: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(o["epochs_done"], 40);
    assert_eq!(o["finished"], true);
    let lines = log_lines(&run);
    assert_eq!(lines.len(), 40);
    let first = lines[0]["val_loss"].as_f64().unwrap();
    let best = o["best_val_loss"].as_f64().unwrap();
    assert!(best < 0.95 * first, "validation loss {first} -> {best}");
    // The last step of a OneCycle run uses the final learning rate, peak / 10 / 1e4.
    let last_lr = lines[39]["lr"].as_f64().unwrap();
    assert!((last_lr - 1e-2 / 10.0 / 1e4).abs() < 1e-15, "{last_lr}");

    let report = dir.join("eval.json");
    let e = report.display();
    ok(&format!(
        "eval {r}/best.safetensors {ds} --session syn-0000 --out {e} --device cpu --threads 1"
    ));
    let text = std::fs::read_to_string(&report).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for task in ["co-smooth", "forward", "inter-region", "intra-region"] {
        let per_neuron = v["metrics"][task].as_f64().unwrap();
        let pooled = v["metrics"][format!("{task}.pooled")].as_f64().unwrap();
        assert!(
            per_neuron > 0.0 && pooled > 0.0,
            "{task}: {per_neuron} / {pooled}"
        );
    }
    // 30 bins from onset 5: windows 5..15, 15..25 and 25..30 (cut at the end of the trial).
    assert_eq!(v["tasks"]["forward"]["n_masks"], 3);
    let acc = v["choice"]["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
}

#[test]
fn frozen_core_finetuning_trains_only_the_new_session() {
    let (ds, cfg) = data();
    let dir = tmp("finetune");
    let pre = dir.join("pre");
    ok(&format!(
        "train {ds} --out {} --sessions syn-0000 --config {cfg} --epochs 2 --device cpu --threads 1",
        pre.display()
    ));
    let src = pre.join("last.safetensors");
    for mode in ["frozen-core", "full"] {
        let ft = dir.join(mode);
        ok(&format!(
            "finetune {} {ds} --session syn-0001 --mode {mode} --out {} --config {cfg} --epochs 2 \
             --device cpu --threads 1",
            src.display(),
            ft.display()
        ));
        let (c0, p0, _) = checkpoint::load(&src).unwrap();
        let (c1, p1, meta) = checkpoint::load(&ft.join("last.safetensors")).unwrap();
        assert_eq!(meta["mode"], mode);
        assert_eq!(c1.sessions.keys().collect::<Vec<_>>(), ["syn-0001"]);
        let (t0, t1) = (ParamTable::new(&c0), ParamTable::new(&c1));
        let mut core_changed = false;
        for e in t1.entries.iter().filter(|e| e.session.is_none()) {
            core_changed |= t0.slice(&p0, &e.name) != t1.slice(&p1, &e.name);
        }
        assert_eq!(core_changed, mode == "full", "{mode}");
        let tok = t1.slice(&p1, "sessions.syn-0001.token");
        assert!(tok.iter().all(|v| v.is_finite()));
    }
}

/// The state's tensors as bits (none for a finished run) and its counters.
fn state_bits(run: &Path) -> (Vec<u32>, ndt::train::state::Counters) {
    let st = ndt::train::state::load(&run.join("state.safetensors")).unwrap();
    let bits = [&st.params, &st.m, &st.v]
        .iter()
        .flat_map(|a| a.iter().map(|x| x.to_bits()))
        .collect();
    (bits, st.counters)
}

#[test]
fn a_resumed_run_is_bit_identical_to_an_uninterrupted_one() {
    let (ds, cfg) = data();
    let dir = tmp("resume");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let (pa, pb) = (a.display(), b.display());
    let common =
        format!("--sessions syn-0000,syn-0001 --config {cfg} --epochs 4 --device cpu --threads 2");
    ok(&format!("train {ds} --out {pa} {common}"));
    ok(&format!("train {ds} --out {pb} {common} --stop-after 2"));
    assert_eq!(log_lines(&b).len(), 2);
    ok(&format!(
        "train {ds} --out {pb} --resume --device cpu --threads 2"
    ));
    assert_eq!(state_bits(&a), state_bits(&b), "the final states differ");
    for f in ["last.safetensors", "best.safetensors"] {
        let (_, xa, ma) = checkpoint::load(&a.join(f)).unwrap();
        let (_, xb, mb) = checkpoint::load(&b.join(f)).unwrap();
        assert_eq!(ma, mb, "{f}");
        assert!(
            xa.iter().zip(&xb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{f} differs"
        );
    }
    let (la, lb) = (log_lines(&a), log_lines(&b));
    assert_eq!((la.len(), lb.len()), (4, 4));
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!(x["train_loss"], y["train_loss"]);
        assert_eq!(x["val_loss"], y["val_loss"]);
    }
    // Resuming takes the settings from the run; passing others is refused.
    let o = ndt(&format!("train {ds} --out {pb} --resume --epochs 6"));
    assert_eq!(o.status.code(), Some(1));
    // A new run into a directory that holds one is refused.
    let o = ndt(&format!("train {ds} --out {pa} {common}"));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds a run"));
}

#[test]
fn a_diverging_run_stops_and_keeps_its_last_good_checkpoint() {
    let (ds, cfg) = data();
    let run = tmp("nan").join("run");
    let o = ndt(&format!(
        "train {ds} --out {} --sessions syn-0000 --config {cfg} --epochs 3 --lr 1e6 --device cpu \
         --threads 1",
        run.display()
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("non-finite"), "{err}");
    assert!(err.contains("last.safetensors"), "{err}");
    let (_, p, meta) = checkpoint::load(&run.join("last.safetensors")).unwrap();
    assert!(p.iter().all(|v| v.is_finite()));
    let lines = log_lines(&run);
    assert_eq!(lines.last().unwrap()["diverged"], true);
    let good: usize = meta["epoch"].parse().unwrap();
    assert_eq!(lines.len(), good + 1);
}

#[test]
fn bad_settings_are_user_errors() {
    let (ds, cfg) = data();
    let run = tmp("bad").join("run");
    let r = run.display();
    for (extra, needle) in [
        (
            format!("--config {cfg} --batch-size 1000"),
            "fewer than one batch",
        ),
        (format!("--config {cfg} --sessions nope"), "nope"),
        (format!("--config {cfg} --schemes sideways"), "sideways"),
        (format!("--config {cfg} --lr=-1"), "lr"),
        ("--config /no/such.toml".to_string(), "/no/such.toml"),
    ] {
        let line = format!("train {ds} --out {r} --epochs 1 {extra}");
        let o = ndt(&line);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{line}: {err}");
        assert!(err.contains(needle), "{line}: {err}");
    }
    let o = ndt(&format!(
        "finetune /no/ckpt.safetensors {ds} --session syn-0001 --out {r}"
    ));
    assert_eq!(o.status.code(), Some(1));
    let o = ndt(&format!(
        "finetune /no/ckpt.safetensors {ds} --session syn-0001 --mode half --out {r}"
    ));
    assert!(String::from_utf8_lossy(&o.stderr).contains("half"));
}

#[test]
fn a_run_directory_has_one_writer_at_a_time() {
    let (ds, cfg) = data();
    let dir = tmp("lock");
    let run = dir.join("run");
    let r = run.display();
    let common = format!("--sessions syn-0000 --config {cfg} --device cpu --threads 1");
    // Another process holding the run's lock (as a running `ndt train` does) keeps a second
    // writer out, for a new run and for --resume.
    std::fs::create_dir_all(&run).unwrap();
    let held = std::fs::File::create(run.join(".ndt.lock")).unwrap();
    held.try_lock().unwrap();
    let o = ndt(&format!("train {ds} --out {r} {common} --epochs 2"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("in use by another ndt process"), "{err}");
    assert!(!run.join("run.json").exists(), "the refused run wrote");
    drop(held);
    ok(&format!(
        "train {ds} --out {r} {common} --epochs 2 --stop-after 1"
    ));
    let held = std::fs::File::open(run.join(".ndt.lock")).unwrap();
    held.try_lock().unwrap();
    let o = ndt(&format!("train {ds} --out {r} --resume --device cpu"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("in use by another ndt process"), "{err}");
    drop(held);

    // Two real processes: the second `ndt train --out SAME` is refused while the first runs.
    let run2 = dir.join("run2");
    let r2 = run2.display();
    let mut first = Command::new(NDT)
        .args(format!("train {ds} --out {r2} {common} --epochs 400").split_whitespace())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while std::fs::metadata(run2.join("log.jsonl")).map_or(true, |m| m.len() == 0) {
        assert!(t0.elapsed().as_secs() < 60);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let o = ndt(&format!("train {ds} --out {r2} {common} --epochs 400"));
    let o2 = ndt(&format!("train {ds} --out {r2} --resume --device cpu"));
    first.kill().unwrap();
    first.wait().unwrap();
    for o in [o, o2] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("in use by another ndt process"), "{err}");
    }
}

#[test]
fn the_next_writer_removes_leftovers_of_killed_writers() {
    let (ds, cfg) = data();
    let run = tmp("leftovers").join("run");
    let r = run.display();
    ok(&format!(
        "train {ds} --out {r} --sessions syn-0000 --config {cfg} --epochs 2 --stop-after 1 \
         --device cpu --threads 1"
    ));
    for name in [".state.safetensors.tmp99999", ".best.safetensors.tmp4"] {
        std::fs::write(run.join(name), b"half a file").unwrap();
    }
    std::fs::write(run.join("notes.tmp5"), b"not ours").unwrap();
    ok(&format!(
        "train {ds} --out {r} --resume --device cpu --threads 1"
    ));
    assert!(!run.join(".state.safetensors.tmp99999").exists());
    assert!(!run.join(".best.safetensors.tmp4").exists());
    assert!(
        run.join("notes.tmp5").exists(),
        "a file not of ours was removed"
    );
}

#[test]
fn resume_state_counters_are_checked_against_the_run() {
    let (ds, cfg) = data();
    let run = tmp("counters").join("run");
    let r = run.display();
    ok(&format!(
        "train {ds} --out {r} --sessions syn-0000 --config {cfg} --epochs 3 --stop-after 1 \
         --device cpu --threads 1"
    ));
    let path = run.join("state.safetensors");
    let good = ndt::train::state::load(&path).unwrap();
    let bad_epoch = |c: &mut ndt::train::state::Counters| c.epoch = 1_000_000_000_000_000_000;
    let bad_step = |c: &mut ndt::train::state::Counters| c.step += 1;
    let bad_best = |c: &mut ndt::train::state::Counters| c.best_epoch = Some(7);
    let bad_batch = |c: &mut ndt::train::state::Counters| c.batch = 1_000_000;
    for edit in [
        &bad_epoch as &dyn Fn(&mut ndt::train::state::Counters),
        &bad_step,
        &bad_best,
        &bad_batch,
    ] {
        let mut st = good.clone();
        edit(&mut st.counters);
        ndt::train::state::save(&path, &st).unwrap();
        let o = ndt(&format!(
            "train {ds} --out {r} --resume --device cpu --threads 1"
        ));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("state.safetensors"), "{err}");
        assert!(!err.contains("already finished"), "{err}");
    }
    ndt::train::state::save(&path, &good).unwrap();
    ok(&format!(
        "train {ds} --out {r} --resume --device cpu --threads 1"
    ));
}

#[test]
fn a_dataset_without_sessions_is_an_error_not_a_panic() {
    let (ds, cfg) = data();
    let dir = tmp("nosessions");
    let empty = dir.join("ds");
    std::fs::create_dir_all(&empty).unwrap();
    let text = std::fs::read_to_string(Path::new(&ds).join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["sessions"] = serde_json::json!([]);
    std::fs::write(empty.join("manifest.json"), m.to_string()).unwrap();
    let o = ndt(&format!(
        "train {} --out {} --config {cfg} --epochs 1 --device cpu",
        empty.display(),
        dir.join("run").display()
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("manifest.json") && err.contains("no session"),
        "{err}"
    );
}

#[test]
fn a_checkpoint_cadence_that_makes_no_sense_is_a_usage_error() {
    let (ds, cfg) = data();
    let run = tmp("cadence").join("run");
    for bad in ["-5", "ten", "10x", "-1m", "1.5"] {
        let o = ndt(&format!(
            "train {ds} --out {} --config {cfg} --epochs 1 --device cpu --checkpoint-every={bad}",
            run.display()
        ));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{bad}: {err}");
        assert!(
            err.contains("--checkpoint-every") && err.contains("not a checkpoint cadence"),
            "{bad}: {err}"
        );
        assert!(!run.join("run.json").exists());
    }
}

#[test]
fn checkpoints_follow_the_cadence_and_the_end() {
    let (ds, cfg) = data();
    let dir = tmp("cadence-writes");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let common = format!(
        "--sessions syn-0000 --config {cfg} --epochs 5 --val-every 1 --device cpu --threads 1"
    );
    // Every 2 epochs, and the end (--stop-after 3 is an end): the state is at epoch 3, the log
    // has 3 lines, `best` is the best of those 3 (held in memory when it was epoch 3's).
    ok(&format!(
        "train {ds} --out {} {common} --checkpoint-every 2e --stop-after 3",
        a.display()
    ));
    let st = ndt::train::state::load(&a.join("state.safetensors")).unwrap();
    assert_eq!(st.counters.epoch, 3);
    let (_, best, meta) = checkpoint::load(&a.join("best.safetensors")).unwrap();
    assert_eq!(meta["epoch"], st.counters.best_epoch.unwrap().to_string());
    let (held, _) = st.best.as_ref().unwrap();
    assert!(
        best.iter()
            .zip(held)
            .all(|(x, y)| x.to_bits() == y.to_bits())
    );
    // Every epoch (0) versus every 2: the same results.
    ok(&format!(
        "train {ds} --out {} {common} --checkpoint-every 0",
        b.display()
    ));
    ok(&format!(
        "train {ds} --out {} --resume --device cpu --threads 1 --checkpoint-every 2",
        a.display()
    ));
    for f in ["best.safetensors", "last.safetensors"] {
        let (_, x, mx) = checkpoint::load(&a.join(f)).unwrap();
        let (_, y, my) = checkpoint::load(&b.join(f)).unwrap();
        assert_eq!(mx, my, "{f}");
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{f}"
        );
    }
    let strip = |run: &Path| {
        log_lines(run)
            .into_iter()
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("time_s");
                v.as_object_mut().unwrap().remove("step_s");
                v
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&a), strip(&b));
    assert!(
        log_lines(&b)
            .iter()
            .all(|l| l["step_s"].as_f64().unwrap() > 0.0)
    );
}

#[test]
fn resuming_a_finished_run_is_a_no_op_that_says_so() {
    let (ds, cfg) = data();
    let run = tmp("finished").join("run");
    let r = run.display();
    ok(&format!(
        "train {ds} --out {r} --sessions syn-0000 --config {cfg} --epochs 2 --device cpu --threads 1"
    ));
    let before: Vec<(PathBuf, Vec<u8>)> = ["log.jsonl", "state.safetensors", "last.safetensors"]
        .iter()
        .map(|f| (run.join(f), std::fs::read(run.join(f)).unwrap()))
        .collect();
    let o = ndt(&format!(
        "train {ds} --out {r} --resume --device cpu --json"
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("already finished"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["finished"], true);
    assert_eq!(v["epochs_done"], 2);
    for (p, bytes) in before {
        assert!(
            std::fs::read(&p).unwrap() == bytes,
            "{} rewritten",
            p.display()
        );
    }
}

#[test]
fn nothing_is_written_before_the_first_interval_and_a_finished_state_is_small() {
    let (ds, cfg) = data();
    let dir = tmp("first-write");
    let run = dir.join("run");
    let r = run.display();
    let common = format!("--sessions syn-0000 --config {cfg} --device cpu --threads 1");
    // At the default cadence (10 minutes) a run under way for an epoch has written its settings
    // and log, but no checkpoint and no state yet.
    let mut child = Command::new(NDT)
        .args(format!("train {ds} --out {r} {common} --epochs 400").split_whitespace())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while std::fs::metadata(run.join("log.jsonl")).map_or(true, |m| m.len() == 0) {
        assert!(t0.elapsed().as_secs() < 60, "no epoch finished");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for f in ["state.safetensors", "last.safetensors", "best.safetensors"] {
        assert!(
            !run.join(f).exists(),
            "{f} written before the first interval"
        );
    }
    // Such a run has nothing to resume (and says why); started again, it starts over.
    let o = ndt(&format!("train {ds} --out {r} --resume --device cpu"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("before its first write"), "{err}");
    ok(&format!("train {ds} --out {r} {common} --epochs 2"));
    assert_eq!(log_lines(&run).len(), 2);
    // A finished run's state holds its counters, not four copies of the parameters.
    let st = ndt::train::state::load(&run.join("state.safetensors")).unwrap();
    assert!(ndt::train::state::is_finished(&st));
    assert_eq!((st.counters.epoch, st.counters.batch), (2, 0));
    let state_len = std::fs::metadata(run.join("state.safetensors"))
        .unwrap()
        .len();
    let last_len = std::fs::metadata(run.join("last.safetensors"))
        .unwrap()
        .len();
    assert!(
        state_len * 4 < last_len,
        "finished state {state_len} bytes, last checkpoint {last_len}"
    );
    // A state without parameters that claims fewer epochs than the run's is refused.
    let mut c = st.counters.clone();
    c.epoch = 1;
    c.step /= 2;
    c.best_epoch = c.best_epoch.map(|_| 1);
    ndt::train::state::save_finished(&run.join("state.safetensors"), &st.config, &c).unwrap();
    let o = ndt(&format!(
        "train {ds} --out {r} --resume --device cpu --threads 1"
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("state.safetensors") && err.contains("finished run"),
        "{err}"
    );
}

#[test]
fn a_batch_that_does_not_fit_in_memory_is_refused_before_training() {
    // 400 bins make the attention workspace of a batch of 65536 trials far larger than any
    // machine's memory, while the model itself is tiny (the run config alone passes).
    let dir = tmp("memory");
    let ds = dir.join("ds");
    let d = ds.display();
    ok(&format!(
        "synth --preset rs --out {d} --sessions 1 --trials 40 --neurons 20 --bins 400 \
         --onset-bin 5 --rate 20 --seed 3"
    ));
    let cfg = data().1;
    let pre = dir.join("pre");
    let o = ndt(&format!(
        "train {d} --out {} --config {cfg} --epochs 1 --batch-size 65536 --device cpu",
        pre.display()
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("memory") && err.contains("65536"), "{err}");
    assert!(!pre.join("run.json").exists());
    // Finetuning checks the finetuned model at its batch size too.
    let small = dir.join("small");
    ok(&format!(
        "train {d} --out {} --config {cfg} --epochs 1 --batch-size 8 --device cpu --threads 1",
        small.display()
    ));
    let ft = dir.join("ft");
    let o = ndt(&format!(
        "finetune {} {d} --session syn-0000 --out {} --epochs 1 --batch-size 65536 --device cpu",
        small.join("last.safetensors").display(),
        ft.display()
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("memory") && err.contains("65536"), "{err}");
    assert!(!ft.join("run.json").exists());
}
