//! Mutation fuzzing of every reader of user files, through the library API (docs/fuzz.md).
//!
//! Seeded and deterministic: case `i` of seed `s` is always the same input. Each case takes a
//! valid file of one reader (`.npy`, `.npz` session, manifest, the spikes of a dataset, sweep
//! plan, run config, checkpoint, resume state, job result, ALF session, NWB file), mutates it with one of six classes
//! (truncation, byte flips, header and size attacks, huge counts, special files, deep nesting)
//! and reads it. A case passes when the reader returns, within `CASE_LIMIT`, either a value or
//! an error of an exit-1 kind (never `Internal`/`Cuda`); a panic, an abort (a stack overflow,
//! an allocation failure under the child's address-space limit) or a hang fails the run.
//!
//! The cases run in a child process (this same binary, `NDT_FUZZ_CHILD` set) that reports each
//! case on stdout as it starts and ends; panics are caught per case with `catch_unwind`, and a
//! child that dies or stops reporting is recorded against the case it was in, then restarted
//! after it. Settings (environment): `NDT_FUZZ_CASES` (default 2,900), `NDT_FUZZ_SECONDS`
//! (run until this much time has passed instead), `NDT_FUZZ_SEED`, `NDT_FUZZ_START` (first
//! case: replaying case `i` alone is `NDT_FUZZ_START=i NDT_FUZZ_CASES=1`), `NDT_FUZZ_VERBOSE`
//! (print every case's outcome and error).

use ndt::error::Error;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "NDT_FUZZ_CHILD";
const DEFAULT_CASES: u64 = 2900;
const DEFAULT_SEED: u64 = 0x6e64_7466_757a_7a31;
/// A case that takes longer than this is a hang. Time the child spent waiting for a CPU (a
/// loaded machine) does not count: see `runnable_wait`.
const CASE_LIMIT: Duration = Duration::from_secs(20);
/// The child's set-up (building the valid inputs and reading each once) before its first case.
const SETUP_LIMIT: Duration = Duration::from_secs(600);
/// Address space of the child: far more than any reader needs for these kilobyte inputs, far
/// less than an allocation sized by a hostile count.
const ADDRESS_LIMIT: u64 = 6 << 30;

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(spec) => child(&spec),
        Err(_) => parent(),
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness.

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn for_case(seed: u64, case: u64) -> Rng {
        let mut r = Rng(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }
}

// ---------------------------------------------------------------------------------------------
// Targets (readers) and mutation classes.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Npy,
    Npz,
    Manifest,
    Spikes,
    Plan,
    Config,
    Checkpoint,
    State,
    Result,
    /// `import::alf::import` of a copied ALF session folder with one file mutated.
    Alf,
    /// `import::nwb::import` of a mutated `.nwb` (HDF5) file.
    Nwb,
}

const TARGETS: [Target; 11] = [
    Target::Npy,
    Target::Npz,
    Target::Manifest,
    Target::Spikes,
    Target::Plan,
    Target::Config,
    Target::Checkpoint,
    Target::State,
    Target::Result,
    Target::Alf,
    Target::Nwb,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mutation {
    Truncate,
    Flip,
    Header,
    Huge,
    Special,
    Nest,
    /// No change: the valid inputs themselves (checked once before the cases).
    Keep,
}

const MUTATIONS: [Mutation; 6] = [
    Mutation::Truncate,
    Mutation::Flip,
    Mutation::Header,
    Mutation::Huge,
    Mutation::Special,
    Mutation::Nest,
];

fn class_of(case: u64) -> (Target, Mutation) {
    let k = (case % (TARGETS.len() * MUTATIONS.len()) as u64) as usize;
    (TARGETS[k % TARGETS.len()], MUTATIONS[k / TARGETS.len()])
}

// ---------------------------------------------------------------------------------------------
// The parent: runs the child, watches it, tallies.

#[derive(Default)]
struct Tally {
    cases: u64,
    accepted: u64,
    refused: u64,
    panics: u64,
    aborts: u64,
    hangs: u64,
    wrong_kind: u64,
    per_class: BTreeMap<String, u64>,
    failures: Vec<String>,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
    )
}

/// What one run of cases is: which cases, until when, with which per-case limit, and whether
/// they are the real cases or the harness's self-check.
struct Run<'a> {
    seed: u64,
    start: u64,
    end: u64,
    deadline: Option<Instant>,
    limit: Duration,
    selfcheck: bool,
    work: &'a Path,
}

