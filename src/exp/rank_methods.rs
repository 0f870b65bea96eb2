//! Ways of ranking the pretraining pool for a held-out session (`ndt rank --method`, the plan's
//! `rank_method`; docs/ranking.md), each recording what it cost:
//!
//! - `full`: the paper's procedure (Sec. 4.1): one single-session model per pool session, each
//!   finetuned `frozen-core` on the held-out train split for the plan's `[rank] epochs` and scored
//!   by forward-prediction bps on its val split.
//! - `short:N`: the same with the frozen-core finetunes cut to N epochs (the single-session
//!   models are shared with `full`).
//! - `psth`: trains nothing. For each region both sessions record, the Pearson correlation of the
//!   region's mean PSTH (train trials, split by choice), summed over shared regions and divided by
//!   the number of regions either session records.
//! - `subspace`: trains nothing. For each shared region, the mean squared canonical correlation of
//!   the two sessions' low-dimensional temporal subspaces (top principal components in time of
//!   the region's condition-averaged, centred, soft-normalised PSTHs), combined over regions as
//!   `psth` does. It mirrors the definition of the synthetic ground truth
//!   (`synth::similarity`), measured from spikes instead of the generator's latents.
//! - `stitch`: trains nothing beyond `full`'s single-session models. Each pool session's model
//!   gets stitchers for the held-out session built from its own by region correspondence
//!   (`exp::rank_stitch`), no gradient step, and is scored by val forward bps as `full` is.
//!
//! Every ranking is written to `RESULTS/rankings/<held-out>.json` (`full`, read by the sweep and
//! the report) or `RESULTS/rankings/<method>/<held-out>.json` (the others), with `method`,
//! `cpu_s` and `trained`.

use crate::error::{Result, input, internal, usage};
use crate::exp::jobs::{Claim, Job, RESULTS_VERSION, finish_all};
use crate::exp::plan::Stage;
use crate::exp::sweep::{FinetuneEval, Sweep, Work, sort_ranking};
use crate::fsutil::write_atomic;
use crate::store::{Dataset, SplitName, check_id};
use crate::train::group::PerDevice;
use serde_json::{Value, json};

/// Default epochs of the `short` method's frozen-core finetunes.
pub const DEFAULT_SHORT_EPOCHS: usize = 2;
/// Most epochs `short:N` accepts.
pub const MAX_SHORT_EPOCHS: usize = 10_000;
/// Principal components per region compared by `subspace`.
const SUBSPACE_DIMS: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Full,
    Short(usize),
    Psth,
    Subspace,
    Stitch,
}

impl Method {
    /// Every method name `parse` accepts.
    pub const NAMES: &'static str = "full, short (or short:N), psth, subspace, stitch";

    /// `full`, `short` (`short_epochs` epochs, else [`DEFAULT_SHORT_EPOCHS`]), `short:N`,
    /// `psth`, `subspace`, `stitch`; anything else is a usage error.
    pub fn parse(s: &str, short_epochs: Option<usize>) -> Result<Method> {
        let m = match s {
            "full" => Method::Full,
            "psth" => Method::Psth,
            "subspace" => Method::Subspace,
            "stitch" => Method::Stitch,
            "short" => Method::Short(short_epochs.unwrap_or(DEFAULT_SHORT_EPOCHS)),
            _ => match s.strip_prefix("short:").map(str::parse::<usize>) {
                Some(Ok(n)) => Method::Short(n),
                _ => {
                    return Err(usage(format!(
                        "unknown ranking method `{s}` (known: {})",
                        Self::NAMES
                    )));
                }
            },
        };
        if let Method::Short(n) = m
            && !(1..=MAX_SHORT_EPOCHS).contains(&n)
        {
            return Err(usage(format!(
                "ranking method short: {n} epochs (1 to {MAX_SHORT_EPOCHS})"
            )));
        }
        Ok(m)
    }

