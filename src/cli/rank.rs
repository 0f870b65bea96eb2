//! `ndt rank PLAN.toml`: the paper's session-selection procedure (Sec. 4.1, SPEC §6). For each
//! held-out session of the plan, every single-session model of the pretraining pool (trained once,
//! cached in the plan's results folder, shared with `ndt sweep`) is finetuned `frozen-core` on the
//! held-out train split and scored by forward-prediction bps on its val split. Prints one ranking
//! table per held-out session and, when the dataset is synthetic, the Spearman correlation of the
//! scores with the manifest's ground-truth session similarity.

use crate::error::{Result, internal};
use crate::exp::plan::Plan;
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

pub fn run(args: Args) -> Result<()> {
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
    let sweep = Sweep::new(plan, &bytes, &ids, &args.plan)?;
    let work = DatasetWork::new(&sweep.plan, threads, every)?;
    let mut out = Vec::new();
    for h in &sweep.heldout {
        let ranking = sweep.ranking(h, &work)?;
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
            println!("held-out session {h}");
            println!(
                "{:>4}  {:<24} {:>14} {:>14}",
                "rank", "session", "val fwd bps", "true sim"
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
            json!({"session": s, "forward_bps_val": v, "similarity": t})).collect::<Vec<_>>(), "spearman": rho}));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| internal(e.to_string()))?
        );
    }
    Ok(())
}