fn parent() {
    let seed = env_u64("NDT_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let start = env_u64("NDT_FUZZ_START").unwrap_or(0);
    let seconds = env_u64("NDT_FUZZ_SECONDS");
    let cases = env_u64("NDT_FUZZ_CASES").unwrap_or(if seconds.is_some() {
        u64::MAX / 2
    } else {
        DEFAULT_CASES
    });
    let end = start.saturating_add(cases);
    let work =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    // The harness first shows it catches each kind of failure: a case that returns, panics,
    // returns an internal error, overflows its stack, hangs, and allocates without bound.
    let check = run_cases(&Run {
        seed,
        start: 0,
        end: SELFCHECK_CASES,
        deadline: None,
        limit: Duration::from_secs(3),
        selfcheck: true,
        work: &work,
    });
    assert_eq!(
        (
            check.accepted,
            check.panics,
            check.wrong_kind,
            check.aborts,
            check.hangs
        ),
        (1, 1, 1, 2, 1),
        "the harness missed a failure it must catch: {:?}",
        check.failures
    );

    let t0 = Instant::now();
    let tally = run_cases(&Run {
        seed,
        start,
        end,
        deadline: seconds.map(|s| t0 + Duration::from_secs(s)),
        limit: CASE_LIMIT,
        selfcheck: false,
        work: &work,
    });
    let _ = std::fs::remove_dir_all(&work);
    let secs = t0.elapsed().as_secs_f64();
    let classes = tally.per_class.len();
    println!(
        "fuzz: seed {seed:#x}, cases {start}..{}: {} cases in {secs:.1} s, {classes} classes; \
         {} accepted, {} refused (exit-1 errors); {} panics, {} aborts, {} hangs, {} wrong error \
         kinds",
        start + tally.cases,
        tally.cases,
        tally.accepted,
        tally.refused,
        tally.panics,
        tally.aborts,
        tally.hangs,
        tally.wrong_kind
    );
    for (class, n) in &tally.per_class {
        println!("  {class:<22} {n}");
    }
    if !tally.failures.is_empty() {
        for f in tally.failures.iter().take(40) {
            eprintln!("FAIL {f}");
        }
        panic!(
            "{} of {} fuzz cases failed (replay one with NDT_FUZZ_SEED={seed} NDT_FUZZ_START=<case> \
             NDT_FUZZ_CASES=1)",
            tally.failures.len(),
            tally.cases
        );
    }
    if seconds.is_none() {
        assert_eq!(tally.cases, cases, "not every case ran");
    }
}

/// Runs cases `run.start..run.end` in child processes, restarting after a child that died or
/// hung, and tallies them.
fn run_cases(run: &Run) -> Tally {
    let exe = std::env::current_exe().unwrap();
    let mut tally = Tally::default();
    let mut next = run.start;
    while next < run.end && run.deadline.is_none_or(|d| Instant::now() < d) {
        let remaining = run
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        let mut child = Command::new(&exe)
            .env(
                CHILD_ENV,
                format!(
                    "{},{next},{},{},{},{}",
                    run.seed,
                    run.end,
                    remaining.map_or(0, |r| r.as_millis().max(1)),
                    u8::from(run.selfcheck),
                    run.work.display()
                ),
            )
            .stdout(Stdio::piped())
            .stderr(if run.selfcheck {
                Stdio::null()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let mut current: Option<u64> = None;
        let mut last = next;
        // The case limit runs from the child's last line, less the time its threads waited
        // for a CPU; before its first case, the set-up limit.
        let mut ready = false;
        let mut since = (Instant::now(), runnable_wait(child.id()));
        loop {
            match rx.recv_timeout(Duration::from_millis(250)) {
                Ok(line) => {
                    since = (Instant::now(), runnable_wait(child.id()));
                    let mut it = line.splitn(4, ' ');
                    let tag = it.next().unwrap_or("");
                    let i: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
                    match tag {
                        "B" => ready = true,
                        "S" => current = Some(i),
                        "R" => {
                            let outcome = it.next().unwrap_or("");
                            let detail = it.next().unwrap_or("");
                            record(&mut tally, run.selfcheck, i, outcome, detail);
                            current = None;
                            last = i + 1;
                        }
                        _ => {}
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let waited_for_cpu = runnable_wait(child.id()).saturating_sub(since.1);
                    let ran = since.0.elapsed().saturating_sub(waited_for_cpu);
                    if ran < if ready { run.limit } else { SETUP_LIMIT } {
                        continue;
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    let i = current.unwrap_or(last);
                    record(
                        &mut tally,
                        run.selfcheck,
                        i,
                        "hang",
                        "no result within the case limit",
                    );
                    current = None;
                    last = i + 1;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().unwrap();
                    if let Some(i) = current {
                        record(
                            &mut tally,
                            run.selfcheck,
                            i,
                            "abort",
                            &format!("the child died: {status}"),
                        );
                        current = None;
                        last = i + 1;
                    } else if !status.success() {
                        panic!("fuzz child failed outside any case: {status}");
                    }
                    break;
                }
            }
        }
        // A child that ran out of cases or time ends without progress past `next`.
        if current.is_none() && last == next {
            break;
        }
        next = last;
    }
    tally
}

/// The time the threads of process `pid` have spent waiting on a run queue (runnable, but not
/// running: the machine was busy), summed from `/proc/PID/task/*/schedstat`; zero where that is
/// not readable, so the limits are then plain wall time.
fn runnable_wait(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

fn record(t: &mut Tally, selfcheck: bool, case: u64, outcome: &str, detail: &str) {
    let (target, mutation) = if selfcheck {
        (Target::Npy, Mutation::Keep)
    } else {
        class_of(case)
    };
    if std::env::var_os("NDT_FUZZ_VERBOSE").is_some() {
        println!("case {case} {target:?}/{mutation:?}: {outcome} {detail}");
    }
    t.cases += 1;
    *t.per_class
        .entry(format!("{target:?}/{mutation:?}"))
        .or_default() += 1;
    let fail = |t: &mut Tally| {
        t.failures.push(format!(
            "case {case} {target:?}/{mutation:?}: {outcome}: {detail}"
        ))
    };
    match outcome {
        "ok" => t.accepted += 1,
        "refused" => t.refused += 1,
        "panic" => {
            t.panics += 1;
            fail(t);
        }
        "wrong-kind" => {
            t.wrong_kind += 1;
            fail(t);
        }
        "hang" => {
            t.hangs += 1;
            fail(t);
        }
        _ => {
            t.aborts += 1;
            fail(t);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The child: builds the valid inputs once, then runs cases.

fn child(spec: &str) {
    let mut parts = spec.splitn(6, ',');
    let mut num = || -> u64 { parts.next().and_then(|v| v.parse().ok()).unwrap() };
    let (seed, start, end, millis, selfcheck) = (num(), num(), num(), num(), num() == 1);
    let work = PathBuf::from(parts.next().unwrap());
    let deadline = (millis > 0).then(|| Instant::now() + Duration::from_millis(millis));
    let lim = libc::rlimit {
        rlim_cur: ADDRESS_LIMIT,
        rlim_max: ADDRESS_LIMIT,
    };
    // SAFETY: lowers this process's own address-space limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
    let last_panic = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let last_panic = last_panic.clone();
        std::panic::set_hook(Box::new(move |info| {
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            *last_panic.lock().unwrap() = format!("{msg}{at}").replace('\n', " ");
        }));
    }
    let base = work.join(format!("base-{}", std::process::id()));
    let bases = Bases::build(&base);
    // Every reader accepts its unmutated input, so the mutations start from valid files.
    for target in TARGETS {
        for k in 0..8 {
            let dir = work.join(format!("case-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut rng = Rng::for_case(seed, k);
            if let Err(e) = run_case(&bases, &dir, target, Mutation::Keep, &mut rng) {
                panic!("{target:?}: the valid input is refused: {e}");
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    use std::io::Write;
    writeln!(stdout, "B 0").unwrap();
    stdout.flush().unwrap();
    let mut i = start;
    while i < end && deadline.is_none_or(|d| Instant::now() < d) {
        writeln!(stdout, "S {i}").unwrap();
        stdout.flush().unwrap();
        let dir = work.join(format!("case-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (target, mutation) = class_of(i);
        let mut rng = Rng::for_case(seed, i);
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if selfcheck {
                selfcheck_case(i)
            } else {
                run_case(&bases, &dir, target, mutation, &mut rng)
            }
        }));
        let (outcome, detail) = match res {
            Ok(Ok(())) => ("ok", String::new()),
            Ok(Err(e)) => judge(&e, &dir),
            Err(_) => ("panic", last_panic.lock().unwrap().clone()),
        };
        writeln!(stdout, "R {i} {outcome} {}", detail.replace('\n', " ")).unwrap();
        stdout.flush().unwrap();
        i += 1;
    }
    let _ = std::fs::remove_dir_all(work.join(format!("case-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&base);
}

/// Cases of the harness's self-check.
const SELFCHECK_CASES: u64 = 6;

/// Self-check case `i`: one of each outcome the harness must tell apart.
fn selfcheck_case(i: u64) -> R {
    match i {
        0 => Ok(()),
        1 => panic!("a panicking reader"),
        2 => Err(ndt::error::internal("a reader reporting an internal error")),
        3 => {
            fn down(n: u64) -> u64 {
                let pad = std::hint::black_box([n; 64]);
                if n == 0 { 0 } else { down(n - 1) + pad[7] }
            }
            std::hint::black_box(down(std::hint::black_box(u64::MAX)));
            Ok(())
        }
        4 => {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(())
        }
        _ => {
            // An allocation sized by a hostile count: refused by the address-space limit.
            let v = vec![1u8; std::hint::black_box(ADDRESS_LIMIT as usize * 2)];
            std::hint::black_box(&v);
            Ok(())
        }
    }
}

/// An error passes when it is a user error (exit 1); an `Input` or `Io` error must also name a
/// file of the case.
fn judge(e: &Error, dir: &Path) -> (&'static str, String) {
    if e.exit_code() != 1 {
        return ("wrong-kind", format!("exit {}: {e}", e.exit_code()));
    }
    match e {
        Error::Input { path, .. } | Error::Io { path, .. } if !path.starts_with(dir) => (
            "wrong-kind",
            format!(
                "names {} instead of a file of the case: {e}",
                path.display()
            ),
        ),
        _ => ("refused", e.to_string()),
    }
}

/// The valid inputs every mutation starts from.
struct Bases {
    /// `.npy` files (name, bytes): counts in several dtypes and orders, strings, per-trial arrays.
    npy: Vec<(String, Vec<u8>)>,
    /// `.npz` sessions (deflated and stored).
    npz: Vec<Vec<u8>>,
    /// A dataset directory of two sessions (manifest + arrays).
    dataset: PathBuf,
    plan: String,
    config: String,
    checkpoint: Vec<u8>,
    state: Vec<u8>,
    results: Vec<String>,
    /// ALF session folders (relative to `fixtures/alf/good`) that import with the defaults.
    alf: Vec<&'static str>,
    /// `.nwb` files that import with the defaults.
    nwb: Vec<(&'static str, Vec<u8>)>,
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

fn tiny_config() -> ndt::model::ModelConfig {
    ndt::model::ModelConfig {
        d_model: 8,
        d_tok: 8,
        d_embed_hidden: 16,
        n_layers: 2,
        n_heads: 2,
        d_ff: 16,
        n_bins: 6,
        ln_eps: 1e-5,
        sessions: BTreeMap::from([("a".to_string(), 5), ("b".to_string(), 3)]),
    }
}

impl Bases {
    fn build(dir: &Path) -> Bases {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let mut npy = Vec::new();
        for rel in [
            "npy/c_u8/spikes.npy",
            "npy/c_u8/regions.npy",
            "npy/c_u8/choice.npy",
            "npy/c_u8/reward.npy",
            "npy/fortran_i64/spikes.npy",
            "npy/big_endian/spikes.npy",
            "npy/v3_header/spikes.npy",
            "npy/f64_integral/spikes.npy",
        ] {
            let p = fixture(rel);
            if let Ok(b) = std::fs::read(&p) {
                npy.push((rel.replace('/', "_"), b));
            }
        }
        assert!(npy.len() >= 4, "npy fixtures missing");
        let npz = ["npy/session.npz", "npy/stored.npz"]
            .iter()
            .map(|r| std::fs::read(fixture(r)).unwrap())
            .collect();
        // A dataset of two sessions, written by the importer.
        let dataset = dir.join("ds");
        let args = import_args(
            vec![fixture("npy/c_u8"), fixture("npy/i16")],
            dataset.clone(),
        );
        ndt::import::npy::import(&args).unwrap();
        let plan = "dataset = \"ds\"\nresults = \"res\"\nheldout_last = 1\nsizes = [1, 2, \"all\"]\n\
                    orders = [\"random\", \"ranked\"]\nshuffles = 2\nseeds = [1, 2]\nthreads = 1\n\
                    [model]\npreset = \"small\"\nd_model = 32\nn_heads = 2\n\
                    [pretrain]\nepochs = 3\nlr = 0.001\nbatch_size = 8\nschemes = [\"forward\", \"co-smooth\"]\n\
                    [finetune]\nepochs = 2\nmode = \"frozen-core\"\n[rank]\nepochs = 1\n"
            .to_string();
        let config = "preset = \"small\"\n[model]\nd_model = 32\nd_tok = 32\nd_embed_hidden = 64\n\
                      n_layers = 3\nn_heads = 2\nd_ff = 64\nln_eps = 1e-5\n\
                      [train]\nepochs = 10\nbatch_size = 8\nlr = 0.01\ndropout = 0.1\n\
                      schemes = [\"forward\", \"co-smooth\"]\nval_every = 2\nseed = 7\n"
            .to_string();
        let cfg = tiny_config();
        let table = ndt::model::ParamTable::new(&cfg);
        let params = ndt::model::init::init_params(&cfg, &table, 3);
        let p = dir.join("ckpt.safetensors");
        let meta = BTreeMap::from([("epoch".to_string(), "3".to_string())]);
        ndt::model::checkpoint::save(&p, &cfg, &table, &params, &meta).unwrap();
        let checkpoint = std::fs::read(&p).unwrap();
        let state = ndt::train::state::State {
            config: cfg.clone(),
            counters: ndt::train::state::Counters {
                epoch: 3,
                step: 30,
                best_val: Some(0.5),
                best_epoch: Some(2),
                best_val_bits: Some(0.5f64.to_bits()),
                batch: 0,
                partial: None,
            },
            m: params.iter().map(|x| x * 0.1).collect(),
            v: params.iter().map(|x| x * x).collect(),
            best: Some((params.iter().map(|x| x * 0.5).collect(), meta.clone())),
            params,
        };
        let p = dir.join("state.safetensors");
        ndt::train::state::save(&p, &state).unwrap();
        let state = std::fs::read(&p).unwrap();
        let results = vec![
            "{\n  \"checkpoint\": \"/runs/x/best.safetensors\"\n}".to_string(),
            "{\n  \"forward\": 0.125,\n  \"co_smooth\": 0.25,\n  \"choice\": 0.75\n}".to_string(),
            format!(
                "{{\n  \"results_version\": {v},\n  \"heldout\": \"s1\",\n  \"order\": \"random\",\n  \"shuffle\": 0,\n  \"k\": 2,\n  \
             \"seed\": 42,\n  \"total_trials\": 300,\n  \"full\": false,\n  \"metrics\": {{\"forward\": 0.1}}\n}}",
                v = ndt::exp::jobs::RESULTS_VERSION
            ),
        ];
        let alf = vec![
            "SW002/2023-02-10/002",
            "cortexlab/Subjects/SW001/2023-01-05/001",
        ];
        let nwb = ["trials.nwb", "latest.nwb"]
            .iter()
            .map(|r| (*r, std::fs::read(fixture(&format!("nwb/{r}"))).unwrap()))
            .collect();
        Bases {
            npy,
            npz,
            dataset,
            plan,
            config,
            checkpoint,
            state,
            results,
            alf,
            nwb,
        }
    }
}

fn import_args(paths: Vec<PathBuf>, out: PathBuf) -> ndt::import::npy::Args {
    ndt::import::npy::Args {
        paths,
        out,
        id: None,
        subject: None,
        lab: None,
        clip: false,
        split_seed: 1,
        bin_size: None,
        onset_bin: None,
        min_trials: 1,
    }
}

/// Parses importer flags the way the command line does, so the defaults are the CLI's.
fn cli_args<A: clap::Args>(argv: &[&std::ffi::OsStr]) -> A {
    #[derive(clap::Parser)]
    struct Cli<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }
    let argv = std::iter::once(std::ffi::OsStr::new("ndt")).chain(argv.iter().copied());
    <Cli<A> as clap::Parser>::try_parse_from(argv).unwrap().args
}

/// Every file under `dir` (recursively), sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let dst = to.join(&name);
        if p.is_dir() {
            copy_tree(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One case.

type R = std::result::Result<(), Error>;

fn run_case(b: &Bases, dir: &Path, target: Target, mutation: Mutation, rng: &mut Rng) -> R {
    match target {
        Target::Npy => {
            let (name, base) = rng.pick(&b.npy);
            let p = dir.join(name);
            place(&p, base, Format::Npy, mutation, rng);
            let a = ndt::store::npy::NpyArray::read(&p)?;
            if a.header.dtype.is_numeric() {
                a.to_f64(&p)?;
            } else {
                a.to_strings(&p)?;
            }
            Ok(())
        }
        Target::Npz => {
            let p = dir.join("session.npz");
            if mutation == Mutation::Nest || (mutation == Mutation::Header && rng.chance(1, 2)) {
                // A valid archive whose member is a hostile .npy.
                let (_, spikes) = &b.npy[0];
                let mut member = spikes.clone();
                mutate(&mut member, Format::Npy, mutation, rng);
                std::fs::write(&p, zip_of(&[("spikes.npy", &member)], rng.chance(1, 2))).unwrap();
            } else {
                let base = &b.npz[rng.below(b.npz.len())];
                place(&p, base, Format::Zip, mutation, rng);
            }
            ndt::import::npy::import(&import_args(vec![p], dir.join("out")))?;
            Ok(())
        }
        Target::Manifest => {
            let ds = dir.join("ds");
            copy_tree(&b.dataset, &ds);
            let p = ds.join("manifest.json");
            let text = std::fs::read(&p).unwrap();
            place(&p, &text, Format::Json, mutation, rng);
            if rng.chance(1, 4) && std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                let bytes = std::fs::read(&p).unwrap();
                ndt::store::Manifest::from_bytes(&bytes, &p)?;
            }
            use_dataset(&ds)
        }
        Target::Spikes => {
            let ds = dir.join("ds");
            copy_tree(&b.dataset, &ds);
            let name = *rng.pick(&["spikes.npy", "spikes.npy", "choice.npy", "regions.npy"]);
            let s = *rng.pick(&["0000", "0001"]);
            let p = ds.join("sessions").join(s).join(name);
            let bytes = std::fs::read(&p).unwrap();
            place(&p, &bytes, Format::Npy, mutation, rng);
            use_dataset(&ds)
        }
        Target::Plan => {
            let p = dir.join("plan.toml");
            place(&p, b.plan.as_bytes(), Format::Toml, mutation, rng);
            let plan = ndt::exp::plan::Plan::load(&p)?;
            let ids: Vec<String> = ["s0", "s1", "s2"].iter().map(|s| s.to_string()).collect();
            let sweep = ndt::exp::sweep::Sweep::new(plan, b"{}", &ids, &p)?;
            let _ = sweep.points().len();
            Ok(())
        }
        Target::Config => {
            let p = dir.join("run.toml");
            place(&p, b.config.as_bytes(), Format::Toml, mutation, rng);
            let spec = p.to_string_lossy().into_owned();
            let rc = ndt::train::config::RunConfig::load(&spec)?;
            rc.train.check().map_err(ndt::error::usage)?;
            Ok(())
        }
        Target::Checkpoint => {
            let p = dir.join("ckpt.safetensors");
            place(&p, &b.checkpoint, Format::Safetensors, mutation, rng);
            let (cfg, params, _) = ndt::model::checkpoint::load(&p)?;
            assert_eq!(params.len(), ndt::model::ParamTable::new(&cfg).total);
            assert!(params.iter().all(|x| x.is_finite()), "non-finite accepted");
            Ok(())
        }
        Target::State => {
            let p = dir.join("state.safetensors");
            place(&p, &b.state, Format::Safetensors, mutation, rng);
            let s = ndt::train::state::load(&p)?;
            assert_eq!(s.params.len(), s.m.len());
            Ok(())
        }
        Target::Result => {
            let root = dir.join("res");
            if rng.chance(1, 3) {
                // A point result, read by `gather`.
                let points = root.join("points");
                std::fs::create_dir_all(&points).unwrap();
                let p = points.join("00000_point.json");
                place(&p, b.results[2].as_bytes(), Format::Json, mutation, rng);
                ndt::exp::sweep::gather(&root)?;
            } else {
                let job = ndt::exp::jobs::Job::new(&root, "eval", serde_json::json!({"x": 1}));
                std::fs::create_dir_all(&job.dir).unwrap();
                let base = rng.pick(&b.results[..2]);
                place(
                    &job.result_path(),
                    base.as_bytes(),
                    Format::Json,
                    mutation,
                    rng,
                );
                job.result()?;
            }
            Ok(())
        }
        Target::Alf => {
            let rel = *rng.pick(&b.alf);
            let session = dir.join("src").join(rel);
            copy_tree(&fixture("alf/good").join(rel), &session);
            // One file of the session; deep nesting applies to the .npy files only.
            let files: Vec<PathBuf> = files_under(&session)
                .into_iter()
                .filter(|f| mutation != Mutation::Nest || f.extension().is_some_and(|e| e == "npy"))
                .collect();
            if mutation != Mutation::Keep {
                let p = rng.pick(&files).clone();
                let bytes = std::fs::read(&p).unwrap();
                let format = match p.extension().and_then(|e| e.to_str()) {
                    Some("npy") => Format::Npy,
                    Some("csv") => Format::Csv,
                    _ => Format::Parquet,
                };
                place(&p, &bytes, format, mutation, rng);
            }
            let out = dir.join("out");
            let args: ndt::import::alf::Args =
                cli_args(&[session.as_os_str(), "--out".as_ref(), out.as_os_str()]);
            ndt::import::alf::import(&args)?;
            use_dataset(&out)
        }
        Target::Nwb => {
            let (name, base) = rng.pick(&b.nwb);
            let p = dir.join(name);
            place(&p, base, Format::Hdf5, mutation, rng);
            let out = dir.join("out");
            let args: ndt::import::nwb::Args =
                cli_args(&[p.as_os_str(), "--out".as_ref(), out.as_os_str()]);
            ndt::import::nwb::import(&args)?;
            use_dataset(&out)
        }
    }
}

/// Opens a dataset and reads everything its readers offer.
fn use_dataset(ds: &Path) -> R {
    let d = ndt::store::Dataset::open(ds)?;
    for s in 0..d.n_sessions() {
        let info = d.session(s).clone();
        for t in 0..info.n_trials {
            let _ = d.trial(s, t).len();
        }
        d.choice(s)?;
        for name in &info.behaviour {
            d.behaviour(s, name)?;
        }
    }
    Ok(())
}

/// Writes `base` mutated to `path`, or puts a special file there.
fn place(path: &Path, base: &[u8], format: Format, mutation: Mutation, rng: &mut Rng) {
    let _ = std::fs::remove_file(path);
    if mutation == Mutation::Special {
        special(path, rng);
        return;
    }
    let mut bytes = base.to_vec();
    mutate(&mut bytes, format, mutation, rng);
    std::fs::write(path, bytes).unwrap();
}

/// A FIFO, a symlink to /dev/zero or /dev/null, a directory, a dangling or looping symlink,
/// or an empty file at `path`.
fn special(path: &Path, rng: &mut Rng) {
    use std::os::unix::fs::symlink;
    match rng.below(7) {
        0 | 1 => {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
        }
        2 => symlink("/dev/zero", path).unwrap(),
        3 => symlink("/dev/null", path).unwrap(),
        4 => std::fs::create_dir_all(path).unwrap(),
        5 => {
            if rng.chance(1, 2) {
                symlink(path.with_extension("missing"), path).unwrap();
            } else {
                symlink(path, path).unwrap();
            }
        }
        _ => std::fs::write(path, b"").unwrap(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Npy,
    Zip,
    Json,
    Toml,
    Safetensors,
    /// An ALF `.csv` table (text lines).
    Csv,
    /// An ALF `.pqt` (Parquet) table.
    Parquet,
    /// An NWB (HDF5) file.
    Hdf5,
}

/// Numbers that break careless arithmetic.
const HUGE: [&str; 14] = [
    "1000000000000000",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "4611686018427387904",
    "3074457345618258603",
    "4294967296",
    "-1",
    "0",
    "1e39",
    "-1e308",
    "1e-400",
    "340282366920938463463374607431768211456",
];

fn mutate(bytes: &mut Vec<u8>, format: Format, mutation: Mutation, rng: &mut Rng) {
    match mutation {
        Mutation::Truncate => {
            let n = bytes.len();
            // Mostly inside the header, where the structure is.
            let cut = if rng.chance(1, 2) {
                rng.below(n.min(160))
            } else {
                rng.below(n)
            };
            bytes.truncate(cut);
        }
        Mutation::Flip => {
            let n = bytes.len();
            for _ in 0..1 + rng.below(8) {
                if n == 0 {
                    break;
                }
                let at = if rng.chance(1, 2) {
                    rng.below(n.min(160))
                } else {
                    rng.below(n)
                };
                if rng.chance(1, 2) {
                    bytes[at] ^= 1 << rng.below(8);
                } else {
                    bytes[at] = rng.next() as u8;
                }
            }
        }
        Mutation::Header => header_attack(bytes, format, rng),
        Mutation::Huge => huge_numbers(bytes, format, rng),
        Mutation::Nest => nest(bytes, format, rng),
        Mutation::Special | Mutation::Keep => {}
    }
}

/// Replaces 1-3 decimal numbers of a text (or a text header) with hostile ones.
fn replace_numbers(text: &str, rng: &mut Rng, allow_special: bool) -> String {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            let s = i;
            while i < b.len()
                && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'e' || b[i] == b'-')
            {
                i += 1;
            }
            spans.push((s, i));
        } else {
            i += 1;
        }
    }
    if spans.is_empty() {
        return text.to_string();
    }
    let mut chosen: Vec<(usize, usize)> =
        (0..1 + rng.below(3)).map(|_| *rng.pick(&spans)).collect();
    chosen.sort();
    chosen.dedup();
    let mut out = String::new();
    let mut at = 0;
    for (s, e) in chosen {
        if s < at {
            continue;
        }
        out.push_str(&text[at..s]);
        let v = if allow_special && rng.chance(1, 4) {
            rng.pick(&["nan", "inf", "-inf", "+inf"]).to_string()
        } else {
            rng.pick(&HUGE).to_string()
        };
        out.push_str(&v);
        at = e;
    }
    out.push_str(&text[at..]);
    out
}

/// The header of a `.npy` file (text) and where it starts and ends, if it has one.
fn npy_header(bytes: &[u8]) -> Option<(usize, usize)> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return None;
    }
    let (len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        if bytes.len() < 12 {
            return None;
        }
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    (start + len <= bytes.len()).then_some((start, start + len))
}

/// Rebuilds `bytes` (a .npy) with header text `text`, keeping its data.
fn with_npy_header(bytes: &[u8], text: &str) -> Vec<u8> {
    let data = npy_header(bytes).map_or(&[][..], |(_, e)| &bytes[e..]);
    let mut out = b"\x93NUMPY".to_vec();
    if text.len() < 65_536 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

fn header_attack(bytes: &mut Vec<u8>, format: Format, rng: &mut Rng) {
    match format {
        Format::Npy => match rng.below(4) {
            0 => {
                // A hostile dict.
                let descr = rng.pick(&[
                    "<U4611686018427387904",
                    "<U0",
                    "|S0",
                    "<U1",
                    "<U99999999999999999999",
                    "|O",
                    "<c16",
                    ">i8",
                    "<u2",
                    "|b1",
                    "<f4",
                    "",
                    "<",
                    "U",
                ]);
                let shape = rng.pick(&[
                    "(1000000000000000,)",
                    "(9223372036854775807, 2)",
                    "(4611686018427387904, 4)",
                    "(-1, 6, 5)",
                    "(20, 6, 5)",
                    "(0, 6, 5)",
                    "()",
                    "(20, 6, 5, 1, 1, 1)",
                    "[20, 6, 5]",
                    "(2**10,)",
                    "(20, 6, 5.0)",
                    "('a',)",
                    "(4294967296, 4294967296)",
                ]);
                let fortran = rng.pick(&["False", "True", "1", "None"]);
                let mut text = format!(
                    "{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}"
                );
                if rng.chance(1, 4) {
                    text = text.replace("'descr'", "'desc'");
                }
                if rng.chance(1, 4) {
                    text = format!(
                        "{{'descr': [('a', '<i4'), ('b', '{descr}')], 'fortran_order': False, 'shape': {shape}}}"
                    );
                }
                text.push('\n');
                *bytes = with_npy_header(bytes, &text);
            }
            1 => {
                // A header length beyond the file, or zero.
                if bytes.len() >= 10 {
                    let v = *rng.pick(&[0u16, 1, 0xffff, 0x8000]);
                    bytes[8..10].copy_from_slice(&v.to_le_bytes());
                }
            }
            2 => {
                // A version 2.0 header length of up to 4 GiB.
                if bytes.len() >= 12 {
                    bytes[6] = *rng.pick(&[2u8, 3]);
                    let v = *rng.pick(&[u32::MAX, 1 << 31, 1 << 20, 0]);
                    bytes.splice(8..10, v.to_le_bytes());
                }
            }
            _ => {
                // Version bytes and the magic.
                if bytes.len() >= 8 {
                    let at = rng.below(8);
                    bytes[at] = rng.next() as u8;
                }
            }
        },
        Format::Zip => zip_attack(bytes, rng),
        Format::Parquet => parquet_attack(bytes, false, rng),
        Format::Hdf5 => hdf5_extents(bytes, rng),
        Format::Json | Format::Toml | Format::Csv => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            let k = rng.below(lines.len());
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            match rng.below(5) {
                0 => {
                    out.remove(k);
                }
                1 => {
                    let l = out[k].clone();
                    out.insert(k, l);
                }
                2 => {
                    // Swap a value for another type.
                    let sep = match format {
                        Format::Json => ':',
                        Format::Csv => ',',
                        _ => '=',
                    };
                    if let Some(at) = out[k].find(sep) {
                        let repl = if format == Format::Json {
                            *rng.pick(&["[]", "{}", "null", "\"x\"", "true", "[1, 2]", "-0"])
                        } else {
                            *rng.pick(&[
                                "[]",
                                "{}",
                                "\"x\"",
                                "true",
                                "[1, \"a\"]",
                                "1979-05-27T07:32:00Z",
                                "{ a = 1 }",
                            ])
                        };
                        let comma = if format == Format::Json && out[k].trim_end().ends_with(',') {
                            ","
                        } else {
                            ""
                        };
                        out[k] = format!("{}{sep} {repl}{comma}", &out[k][..at]);
                    }
                }
                3 => {
                    // The whole document replaced by another shape.
                    out = vec![
                        rng.pick(&[
                            "[]",
                            "[1, 2, 3]",
                            "3",
                            "\"text\"",
                            "null",
                            "x = 1",
                            "[table]",
                            "",
                        ])
                        .to_string(),
                    ];
                }
                _ => {
                    // A key renamed.
                    if let Some(at) = out[k].find(['"', '=', ',']) {
                        out[k].insert_str(at + 1, "zz");
                    }
                }
            }
            *bytes = out.join("\n").into_bytes();
        }
        Format::Safetensors => {
            if bytes.len() < 8 {
                return;
            }
            match rng.below(3) {
                0 => {
                    // The header length (u64).
                    let v = *rng.pick(&[u64::MAX, 1 << 40, 100_000_001, 0, 1, 7]);
                    bytes[..8].copy_from_slice(&v.to_le_bytes());
                }
                _ => {
                    // Shapes, offsets and dtypes inside the header JSON.
                    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
                    if 8 + n > bytes.len() {
                        return;
                    }
                    let text = String::from_utf8_lossy(&bytes[8..8 + n]).into_owned();
                    let text = match rng.below(3) {
                        0 => replace_numbers(&text, rng, false),
                        1 => {
                            let to = *rng.pick::<&str>(&["\"F64\"", "\"U8\"", "\"BOOL\"", "\"X\""]);
                            text.replacen("\"F32\"", to, 1)
                        }
                        _ => {
                            let to = *rng.pick::<&str>(&[
                                "\"shape\":[4611686018427387904,",
                                "\"shape\":[0,",
                                "\"shape\":[1000000000000000,",
                            ]);
                            text.replacen("\"shape\":[", to, 1)
                        }
                    };
                    let mut out = (text.len() as u64).to_le_bytes().to_vec();
                    out.extend_from_slice(text.as_bytes());
                    out.extend_from_slice(&bytes[8 + n..]);
                    *bytes = out;
                }
            }
        }
    }
}

/// Overwrites size, offset and count fields of a zip's headers (local, central, end record).
fn zip_attack(bytes: &mut [u8], rng: &mut Rng) {
    let find_all = |sig: &[u8]| -> Vec<usize> {
        bytes
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == sig)
            .map(|(i, _)| i)
            .collect()
    };
    let locals = find_all(b"PK\x03\x04");
    let centrals = find_all(b"PK\x01\x02");
    let ends = find_all(b"PK\x05\x06");
    let v32 = *rng.pick(&[0u32, 1, 100, 0xffff_ffff, 0x7fff_ffff, 1 << 30]);
    let put32 = |bytes: &mut [u8], at: usize| {
        if at + 4 <= bytes.len() {
            bytes[at..at + 4].copy_from_slice(&v32.to_le_bytes());
        }
    };
    match rng.below(4) {
        0 if !centrals.is_empty() => {
            // Central directory: compressed size (+20), uncompressed size (+24), local offset (+42).
            let c = *rng.pick(&centrals);
            put32(bytes, c + *rng.pick(&[20usize, 24, 42]));
        }
        1 if !locals.is_empty() => {
            let l = *rng.pick(&locals);
            put32(bytes, l + *rng.pick(&[18usize, 22, 26]));
        }
        2 if !ends.is_empty() => {
            // End record: entry counts (+8, +10), directory size (+12) and offset (+16).
            let e = *rng.pick(&ends);
            let at = e + *rng.pick(&[8usize, 10, 12, 16]);
            if at + 2 <= bytes.len() {
                let v = rng.next() as u16;
                bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        _ if !centrals.is_empty() && !locals.is_empty() => {
            // Both declared uncompressed sizes of one member set to the same lie.
            let k = rng.below(centrals.len().min(locals.len()));
            put32(bytes, centrals[k] + 24);
            put32(bytes, locals[k] + 22);
        }
        _ => {}
    }
}

fn huge_numbers(bytes: &mut Vec<u8>, format: Format, rng: &mut Rng) {
    match format {
        Format::Npy => {
            if let Some((s, e)) = npy_header(bytes) {
                let text = String::from_utf8_lossy(&bytes[s..e]).into_owned();
                let text = replace_numbers(&text, rng, false);
                *bytes = with_npy_header(bytes, &text);
            }
        }
        Format::Zip => zip_attack(bytes, rng),
        Format::Parquet => parquet_attack(bytes, true, rng),
        Format::Hdf5 => hdf5_fields(bytes, rng),
        Format::Json | Format::Toml | Format::Csv => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            *bytes = replace_numbers(&text, rng, format == Format::Toml).into_bytes();
        }
        Format::Safetensors => {
            // Numbers of the header JSON, including the model config in its metadata.
            if bytes.len() < 8 {
                return;
            }
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            if 8 + n > bytes.len() {
                return;
            }
            let text = String::from_utf8_lossy(&bytes[8..8 + n]).into_owned();
            let text = replace_numbers(&text, rng, false);
            let mut out = (text.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(&bytes[8 + n..]);
            *bytes = out;
        }
    }
}

fn nest(bytes: &mut Vec<u8>, format: Format, rng: &mut Rng) {
    let depth = *rng.pick(&[40usize, 129, 1000, 32_000, 100_000]);
    let open = match format {
        Format::Npy => *rng.pick(&["(", "[", "{'a': "]),
        Format::Json | Format::Safetensors => *rng.pick(&["[", "{\"a\": "]),
        Format::Toml => *rng.pick(&["[", "{ a = "]),
        Format::Zip => "(",
        Format::Hdf5 => return hdf5_superblock(bytes, rng),
        // Not drawn: nesting picks a session's .npy files only.
        Format::Csv | Format::Parquet => return,
    };
    let deep = open.repeat(depth);
    match format {
        Format::Npy | Format::Zip => {
            let text = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {deep}}}\n");
            *bytes = with_npy_header(bytes, &text);
        }
        Format::Json => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            *bytes = match text.find(':') {
                Some(at) if rng.chance(3, 4) => {
                    format!("{} {deep}{}", &text[..=at], &text[at + 1..])
                }
                _ => deep,
            }
            .into_bytes();
        }
        Format::Toml => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            *bytes = format!("deep = {deep}\n{text}").into_bytes();
        }
        Format::Hdf5 | Format::Csv | Format::Parquet => {}
        Format::Safetensors => {
            let text = format!("{{\"a\": {deep}}}");
            let mut out = (text.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(text.as_bytes());
            *bytes = out;
        }
    }
}

/// Sizes that break careless arithmetic, as binary fields.
const HUGE_U64: [u64; 10] = [
    u64::MAX,
    u64::MAX - 1,
    1 << 63,
    (1 << 63) - 1,
    1 << 62,
    1 << 32,
    1 << 40,
    1_000_000_000_000_000,
    3_074_457_345_618_258_603,
    0,
];

/// A Parquet file's footer: its length field (the 4 bytes before the closing `PAR1`) or the
/// magic (`header`), or 1-3 varints of its Thrift metadata overwritten with huge values
/// (`huge`).
fn parquet_attack(bytes: &mut [u8], huge: bool, rng: &mut Rng) {
    let n = bytes.len();
    if n < 12 {
        return;
    }
    let flen = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    if !huge {
        match rng.below(3) {
            0 | 1 => {
                let v = *rng.pick(&[0u32, 1, 8, u32::MAX, 1 << 31, (n - 7) as u32]);
                bytes[n - 8..n - 4].copy_from_slice(&v.to_le_bytes());
            }
            _ => {
                let at = if rng.chance(1, 2) {
                    rng.below(4)
                } else {
                    n - 4 + rng.below(4)
                };
                bytes[at] = rng.next() as u8;
            }
        }
        return;
    }
    let start = (n - 8).saturating_sub(flen);
    for _ in 0..1 + rng.below(3) {
        let at = start + rng.below(n - 8 - start);
        // A zigzag varint of a huge value (up to 10 bytes), overwriting what was there.
        let v = *rng.pick(&HUGE_U64);
        let mut z = v;
        let mut enc = Vec::new();
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                enc.push(byte);
                break;
            }
            enc.push(byte | 0x80);
        }
        for (k, b) in enc.into_iter().enumerate() {
            if at + k < n - 8 {
                bytes[at + k] = b;
            }
        }
    }
}

/// Where the dimensions of the HDF5 dataspace messages start (version 1 messages in version 1
/// object headers, version 2 messages in either), found by their byte pattern.
fn hdf5_dataspaces(bytes: &[u8]) -> Vec<(usize, usize, bool)> {
    let mut out = Vec::new();
    for i in 8..bytes.len().saturating_sub(16) {
        let (v, rank, flags) = (bytes[i], bytes[i + 1] as usize, bytes[i + 2]);
        if !(1..=3).contains(&rank) || flags > 1 {
            continue;
        }
        if v == 1 && bytes[i + 3..i + 8] == [0; 5] && bytes[i - 8..i - 6] == [1, 0] {
            out.push((i + 8, rank, flags == 1));
        } else if v == 2 && bytes[i + 3] == 1 && (bytes[i - 4] == 1 || bytes[i - 6] == 1) {
            out.push((i + 4, rank, flags == 1));
        }
    }
    out
}

/// A dataset's extent patched: one dimension (or maximum dimension) of a dataspace message
/// set to a huge value, zero, or a count larger than the data by one.
fn hdf5_extents(bytes: &mut [u8], rng: &mut Rng) {
    let spaces = hdf5_dataspaces(bytes);
    if spaces.is_empty() {
        return hdf5_fields(bytes, rng);
    }
    for _ in 0..1 + rng.below(2) {
        let (at, rank, has_max) = *rng.pick(&spaces);
        let k = rng.below(if has_max { 2 * rank } else { rank });
        let p = at + 8 * k;
        if p + 8 > bytes.len() {
            continue;
        }
        let old = u64::from_le_bytes(bytes[p..p + 8].try_into().unwrap());
        let v = if rng.chance(1, 3) {
            old.wrapping_add(1 + rng.below(1000) as u64)
        } else {
            *rng.pick(&HUGE_U64)
        };
        bytes[p..p + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// 1-3 little-endian 8-byte fields holding small sizes, lengths or addresses (1..2^24)
/// replaced by huge values.
fn hdf5_fields(bytes: &mut [u8], rng: &mut Rng) {
    let fields: Vec<usize> = (0..bytes.len().saturating_sub(8))
        .filter(|&i| {
            let v = u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
            (1..1 << 24).contains(&v) && i % 4 == 0
        })
        .collect();
    if fields.is_empty() {
        return;
    }
    for _ in 0..1 + rng.below(3) {
        let p = *rng.pick(&fields);
        let v = *rng.pick(&HUGE_U64);
        bytes[p..p + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// The superblock: its version, the sizes of offsets and lengths, and the base, end-of-file
/// and root group addresses (version 0 and 2/3 layouts), set to hostile values.
fn hdf5_superblock(bytes: &mut [u8], rng: &mut Rng) {
    if bytes.len() < 96 {
        return;
    }
    let v0 = bytes[8] < 2;
    match rng.below(3) {
        0 => {
            let at = if v0 {
                *rng.pick(&[8usize, 13, 14])
            } else {
                *rng.pick(&[8usize, 9, 10])
            };
            bytes[at] = *rng.pick(&[0u8, 1, 2, 3, 4, 7, 16, 255]);
        }
        _ => {
            let at = if v0 {
                *rng.pick(&[24usize, 40, 64])
            } else {
                *rng.pick(&[12usize, 28, 36])
            };
            let v = if rng.chance(1, 3) {
                // Addresses that point back into the superblock or just past the file.
                *rng.pick(&[0u64, 8, bytes.len() as u64, bytes.len() as u64 - 1])
            } else {
                *rng.pick(&HUGE_U64)
            };
            bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// A zip archive of `members`, deflated or stored.
fn zip_of(members: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}