    pub fn name(&self) -> String {
        match self {
            Method::Full => "full".into(),
            Method::Short(n) => format!("short:{n}"),
            Method::Psth => "psth".into(),
            Method::Subspace => "subspace".into(),
            Method::Stitch => "stitch".into(),
        }
    }

    /// The folder under `RESULTS/rankings` its files go to (a valid id).
    fn folder(&self) -> String {
        match self {
            Method::Full => String::new(),
            Method::Short(n) => format!("short{n}"),
            m => m.name(),
        }
    }

    /// Whether it trains nothing and reads only the data.
    pub fn data_only(&self) -> bool {
        matches!(self, Method::Psth | Method::Subspace)
    }
}

/// A ranking of the pool for one held-out session, best first, with its cost.
#[derive(Clone, Debug)]
pub struct Ranked {
    pub method: Method,
    pub heldout: String,
    pub scores: Vec<(String, f64)>,
    /// CPU seconds (user + system, all threads) the ranking took, counting the single-session
    /// models it needs; NaN when a cached job did not record its cost.
    pub cpu_s: f64,
    /// Of `cpu_s`, the single-session models'.
    pub single_cpu_s: f64,
    /// What it trained, in words.
    pub trained: String,
    pub warnings: Vec<String>,
}

/// CPU seconds (user + system, every thread) this process has used so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    if rc != 0 {
        return f64::NAN;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Ranks the pool for `heldout` by `method`, writes the ranking file and returns it.
pub fn rank(sweep: &Sweep, heldout: &str, method: &Method, w: &dyn Work) -> Result<Ranked> {
    check_id("held-out session id", heldout).map_err(usage)?;
    let r = match method {
        Method::Full => finetune_ranking(sweep, heldout, &sweep.plan.rank, w)?,
        Method::Short(n) => {
            let mut stage = sweep.plan.rank.clone();
            stage.epochs = *n;
            let mut r = finetune_ranking(sweep, heldout, &stage, w)?;
            r.method = method.clone();
            r
        }
        Method::Psth | Method::Subspace => data_ranking(sweep, heldout, method)?,
        Method::Stitch => stitch_ranking(sweep, heldout, w)?,
    };
    write_ranking(sweep, &r, "rankings")?;
    Ok(r)
}

/// The pool's single-session models (trained once, shared by every model-based method), then
/// `score(s, single, ckpt)` per pool session: a job whose result holds the session's val
/// `forward` bps and its `cpu_s`. Best first, a session without a finite score last with a
/// warning on stderr; the cost counts the single-session models and the scoring jobs.
fn pool_ranking(
    sweep: &Sweep,
    heldout: &str,
    w: &dyn Work,
    method: Method,
    trained: String,
    mut score: impl FnMut(&str, &Job, &std::path::Path) -> Result<Value>,
) -> Result<Ranked> {
    let mut scores = Vec::new();
    let (mut single_cpu, mut own_cpu) = (0.0, 0.0);
    for s in &sweep.pool {
        let single = sweep.single_job(s);
        let ckpt = sweep.run_pretrain(&single, w)?;
        single_cpu += single
            .result()?
            .and_then(|r| r.get("cpu_s").and_then(Value::as_f64))
            .unwrap_or(f64::NAN);
        let r = score(s, &single, &ckpt)?;
        own_cpu += r["cpu_s"].as_f64().unwrap_or(f64::NAN);
        scores.push((s.clone(), r["forward"].as_f64().unwrap_or(f64::NAN)));
    }
    sort_ranking(&mut scores);
    let warnings = warn_non_finite(heldout, &scores);
    Ok(Ranked {
        method,
        heldout: heldout.to_string(),
        scores,
        cpu_s: single_cpu + own_cpu,
        single_cpu_s: single_cpu,
        trained,
        warnings,
    })
}

