//! `ndt rank PLAN.toml`: the paper's session-selection procedure (Sec. 4.1, SPEC §6). For each
//! held-out session of the plan, every single-session model of the pretraining pool (trained once,
//! cached in the plan's results folder, shared with `ndt sweep`) is finetuned `frozen-core` on the
//! held-out train split and scored by forward-prediction bps on its val split. Prints one ranking
//! table per held-out session and, when the dataset is synthetic, the Spearman correlation of the
//! scores with the manifest's ground-truth session similarity.

use crate::error::{Result, internal, usage};
use crate::exp::plan::Plan;
use crate::exp::plan::Stage;
use crate::exp::rank_methods::{Method, Ranked, finetune_side_by_side, rank};
use crate::exp::stats::spearman;
use crate::exp::sweep::Sweep;
use crate::exp::work::DatasetWork;
use crate::train::group::PerDevice;
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sweep plan naming the dataset, the held-out sessions and the training stages.
    pub plan: PathBuf,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// How often each job writes its resume state and checkpoints: epochs (`50`, `50e`; `0` =
    /// every epoch) or time (`90s`, `10m`, `2h`) [default: the plan's `checkpoint_every`, else
    /// 10m].
    #[arg(long)]
    pub checkpoint_every: Option<String>,
    /// How many of the ranking's frozen-core finetunes to train side by side: a number or
    /// `auto` [default: the plan's `models_per_device`, else 1] (CPU backend; docs/training.md).
    #[arg(long, value_name = "K|auto")]
    pub models_per_device: Option<String>,
    /// Rank for this one of the plan's held-out sessions only (e.g. one process per held-out
    /// session); repeat the flag for several.
    #[arg(long = "heldout", value_name = "ID")]
    pub heldout: Vec<String>,
    /// How to rank: full, short (or short:N), psth, subspace, stitch (docs/ranking.md).
    #[arg(long, default_value = "full")]
    pub method: String,
    /// Epochs of the `short` method's frozen-core finetunes.
    #[arg(long)]
    pub short_epochs: Option<usize>,
    /// Rank by every method of `--methods` and compare each with `full` and the ground truth;
    /// writes RESULTS/rank_compare.md and .csv.
    #[arg(long)]
    pub compare: bool,
    /// Methods compared by `--compare`, comma-separated.
    #[arg(long, default_value = "full,short,psth,subspace,stitch")]
    pub methods: String,
    /// k of the top-k overlap in `--compare`.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// With `--compare`: also pretrain on each method's top K pool sessions (K = 5 when the flag
    /// has no value), finetune on the held-out session and evaluate on its test split, as the
    /// sweep's `ranked` point of size K does (its jobs, shared), and tabulate the test forward
    /// bps. Trains a model per distinct top K and held-out session.
    #[arg(long, value_name = "K", num_args = 0..=1, default_missing_value = "5",
        requires = "compare")]
    pub downstream: Option<usize>,
}

/// Ground-truth similarity of `a` to `b` from `extra.synth.similarity`, if the dataset has one.
fn truth(manifest: &Value, a: &str, b: &str) -> Option<f64> {
    let sim = manifest.get("extra")?.get("synth")?.get("similarity")?;
    let ids: Vec<&str> = sim
        .get("ids")?
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let i = ids.iter().position(|x| *x == a)?;
    let j = ids.iter().position(|x| *x == b)?;
    sim.get("matrix")?.get(i)?.get(j)?.as_f64()
}

