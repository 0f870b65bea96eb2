//! Runs trained side by side (`train::group`, `--models-per-device K`) equal the same runs
//! trained alone on the CPU, bit for bit: checkpoints, resume state and log (timings aside), for
//! K = 1, 2 and 5, with runs of different lengths, seeds, learning rates and sessions in one
//! group, frozen-core finetunes beside pretrainings, and a diverging run that stops alone with
//! its last good checkpoint while the others finish. The CPU backend's results do not depend on
//! its thread count, which the group relies on; that is tested first.

mod common;

use common::log_sans_times;
use ndt::cpu::CpuBackend;
use ndt::model::{ModelConfig, ParamTable, checkpoint, init};
use ndt::store::Dataset;
use ndt::train::cadence::Cadence;
use ndt::train::config::RunConfig;
use ndt::train::finetune::{Mode, finetune_init};
use ndt::train::group::{Member, train_group};
use ndt::train::run::model_config;
use ndt::train::trainer::{Init, Outcome, Run, train};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const NDT: &str = env!("CARGO_BIN_EXE_ndt");

const TINY: &str = "preset = \"small\"
[model]
d_model = 32
d_tok = 32
d_embed_hidden = 64
n_layers = 2
n_heads = 2
d_ff = 64
[train]
lr = 1e-2
dropout = 0.1
batch_size = 16
";

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("group-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Three sessions of 80 trials, 24 neurons in 2 regions, 20 bins.
fn data() -> &'static Path {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let ds = tmp("data").join("ds");
        let o = Command::new(NDT)
            .args(["synth", "--preset", "rs", "--out"])
            .arg(&ds)
            .args([
                "--sessions",
                "3",
                "--trials",
                "80",
                "--neurons",
                "24",
                "--bins",
                "20",
            ])
            .args([
                "--onset-bin",
                "4",
                "--rate",
                "20",
                "--regions",
                "2",
                "--seed",
                "5",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        ds
    })
}

/// A job: what is trained, from what.
#[derive(Clone)]
struct Job {
    session: usize,
    seed: u64,
    epochs: usize,
    lr: f64,
    /// Finetune this checkpoint frozen-core (else pretrain from scratch).
    from: Option<PathBuf>,
}

fn job(session: usize, seed: u64, epochs: usize) -> Job {
    Job {
        session,
        seed,
        epochs,
        lr: 1e-2,
        from: None,
    }
}

/// The config, initial parameters and run of `j` writing to `out`.
struct Prepared<'a> {
    cfg: ModelConfig,
    params: Vec<f32>,
    run: Run<'a>,
}

fn prepare<'a>(ds: &'a Dataset, j: &Job, out: &Path) -> Prepared<'a> {
    let mut rc = RunConfig::from_toml(TINY, Path::new("tiny.toml")).unwrap();
    rc.train.seed = j.seed;
    rc.train.epochs = j.epochs;
    rc.train.lr = j.lr;
    rc.train.val_every = 1;
    let (cfg, params, trainable, meta) = match &j.from {
        None => {
            let cfg = model_config(ds, &[j.session], &rc).unwrap();
            let p = init::init_params(&cfg, &ParamTable::new(&cfg), j.seed);
            (cfg, p, None, BTreeMap::new())
        }
        Some(ckpt) => {
            let (src_cfg, src, _) = checkpoint::load(ckpt).unwrap();
            let info = ds.session(j.session);
            let (cfg, p) = finetune_init(
                &src_cfg,
                &src,
                &info.id,
                info.n_neurons,
                info.n_bins,
                j.seed,
            )
            .unwrap();
            let t = Mode::FrozenCore.trainable(&cfg, &info.id);
            let meta = BTreeMap::from([("mode".to_string(), "frozen-core".to_string())]);
            (cfg, p, t, meta)
        }
    };
    let run = Run {
        ds,
        sessions: vec![j.session],
        hyper: rc.train,
        out: out.to_path_buf(),
        trainable,
        stop_after: None,
        progress: false,
        meta,
        checkpoint_every: Cadence::Epochs(1),
    };
    Prepared { cfg, params, run }
}

fn solo(ds: &Dataset, j: &Job, out: &Path, threads: usize) -> ndt::error::Result<Outcome> {
    let p = prepare(ds, j, out);
    let mut b = CpuBackend::new(p.cfg.clone(), threads);
    train(&mut b, &p.cfg, Init::Params(p.params), &p.run)
}

fn group(
    ds: &Dataset,
    jobs: &[Job],
    dir: &Path,
    threads: usize,
) -> Vec<ndt::error::Result<Outcome>> {
    let prepared: Vec<Prepared> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| prepare(ds, j, &dir.join(format!("g{i}"))))
        .collect();
    let members: Vec<Member> = prepared
        .into_iter()
        .map(|p| Member {
            cfg: p.cfg,
            init: Init::Params(p.params),
            run: p.run,
        })
        .collect();
    train_group(members, jobs.len(), threads)
}