/// The single-session models of the pool (trained once, shared), each finetuned frozen-core on
/// `heldout`'s train split with `stage` and scored by val forward bps; best first, a session
/// without a finite score last with a warning on stderr.
pub fn finetune_ranking(
    sweep: &Sweep,
    heldout: &str,
    stage: &Stage,
    w: &dyn Work,
) -> Result<Ranked> {
    check_id("held-out session id", heldout).map_err(usage)?;
    let rs = RankStage::new(sweep, stage)?;
    let n = sweep.pool.len();
    let trained = format!(
        "{n} single-session models ({} epochs) + {n} frozen-core finetunes ({} epochs)",
        sweep.plan.single.epochs, stage.epochs
    );
    if w.models_per_device() != PerDevice::K(1) {
        finetune_side_by_side(sweep, &[heldout.to_string()], stage, w)?;
    }
    pool_ranking(
        sweep,
        heldout,
        w,
        Method::Full,
        trained,
        |_, single, ckpt| {
            rs.job(sweep, single, heldout).run(|work| {
                let t0 = cpu_seconds();
                let mut m = json!(w.finetune_eval(&rs.request(heldout, ckpt), work)?);
                m["cpu_s"] = json!(cpu_seconds() - t0);
                Ok(m)
            })
        },
    )
}

/// What the ranking finetunes of one stage share: the seed, the stage (frozen-core unless it
/// says otherwise) and its JSON in the jobs' specs.
struct RankStage {
    seed: u64,
    json: Value,
    stage: Stage,
}

impl RankStage {
    fn new(sweep: &Sweep, stage: &Stage) -> Result<RankStage> {
        let json = serde_json::to_value(stage).map_err(|e| internal(e.to_string()))?;
        let mut st = stage.clone();
        st.mode.get_or_insert_with(|| "frozen-core".into());
        Ok(RankStage {
            seed: sweep.plan.seeds.first().copied().unwrap_or(42),
            json,
            stage: st,
        })
    }

    /// The job of finetuning the single-session model of `single` on `heldout`.
    fn job(&self, sweep: &Sweep, single: &Job, heldout: &str) -> Job {
        let spec = json!({"base": single.spec, "heldout": heldout, "stage": self.json,
        "seed": self.seed, "split": "val"});
        Job::new(sweep.root(), "rankft", spec)
    }

    /// What that job asks of the work: finetune `ckpt` on `heldout`, score val forward bps.
    fn request<'r>(&'r self, heldout: &'r str, ckpt: &'r std::path::Path) -> FinetuneEval<'r> {
        FinetuneEval {
            ckpt: Some(ckpt),
            session: heldout,
            stage: &self.stage,
            seed: self.seed,
            split: "val",
            only_forward: true,
            baselines: false,
        }
    }
}

/// The frozen-core finetunes of the rankings of `heldouts` with `stage` (`full`'s, or `short`'s)
/// that no process has run or is running, trained side by side in one group
/// (`Work::finetune_eval_group`, `--models-per-device`) and their results written, so that
/// `finetune_ranking` finds them done. Each job's `cpu_s` is its share of the group's CPU time.
/// Ranking several held-out sessions, call it first with all of them: one group has no tail
/// between sessions.
pub fn finetune_side_by_side(
    sweep: &Sweep,
    heldouts: &[String],
    stage: &Stage,
    w: &dyn Work,
) -> Result<()> {
    let rs = RankStage::new(sweep, stage)?;
    // The single-session models, side by side too.
    let singles: Vec<Job> = sweep.pool.iter().map(|s| sweep.single_job(s)).collect();
    sweep.pretrain_side_by_side(&singles, w)?;
    let singles: Vec<(Job, std::path::PathBuf)> = singles
        .into_iter()
        .map(|j| {
            let ckpt = sweep.run_pretrain(&j, w)?;
            Ok((j, ckpt))
        })
        .collect::<Result<_>>()?;
    let mut jobs = Vec::new();
    for h in heldouts {
        check_id("held-out session id", h).map_err(usage)?;
        for (single, ckpt) in &singles {
            jobs.push((h, rs.job(sweep, single, h), ckpt));
        }
    }
    let mut claimed = Vec::new();
    let mut requests = Vec::new();
    for (h, job, ckpt) in &jobs {
        if let Claim::Mine(c) = job.try_claim()? {
            requests.push((rs.request(h, ckpt), c.job.work_dir()));
            claimed.push(c);
        }
    }
    if claimed.is_empty() {
        return Ok(());
    }
    let t0 = cpu_seconds();
    let results = w.finetune_eval_group(&requests);
    let share = (cpu_seconds() - t0) / claimed.len() as f64;
    finish_all(claimed, results, |m| {
        let mut m = json!(m);
        m["cpu_s"] = json!(share);
        m
    })
}