pub fn run(args: Args, cuda: &crate::cuda::Settings) -> Result<()> {
    let every = crate::cli::sweep::cadence(&args.checkpoint_every)?;
    let plan = Plan::load(&args.plan)?;
    let manifest_path = plan.dataset.join("manifest.json");
    let bytes = crate::fsutil::read_bounded(&manifest_path, crate::fsutil::MAX_TEXT_BYTES)?;
    let manifest: Value = serde_json::from_slice(&bytes)
        .map_err(|e| crate::error::input(&manifest_path, e.to_string()))?;
    let ds = crate::store::Dataset::open(&plan.dataset)?;
    let ids: Vec<String> = (0..ds.n_sessions())
        .map(|i| ds.session(i).id.clone())
        .collect();
    let threads = if args.threads > 0 {
        args.threads
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    };
    let method = Method::parse(&args.method, args.short_epochs)?;
    let methods: Vec<Method> = args
        .methods
        .split(',')
        .map(|m| Method::parse(m.trim(), args.short_epochs))
        .collect::<Result<_>>()?;
    let sweep = Sweep::new(plan, &bytes, &ids, &args.plan)?;
    let k = crate::cli::sweep::per_device(&args.models_per_device, &sweep.plan)?;
    let work = DatasetWork::new(&sweep.plan, threads, every, cuda)?.with_models_per_device(k)?;
    if args.compare {
        if args.downstream == Some(0) {
            return Err(usage(
                "--downstream 0: pretraining needs at least one session",
            ));
        }
        return compare(
            &sweep,
            &work,
            &manifest,
            &methods,
            args.top_k,
            args.downstream,
        );
    }
    for h in &args.heldout {
        if !sweep.heldout.contains(h) {
            return Err(usage(format!(
                "--heldout {h}: not a held-out session of {} ({})",
                args.plan.display(),
                sweep.heldout.join(", ")
            )));
        }
    }
    let heldouts: Vec<String> = sweep
        .heldout
        .iter()
        .filter(|h| args.heldout.is_empty() || args.heldout.contains(h))
        .cloned()
        .collect();
    if k != PerDevice::K(1) {
        // Every held-out session's finetunes in one group (no tail between sessions).
        let stage = match &method {
            Method::Full => Some(sweep.plan.rank.clone()),
            Method::Short(n) => Some(Stage {
                epochs: *n,
                ..sweep.plan.rank.clone()
            }),
            _ => None,
        };
        if let Some(stage) = stage {
            finetune_side_by_side(&sweep, &heldouts, &stage, &work)?;
        }
    }
    let mut out = Vec::new();
    for h in &heldouts {
        let ranked = rank(&sweep, h, &method, &work)?;
        let ranking = ranked.scores;
        let sims: Vec<Option<f64>> = ranking
            .iter()
            .map(|(s, _)| truth(&manifest, h, s))
            .collect();
        let rho = if sims.iter().all(|s| s.is_some()) && ranking.len() >= 2 {
            let x: Vec<f64> = ranking.iter().map(|r| r.1).collect();
            let y: Vec<f64> = sims.iter().map(|s| s.unwrap_or(f64::NAN)).collect();
            Some(spearman(&x, &y))
        } else {
            None
        };
        if !args.json {
            println!(
                "held-out session {h} (method {}, {:.1} CPU s; trained: {})",
                method.name(),
                ranked.cpu_s,
                ranked.trained
            );
            println!(
                "{:>4}  {:<24} {:>14} {:>14}",
                "rank", "session", "score", "true sim"
            );
            for (i, ((s, v), t)) in ranking.iter().zip(&sims).enumerate() {
                let t = t.map(|t| format!("{t:.4}")).unwrap_or_else(|| "–".into());
                println!("{:>4}  {:<24} {:>14.5} {:>14}", i + 1, s, v, t);
            }
            if let Some(r) = rho {
                println!("Spearman(score, ground-truth similarity) = {r:.3}");
            }
            println!();
        }
        out.push(json!({"heldout": h, "ranking": ranking.iter().zip(&sims).map(|((s, v), t)|
            json!({"session": s, "score": v, "similarity": t})).collect::<Vec<_>>(), "spearman": rho,
            "method": method.name(), "cpu_s": ranked.cpu_s, "trained": ranked.trained}));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| internal(e.to_string()))?
        );
    }
    Ok(())
}