/// Every file a run leaves that holds results, equal byte for byte (the log without timings).
fn assert_same_run(a: &Path, b: &Path) {
    for f in ["last.safetensors", "best.safetensors", "state.safetensors"] {
        let (x, y) = (std::fs::read(a.join(f)), std::fs::read(b.join(f)));
        assert_eq!(
            x.is_ok(),
            y.is_ok(),
            "{f}: {} vs {}",
            a.display(),
            b.display()
        );
        if let (Ok(x), Ok(y)) = (x, y) {
            assert!(x == y, "{f} differs: {} vs {}", a.display(), b.display());
        }
    }
    assert_eq!(
        log_sans_times(a),
        log_sans_times(b),
        "{} vs {}",
        a.display(),
        b.display()
    );
}

fn assert_same_outcome(a: &Outcome, b: &Outcome) {
    assert_eq!(a.epochs_done, b.epochs_done);
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.finished, b.finished);
    assert_eq!(a.best_epoch, b.best_epoch);
    assert_eq!(a.best_val.map(f64::to_bits), b.best_val.map(f64::to_bits));
    assert_eq!(
        a.train_loss.map(f64::to_bits),
        b.train_loss.map(f64::to_bits)
    );
    assert_eq!(a.val_loss.map(f64::to_bits), b.val_loss.map(f64::to_bits));
}

#[test]
fn the_cpu_backend_gives_the_same_bits_on_any_thread_count() {
    let ds = Dataset::open(data()).unwrap();
    let dir = tmp("threads");
    let j = job(0, 7, 2);
    let one = solo(&ds, &j, &dir.join("t1"), 1).unwrap();
    for t in [2, 3] {
        let out = dir.join(format!("t{t}"));
        let o = solo(&ds, &j, &out, t).unwrap();
        assert_same_outcome(&one, &o);
        assert_same_run(&dir.join("t1"), &out);
    }
}

/// K runs side by side against each alone.
fn check_group(name: &str, jobs: &[Job], threads: usize) {
    let ds = Dataset::open(data()).unwrap();
    let dir = tmp(name);
    let got = group(&ds, jobs, &dir, threads);
    assert_eq!(got.len(), jobs.len());
    for (i, (j, g)) in jobs.iter().zip(&got).enumerate() {
        let alone = dir.join(format!("s{i}"));
        let want = solo(&ds, j, &alone, 1).unwrap();
        let g = g.as_ref().unwrap();
        assert!(g.finished, "{name} job {i}");
        assert_same_outcome(&want, g);
        assert_same_run(&alone, &dir.join(format!("g{i}")));
    }
}

#[test]
fn one_run_in_a_group_equals_it_alone() {
    check_group("k1", &[job(0, 1, 2)], 2);
}

#[test]
fn two_runs_of_different_lengths_equal_them_alone() {
    check_group("k2", &[job(0, 1, 3), job(1, 2, 1)], 2);
}

#[test]
fn five_runs_of_pretraining_and_frozen_core_finetuning_equal_them_alone() {
    let ds = Dataset::open(data()).unwrap();
    let base = tmp("k5-base").join("pre");
    solo(&ds, &job(0, 9, 1), &base, 2).unwrap();
    let ckpt = base.join("last.safetensors");
    let ft = |session, seed, epochs| Job {
        from: Some(ckpt.clone()),
        ..job(session, seed, epochs)
    };
    let jobs = [
        ft(1, 11, 2),
        ft(2, 12, 3),
        job(1, 13, 2),
        Job {
            lr: 3e-3,
            ..ft(1, 14, 1)
        },
        job(2, 15, 2),
    ];
    check_group("k5", &jobs, 2);
    // More threads than runs, and fewer.
    check_group("k5-t1", &jobs[..3], 1);
    check_group("k5-t4", &jobs[..2], 4);
}

#[test]
fn a_diverging_run_stops_alone_with_its_last_good_checkpoint() {
    let ds = Dataset::open(data()).unwrap();
    let dir = tmp("nan");
    let bad = Job {
        lr: 1e6,
        ..job(0, 3, 3)
    };
    let jobs = [job(1, 4, 3), bad.clone(), job(2, 5, 2)];
    let got = group(&ds, &jobs, &dir, 2);
    let alone = solo(&ds, &bad, &dir.join("s1"), 1);
    let (Err(g), Err(a)) = (&got[1], &alone) else {
        panic!(
            "the run at lr 1e6 did not diverge: {:?} {:?}",
            got[1], alone
        );
    };
    assert!(matches!(g, ndt::error::Error::Diverged(_)), "{g}");
    assert_eq!(
        g.to_string().replace("/g1/", "/s1/"),
        a.to_string(),
        "the same error as alone"
    );
    assert_same_run(&dir.join("s1"), &dir.join("g1"));
    let (_, p, _) = checkpoint::load(&dir.join("g1").join("last.safetensors")).unwrap();
    assert!(p.iter().all(|v| v.is_finite()));
    for i in [0, 2] {
        let o = got[i].as_ref().unwrap();
        assert!(o.finished);
        let want = solo(&ds, &jobs[i], &dir.join(format!("s{i}")), 1).unwrap();
        assert_same_outcome(&want, o);
        assert_same_run(&dir.join(format!("s{i}")), &dir.join(format!("g{i}")));
    }
}
