//! `ndt rank PLAN.toml`: the paper's session-selection procedure (Sec. 4.1, SPEC §6). For each
//! held-out session of the plan, every single-session model of the pretraining pool (trained once,
//! cached in the plan's results folder, shared with `ndt sweep`) is finetuned `frozen-core` on the
//! held-out train split and scored by forward-prediction bps on its val split. Prints one ranking
//! table per held-out session and, when the dataset is synthetic, the Spearman correlation of the
//! scores with the manifest's ground-truth session similarity.

use crate::error::{Result, internal};
use crate::exp::plan::Plan;
use crate::exp::rank_methods::{Method, Ranked, rank};
use crate::exp::stats::spearman;
use crate::exp::sweep::Sweep;
use crate::exp::work::DatasetWork;
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
    let work = DatasetWork::new(&sweep.plan, threads, every, cuda)?;
    if args.compare {
        return compare(&sweep, &work, &manifest, &methods, args.top_k);
    }
    let mut out = Vec::new();
    for h in &sweep.heldout {
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

/// `ndt rank --compare`: every method against `full` and the ground truth, per held-out session
/// (CSV) and averaged over them (Markdown, also printed).
fn compare(
    sweep: &Sweep,
    work: &DatasetWork,
    manifest: &Value,
    methods: &[Method],
    top_k: usize,
) -> Result<()> {
    let mut csv = String::from(
        "heldout,method,spearman_vs_full,spearman_vs_truth,top_k,top_k_overlap_vs_full,\
         top_k_overlap_vs_truth,cpu_s,cpu_fraction_of_full,trained\n",
    );
    // method -> (rho full, rho truth, overlap full, overlap truth, cpu, fraction)
    let mut agg: Vec<(String, [Vec<f64>; 6], String)> = Vec::new();
    for h in &sweep.heldout {
        let full = rank(sweep, h, &Method::Full, work)?;
        let mut truth: Vec<(String, f64)> = full
            .scores
            .iter()
            .map(|(s, _)| (s.clone(), self::truth(manifest, h, s).unwrap_or(f64::NAN)))
            .collect();
        crate::exp::sweep::sort_ranking(&mut truth);
        for m in methods {
            let r = if *m == Method::Full {
                full.clone()
            } else {
                rank(sweep, h, m, work)?
            };
            let vals = [
                spearman_with(&r, &full.scores),
                spearman_with(&r, &truth),
                top_overlap(&r.scores, &full.scores, top_k),
                top_overlap(&r.scores, &truth, top_k),
                r.cpu_s,
                r.cpu_s / full.cpu_s,
            ];
            csv.push_str(&format!(
                "{h},{},{:.4},{:.4},{top_k},{:.3},{:.3},{:.2},{:.4},\"{}\"\n",
                m.name(),
                vals[0],
                vals[1],
                vals[2],
                vals[3],
                vals[4],
                vals[5],
                r.trained
            ));
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
    let mut md = format!(
        "Means over {} held-out session(s); pool of {} sessions; top-k with k = {top_k}.\n\n\
         | method | Spearman vs full | Spearman vs truth | top-k overlap vs full | \
         top-k overlap vs truth | CPU s | CPU / full | trained |\n\
         |---|---|---|---|---|---|---|---|\n",
        sweep.heldout.len(),
        sweep.pool.len()
    );
    for (name, v, trained) in &agg {
        md.push_str(&format!(
            "| {name} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} | {:.4} | {trained} |\n",
            mean(&v[0]),
            mean(&v[1]),
            mean(&v[2]),
            mean(&v[3]),
            mean(&v[4]),
            mean(&v[5])
        ));
    }
    print!("{md}");
    let root = sweep.root();
    std::fs::create_dir_all(root).map_err(crate::error::io_at(root))?;
    crate::fsutil::write_atomic(&root.join("rank_compare.md"), md.as_bytes())?;
    crate::fsutil::write_atomic(&root.join("rank_compare.csv"), csv.as_bytes())?;
    Ok(())
}