/// Spearman of `r`'s scores with `other`'s (by session); NaN when a session is missing.
fn spearman_with(r: &Ranked, other: &[(String, f64)]) -> f64 {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (s, v) in &r.scores {
        x.push(*v);
        y.push(other.iter().find(|o| &o.0 == s).map_or(f64::NAN, |o| o.1));
    }
    spearman(&x, &y)
}

fn top_overlap(a: &[(String, f64)], b: &[(String, f64)], k: usize) -> f64 {
    let k = k.min(a.len()).min(b.len());
    if k == 0 {
        return f64::NAN;
    }
    let hits = a[..k]
        .iter()
        .filter(|x| b[..k].iter().any(|y| y.0 == x.0))
        .count();
    hits as f64 / k as f64
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// `mean ± sd` over held-out sessions, or the mean alone when there is one.
fn mean_sd(v: &[f64]) -> String {
    if v.len() > 1 {
        format!("{:.4} ± {:.4}", mean(v), crate::exp::stats::sd(v))
    } else {
        format!("{:.4}", mean(v))
    }
}

/// Test forward bps of pretraining on `pretrained` (None: the from-scratch baseline) and
/// finetuning on `heldout`: the sweep's point jobs, with the plan's first seed.
fn downstream_forward(
    sweep: &Sweep,
    heldout: &str,
    pretrained: Option<&[String]>,
    work: &DatasetWork,
) -> Result<f64> {
    let seed = sweep.plan.seeds.first().copied().unwrap_or(42);
    let m = sweep.downstream(heldout, pretrained, seed, work)?;
    Ok(m.get("forward").copied().unwrap_or(f64::NAN))
}

/// `ndt rank --compare`: every method against `full` and the ground truth, per held-out session
/// (CSV) and averaged over them (Markdown, also printed); with `downstream = Some(K)` also the
/// test forward bps of pretraining on each method's top K (and of the from-scratch baseline).
fn compare(
    sweep: &Sweep,
    work: &DatasetWork,
    manifest: &Value,
    methods: &[Method],
    top_k: usize,
    downstream: Option<usize>,
) -> Result<()> {
    // Sessions pretrained on: K, or the whole pool when it is smaller.
    let down_k = downstream.map(|k| k.min(sweep.pool.len()));
    let mut csv = String::from(
        "heldout,method,spearman_vs_full,spearman_vs_truth,top_k,top_k_overlap_vs_full,\
         top_k_overlap_vs_truth,cpu_s,cpu_fraction_of_full,trained",
    );
    if let Some(k) = down_k {
        csv.push_str(&format!(
            ",downstream_sessions,downstream_top,downstream_forward_bps_top{k},\
             baseline_forward_bps"
        ));
    }
    csv.push('\n');
    // method -> (rho full, rho truth, overlap full, overlap truth, cpu, fraction, downstream)
    let mut agg: Vec<(String, [Vec<f64>; 7], String)> = Vec::new();
    let mut baselines = Vec::new();
    for h in &sweep.heldout {
        let full = rank(sweep, h, &Method::Full, work)?;
        let mut truth: Vec<(String, f64)> = full
            .scores
            .iter()
            .map(|(s, _)| (s.clone(), self::truth(manifest, h, s).unwrap_or(f64::NAN)))
            .collect();
        crate::exp::sweep::sort_ranking(&mut truth);
        let baseline = match down_k {
            Some(_) => downstream_forward(sweep, h, None, work)?,
            None => f64::NAN,
        };
        baselines.push(baseline);
        for m in methods {
            let r = if *m == Method::Full {
                full.clone()
            } else {
                rank(sweep, h, m, work)?
            };
            let top: Vec<String> = r
                .scores
                .iter()
                .take(down_k.unwrap_or(0))
                .map(|s| s.0.clone())
                .collect();
            let down = match down_k {
                Some(_) => downstream_forward(sweep, h, Some(&top), work)?,
                None => f64::NAN,
            };
            let vals = [
                spearman_with(&r, &full.scores),
                spearman_with(&r, &truth),
                top_overlap(&r.scores, &full.scores, top_k),
                top_overlap(&r.scores, &truth, top_k),
                r.cpu_s,
                r.cpu_s / full.cpu_s,
                down,
            ];
            csv.push_str(&format!(
                "{h},{},{:.4},{:.4},{top_k},{:.3},{:.3},{:.2},{:.4},\"{}\"",
                m.name(),
                vals[0],
                vals[1],
                vals[2],
                vals[3],
                vals[4],
                vals[5],
                r.trained
            ));
            if down_k.is_some() {
                csv.push_str(&format!(
                    ",{},\"{}\",{down:.4},{baseline:.4}",
                    top.len(),
                    top.join(" ")
                ));
            }
            csv.push('\n');
            let i = match agg.iter().position(|a| a.0 == m.name()) {
                Some(i) => i,
                None => {
                    agg.push((m.name(), Default::default(), r.trained.clone()));
                    agg.len() - 1
                }
            };
            if let Some(a) = agg.get_mut(i) {
                for (acc, v) in a.1.iter_mut().zip(vals) {
                    acc.push(v);
                }
            }
        }
    }
    let n_held = sweep.heldout.len();
    let mut md = format!(
        "Means over {n_held} held-out session(s); pool of {} sessions; top-k with k = {top_k}.\n",
        sweep.pool.len()
    );
    let mut header = String::from(
        "| method | Spearman vs full | Spearman vs truth | top-k overlap vs full | \
         top-k overlap vs truth | CPU s | CPU / full | trained |",
    );
    let mut rule = String::from("|---|---|---|---|---|---|---|---|");
    if let (Some(asked), Some(k)) = (downstream, down_k) {
        let seed = sweep.plan.seeds.first().copied().unwrap_or(42);
        md.push_str(&format!(
            "Downstream: test forward bps after pretraining on the method's top {k} pool \
             sessions ({} epochs) and finetuning on the held-out session ({} epochs), seed \
             {seed}: the sweep's `ranked` point jobs",
            sweep.plan.pretrain.epochs, sweep.plan.finetune.epochs
        ));
        if k < asked {
            md.push_str(&format!(
                "; top {asked} asked, the pool has only {k} sessions, so every method \
                 pretrains on all of them"
            ));
        }
        md.push_str(if n_held > 1 {
            " (mean ± sd over held-out sessions).\n"
        } else {
            ".\n"
        });
        header.push_str(&format!(" downstream_forward_bps_top{k} |"));
        rule.push_str("---|");
    }
    md.push_str(&format!("\n{header}\n{rule}\n"));
    for (name, v, trained) in &agg {
        md.push_str(&format!(
            "| {name} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} | {:.4} | {trained} |",
            mean(&v[0]),
            mean(&v[1]),
            mean(&v[2]),
            mean(&v[3]),
            mean(&v[4]),
            mean(&v[5])
        ));
        if down_k.is_some() {
            md.push_str(&format!(" {} |", mean_sd(&v[6])));
        }
        md.push('\n');
    }
    if down_k.is_some() {
        let epochs = sweep.plan.pretrain.epochs.max(sweep.plan.finetune.epochs);
        md.push_str(&format!(
            "\nFrom-scratch baseline (the sweep's baseline point: no pretraining, {epochs} \
             epochs on the held-out session alone): test forward bps {}.\n",
            mean_sd(&baselines)
        ));
    }
    print!("{md}");
    let root = sweep.root();
    std::fs::create_dir_all(root).map_err(crate::error::io_at(root))?;
    crate::fsutil::write_atomic(&root.join("rank_compare.md"), md.as_bytes())?;
    crate::fsutil::write_atomic(&root.join("rank_compare.csv"), csv.as_bytes())?;
    Ok(())
}