/// The single-session models of the pool (shared with `full`), each given stitchers for
/// `heldout` built from its own by region correspondence (`exp::rank_stitch`, no gradient step)
/// and scored by val forward bps; best first, a session without a finite score last with a
/// warning on stderr. One job per (pool session, held-out session), so a rerun evaluates nothing.
fn stitch_ranking(sweep: &Sweep, heldout: &str, w: &dyn Work) -> Result<Ranked> {
    use crate::exp::rank_stitch::{Side, stitch};
    use crate::model::{checkpoint, params::ParamTable};
    let ds = Dataset::open(&sweep.plan.dataset)?;
    let manifest = sweep
        .plan
        .dataset
        .join(crate::store::manifest::MANIFEST_FILE);
    let find = |id: &str| {
        ds.find(id)
            .ok_or_else(|| input(&manifest, format!("session `{id}` is not in the dataset")))
    };
    let h = find(heldout)?;
    let trained = format!(
        "{} single-session models ({} epochs); no finetuning: stitchers by region",
        sweep.pool.len(),
        sweep.plan.single.epochs
    );
    pool_ranking(
        sweep,
        heldout,
        w,
        Method::Stitch,
        trained,
        |s, single, ckpt| {
            let spec = json!({"base": single.spec, "heldout": heldout, "stitch": "region-mean",
            "split": "val"});
            Job::new(sweep.root(), "rankstitch", spec).run(|work| {
                let t0 = cpu_seconds();
                let (src_cfg, src, _) = checkpoint::load(ckpt)?;
                let (hside, pside) = (Side::of(&ds, h), Side::of(&ds, find(s)?));
                let (cfg, params) = stitch(&src_cfg, &src, &pside, &hside)?;
                std::fs::create_dir_all(work).map_err(crate::error::io_at(work))?;
                let path = work.join("stitched.safetensors");
                let meta =
                    std::collections::BTreeMap::from([("stitched_from".into(), s.to_string())]);
                checkpoint::save(&path, &cfg, &ParamTable::new(&cfg), &params, &meta)?;
                let mut m = json!(w.evaluate(&path, heldout, "val", true)?);
                m["cpu_s"] = json!(cpu_seconds() - t0);
                Ok(m)
            })
        },
    )
}

/// The warnings for the sessions of a ranking without a finite score, also said on stderr.
fn warn_non_finite(heldout: &str, scores: &[(String, f64)]) -> Vec<String> {
    let warnings: Vec<String> = scores
        .iter()
        .filter(|(_, v)| !v.is_finite())
        .map(|(s, v)| format!("session {s}: no finite val forward bps ({v}); ranked last"))
        .collect();
    for m in &warnings {
        eprintln!("warning: ranking for held-out session {heldout}: {m}");
    }
    warnings
}

/// Writes `r` to `RESULTS/<sub>/[<method>/]<held-out>.json`.
pub fn write_ranking(sweep: &Sweep, r: &Ranked, sub: &str) -> Result<()> {
    let mut dir = sweep.root().join(sub);
    let folder = r.method.folder();
    if !folder.is_empty() {
        dir = dir.join(folder);
    }
    std::fs::create_dir_all(&dir).map_err(crate::error::io_at(&dir))?;
    let key = if r.method.data_only() {
        "score"
    } else {
        "forward_bps_val"
    };
    let table: Vec<Value> = r
        .scores
        .iter()
        .map(|(s, v)| json!({"session": s, key: v}))
        .collect();
    let doc = json!({"results_version": RESULTS_VERSION, "heldout": r.heldout,
        "method": r.method.name(), "cpu_s": r.cpu_s, "single_cpu_s": r.single_cpu_s,
        "trained": r.trained, "ranking": table, "warnings": r.warnings});
    let text = serde_json::to_string_pretty(&doc).map_err(|e| internal(e.to_string()))?;
    write_atomic(&dir.join(format!("{}.json", r.heldout)), text.as_bytes())
}

/// Per region, the condition-averaged PSTHs of one session's train trials:
/// region name -> `[rows][neurons]` with rows = 2 conditions (choice -1, +1) x `bins`.
struct Psths {
    regions: Vec<(String, Vec<Vec<f64>>)>,
}

fn psths(ds: &Dataset, s: usize, bins: usize) -> Psths {
    let info = ds.session(s);
    let n = info.n_neurons;
    let trials = info.split(SplitName::Train);
    // A session without a usable choice file puts every trial in both conditions.
    let choice = ds.choice(s).ok();
    let mut sum = vec![vec![0.0f64; bins * n]; 2];
    let mut count = [0usize; 2];
    for &t in trials {
        let c = choice
            .as_ref()
            .and_then(|c| c.get(t as usize).copied())
            .unwrap_or(0);
        let conds: &[usize] = match c {
            -1 => &[0],
            1 => &[1],
            _ => &[0, 1],
        };
        let counts = ds.trial(s, t as usize);
        for &k in conds {
            count[k] += 1;
            for (acc, &x) in sum[k].iter_mut().zip(&counts[..bins * n]) {
                *acc += x as f64;
            }
        }
    }
    // A condition no trial falls in borrows the other's mean.
    if count[0] == 0 || count[1] == 0 {
        let (full, empty) = if count[0] == 0 { (1, 0) } else { (0, 1) };
        sum[empty] = sum[full].clone();
        count[empty] = count[full];
    }
    let (names, index) = info.region_index();
    let mut regions = Vec::new();
    for (r, name) in names.into_iter().enumerate() {
        let neurons: Vec<usize> = (0..n)
            .filter(|&i| index.get(i) == Some(&(r as u16)))
            .collect();
        let mut m = Vec::with_capacity(2 * bins);
        for k in 0..2 {
            let denom = count[k].max(1) as f64;
            for b in 0..bins {
                m.push(neurons.iter().map(|&i| sum[k][b * n + i] / denom).collect());
            }
        }
        regions.push((name, m));
    }
    Psths { regions }
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let r = crate::exp::stats::pearson(a, b);
    if r.is_finite() { r } else { 0.0 }
}

/// The mean PSTH over a region's neurons.
fn region_mean(m: &[Vec<f64>]) -> Vec<f64> {
    m.iter()
        .map(|row| row.iter().sum::<f64>() / row.len().max(1) as f64)
        .collect()
}

/// Orthonormal basis (up to `k` columns of length `rows.len()`) of the top temporal principal
/// subspace of `rows` (`[T][n]`), columns centred and soft-normalised.
fn temporal_subspace(rows: &[Vec<f64>], k: usize) -> Vec<Vec<f64>> {
    let t = rows.len();
    let n = rows.first().map_or(0, Vec::len);
    if t == 0 || n == 0 {
        return Vec::new();
    }
    let mut m: Vec<Vec<f64>> = rows.to_vec();
    let mut norms = vec![0.0; n];
    for (j, nj) in norms.iter_mut().enumerate() {
        let mean = m.iter().map(|r| r[j]).sum::<f64>() / t as f64;
        for r in m.iter_mut() {
            r[j] -= mean;
        }
        *nj = m.iter().map(|r| r[j] * r[j]).sum::<f64>().sqrt();
    }
    // Soft normalisation: a neuron's weight grows with its modulation but saturates, so a few
    // high-rate neurons do not decide the subspace and silent ones add no noise.
    let soft = norms.iter().sum::<f64>() / n as f64 + 1e-12;
    for r in m.iter_mut() {
        for (x, nj) in r.iter_mut().zip(&norms) {
            *x /= nj + soft;
        }
    }
    let k = k.min(n).min(t);
    // Subspace iteration on M M^T from a fixed pseudo-random start (counter-based, so
    // reproducible; a structured start such as phase-shifted sinusoids can project onto one
    // direction of a sinusoidal subspace and lose the others).
    let mut q: Vec<Vec<f64>> = (0..k)
        .map(|c| {
            let key = crate::rng::key(0x50b5_9ace, c as u64);
            (0..t)
                .map(|i| crate::rng::uniform(key, i as u64) as f64 - 0.5)
                .collect()
        })
        .collect();
    for _ in 0..50 {
        let z: Vec<Vec<f64>> = q
            .iter()
            .map(|col| {
                let mt: Vec<f64> = (0..n)
                    .map(|j| m.iter().zip(col).map(|(r, c)| r[j] * c).sum())
                    .collect();
                m.iter()
                    .map(|r| r.iter().zip(&mt).map(|(a, b)| a * b).sum())
                    .collect()
            })
            .collect();
        q = orthonormal(z);
        if q.is_empty() {
            break;
        }
    }
    q
}

/// Modified Gram-Schmidt (twice), dropping columns numerically dependent on earlier ones.
fn orthonormal(cols: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let dot = |a: &[f64], b: &[f64]| -> f64 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
    let scale = cols.iter().map(|c| dot(c, c).sqrt()).fold(0.0f64, f64::max);
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for mut c in cols {
        for _ in 0..2 {
            for q in &basis {
                let p = dot(&c, q);
                for (ci, qi) in c.iter_mut().zip(q) {
                    *ci -= p * qi;
                }
            }
        }
        let norm = dot(&c, &c).sqrt();
        if scale > 0.0 && norm > 1e-9 * scale {
            for ci in c.iter_mut() {
                *ci /= norm;
            }
            basis.push(c);
        }
    }
    basis
}

/// Mean squared canonical correlation of two orthonormal bases.
fn subspace_overlap(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let k = a.len().max(b.len());
    if k == 0 {
        return 0.0;
    }
    let mut s = 0.0;
    for x in a {
        for y in b {
            let d: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            s += d * d;
        }
    }
    s / k as f64
}

/// The data-only methods: region-matched similarity of the held-out session to each pool
/// session, combined over regions like the synthetic ground truth.
fn data_ranking(sweep: &Sweep, heldout: &str, method: &Method) -> Result<Ranked> {
    let t0 = cpu_seconds();
    let ds = Dataset::open(&sweep.plan.dataset)?;
    let manifest = sweep
        .plan
        .dataset
        .join(crate::store::manifest::MANIFEST_FILE);
    let find = |id: &str| {
        ds.find(id)
            .ok_or_else(|| input(&manifest, format!("session `{id}` is not in the dataset")))
    };
    let h = find(heldout)?;
    let hinfo = ds.session(h);
    let (hregions, _) = hinfo.region_index();
    if hregions.len() < 2 {
        return Err(usage(format!(
            "ranking method {} compares sessions region by region, but held-out session \
             `{heldout}` records {} region{} ({}); use full or short",
            method.name(),
            hregions.len(),
            if hregions.len() == 1 { "" } else { "s" },
            hregions.join(", ")
        )));
    }
    let summarise = |p: Psths| -> Vec<(String, Vec<Vec<f64>>)> {
        p.regions
            .into_iter()
            .map(|(name, m)| {
                let v = match method {
                    Method::Psth => vec![region_mean(&m)],
                    _ => temporal_subspace(&m, SUBSPACE_DIMS),
                };
                (name, v)
            })
            .collect()
    };
    let mut scores = Vec::new();
    for s in &sweep.pool {
        let p = find(s)?;
        let info = ds.session(p);
        // Compared over the bins both sessions have.
        let bins = hinfo.n_bins.min(info.n_bins);
        let a = summarise(psths(&ds, h, bins));
        let b = summarise(psths(&ds, p, bins));
        let mut union: Vec<&str> = a.iter().chain(&b).map(|x| x.0.as_str()).collect();
        union.sort_unstable();
        union.dedup();
        let mut total = 0.0;
        for (name, va) in &a {
            if let Some((_, vb)) = b.iter().find(|x| &x.0 == name) {
                total += match method {
                    Method::Psth => match (va.first(), vb.first()) {
                        (Some(x), Some(y)) => pearson(x, y),
                        _ => 0.0,
                    },
                    _ => subspace_overlap(va, vb),
                };
            }
        }
        scores.push((s.clone(), total / union.len().max(1) as f64));
    }
    sort_ranking(&mut scores);
    Ok(Ranked {
        method: method.clone(),
        heldout: heldout.to_string(),
        scores,
        cpu_s: cpu_seconds() - t0,
        single_cpu_s: 0.0,
        trained: "nothing (reads the train split's spike counts)".into(),
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_knows_every_method_and_refuses_the_rest() {
        assert_eq!(Method::parse("full", None).unwrap(), Method::Full);
        assert_eq!(
            Method::parse("short", None).unwrap(),
            Method::Short(DEFAULT_SHORT_EPOCHS)
        );
        assert_eq!(Method::parse("short", Some(3)).unwrap(), Method::Short(3));
        assert_eq!(Method::parse("short:5", Some(3)).unwrap(), Method::Short(5));
        assert_eq!(Method::parse("subspace", None).unwrap().name(), "subspace");
        assert_eq!(Method::parse("stitch", None).unwrap(), Method::Stitch);
        assert_eq!(Method::Stitch.name(), "stitch");
        assert_eq!(Method::Stitch.folder(), "stitch");
        for bad in [
            "", "fast", "short:", "short:0", "short:-1", "short:x", "Full",
        ] {
            let e = Method::parse(bad, None).unwrap_err();
            assert_eq!(e.exit_code(), 1, "{bad}");
        }
    }

    #[test]
    fn subspace_overlap_is_one_for_the_same_dynamics_and_low_for_others() {
        // Two "sessions" mixing the same two temporal signals with different neuron weights
        // share a subspace; a third built from other signals does not.
        let t = 40;
        let sig = |f: f64, i: usize| (f * i as f64 / t as f64 * std::f64::consts::TAU).sin();
        let mk = |freqs: [f64; 2], w: &[[f64; 2]]| -> Vec<Vec<f64>> {
            (0..t)
                .map(|i| {
                    w.iter()
                        .map(|c| 5.0 + c[0] * sig(freqs[0], i) + c[1] * sig(freqs[1], i))
                        .collect()
                })
                .collect()
        };
        let a = temporal_subspace(&mk([1.0, 2.0], &[[1.0, 0.2], [0.3, 1.0], [0.5, 0.5]]), 2);
        let b = temporal_subspace(&mk([1.0, 2.0], &[[0.1, 2.0], [1.5, 0.1]]), 2);
        let c = temporal_subspace(&mk([5.0, 7.0], &[[1.0, 0.2], [0.3, 1.0]]), 2);
        let ab = subspace_overlap(&a, &b);
        assert!(
            (ab - 1.0).abs() < 1e-6,
            "{ab} ({} and {} directions)",
            a.len(),
            b.len()
        );
        assert!(
            subspace_overlap(&a, &c) < 0.1,
            "{}",
            subspace_overlap(&a, &c)
        );
    }
}
