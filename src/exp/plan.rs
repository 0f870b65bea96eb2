//! Sweep plans (`ndt sweep PLAN.toml`, SPEC §6): what to pretrain, in which orders, at which sizes,
//! with which seeds, for which held-out sessions.
//!
//! ```toml
//! dataset = "data"                 # relative to the plan file
//! results = "sweep"                # where jobs and results go (relative to the plan file)
//! heldout = ["rs-0008", "rs-0009"] # held-out session ids (or heldout_last = 2)
//! sizes = [1, 2, 3, 5, "all"]      # pretraining-set sizes k (first k sessions of an order)
//! orders = ["random", "ranked", "reverse-ranked"]
//! shuffles = 2                     # how many random orders
//! seeds = [42]
//! device = "auto"
//! [model]    preset = "small"      # or "paper"; any ModelConfig field overrides
//! [pretrain] epochs = 20  schemes = ["forward"]
//! [finetune] epochs = 20  mode = "frozen-core"
//! [single]   epochs = 20           # single-session models used for ranking
//! [rank]     epochs = 10           # frozen-core finetunes used for ranking
//! rank_method = "full"             # (top level) or a cheaper proxy, docs/ranking.md
//! ```
//!
//! A top-level `checkpoint_every = "10m"` (or `"50e"`, `50`; `0` = every epoch) sets how often
//! each job writes its resume state (default 10 minutes).

use crate::error::{Result, input};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    Random,
    Ranked,
    ReverseRanked,
}

impl Order {
    pub fn name(&self) -> &'static str {
        match self {
            Order::Random => "random",
            Order::Ranked => "ranked",
            Order::ReverseRanked => "reverse-ranked",
        }
    }
}

/// A pretraining-set size: a number of sessions, or all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    N(usize),
    All(AllTag),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllTag {
    All,
}

impl Size {
    pub fn resolve(self, pool: usize) -> usize {
        match self {
            Size::N(k) => k.min(pool),
            Size::All(_) => pool,
        }
    }
}

/// Training hyper-parameters of one stage of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_schemes")]
    pub schemes: Vec<String>,
    #[serde(default = "default_lr")]
    pub lr: f32,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub mode: Option<String>,
}

fn default_epochs() -> usize {
    20
}
fn default_schemes() -> Vec<String> {
    vec!["forward".into()]
}
fn default_lr() -> f32 {
    1e-4
}
fn default_batch() -> usize {
    16
}

impl Default for Stage {
    fn default() -> Self {
        Stage {
            epochs: default_epochs(),
            schemes: default_schemes(),
            lr: default_lr(),
            batch_size: default_batch(),
            mode: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub dataset: PathBuf,
    pub results: PathBuf,
    #[serde(default)]
    pub heldout: Vec<String>,
    #[serde(default)]
    pub heldout_last: Option<usize>,
    pub sizes: Vec<Size>,
    #[serde(default = "default_orders")]
    pub orders: Vec<Order>,
    #[serde(default = "default_shuffles")]
    pub shuffles: usize,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    #[serde(default = "default_device")]
    pub device: String,
    /// Model preset and overrides (`preset = "small" | "paper"`, then any config field).
    #[serde(default)]
    pub model: toml::Table,
    #[serde(default)]
    pub pretrain: Stage,
    #[serde(default)]
    pub finetune: Stage,
    #[serde(default)]
    pub single: Stage,
    #[serde(default)]
    pub rank: Stage,
    /// Threads per job on the CPU backend (0 = all cores / jobs).
    #[serde(default)]
    pub threads: usize,
    /// When each job writes its resume state and checkpoints (`"10m"`, `"50e"`, `50`; `0` =
    /// every epoch; see `train::cadence`). Not part of any job's identity.
    #[serde(default)]
    pub checkpoint_every: Option<toml::Value>,
    /// How the `ranked` and `reverse-ranked` orders rank the pool (`ndt rank --method`):
    /// `"full"` (default), `"short"` / `"short:N"`, `"psth"`, `"subspace"`, `"stitch"`; see
    /// docs/ranking.md.
    #[serde(default)]
    pub rank_method: Option<String>,
    /// Score the classical baselines beside each evaluated model (`ndt eval --baselines`: the
    /// mean-rate null model and the smoothed-spikes Poisson GLM for co-smoothing), so the report
    /// shows them in Table 3. Off by default: the GLM costs far more than the evaluation.
    #[serde(default)]
    pub baselines: bool,
    /// How many same-shaped finetunes of the ranking to train side by side (`1`, the default;
    /// a number; `"auto"`); `--models-per-device` overrides it. Not part of any job's identity:
    /// each job's results are those of training it alone.
    #[serde(default)]
    pub models_per_device: Option<toml::Value>,
}

/// A key that takes a number or a string, as the text its parser reads.
fn key_text(v: &Option<toml::Value>) -> Option<String> {
    match v {
        None => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(v) => Some(v.to_string()),
    }
}

fn default_orders() -> Vec<Order> {
    vec![Order::Random, Order::Ranked, Order::ReverseRanked]
}
fn default_shuffles() -> usize {
    1
}
fn default_seeds() -> Vec<u64> {
    vec![42]
}
fn default_device() -> String {
    "auto".into()
}

/// Most random orders a plan may ask for.
pub const MAX_SHUFFLES: usize = 10_000;
/// Most entries in each of `sizes`, `seeds` and `heldout` (and the largest `heldout_last`).
pub const MAX_LIST: usize = 10_000;
/// Most points (runs) a plan may describe: held-out sessions × sizes × orders (random counted
/// once per shuffle) × seeds.
pub const MAX_POINTS: u64 = 1_000_000;
/// Most CPU threads per job.
pub const MAX_THREADS: usize = 4096;

impl Plan {
    /// Checks every value against its range before anything is sized by it: counts bounded,
    /// learning rates finite, positive and at most 1, epochs and batch sizes within the run
    /// limits (`train::config`), and the `[model]` table a valid run config. Errors name the
    /// plan file and the key.
    pub fn check_values(&self, path: &Path) -> Result<()> {
        use crate::train::config::{MAX_BATCH, MAX_EPOCHS};
        let bad = |key: &str, msg: String| input(path, format!("`{key}`: {msg}"));
        if self.shuffles > MAX_SHUFFLES {
            return Err(bad(
                "shuffles",
                format!("{} is more than {MAX_SHUFFLES}", self.shuffles),
            ));
        }
        for (key, n) in [
            ("sizes", self.sizes.len()),
            ("seeds", self.seeds.len()),
            ("heldout", self.heldout.len()),
            ("orders", self.orders.len()),
            ("heldout_last", self.heldout_last.unwrap_or(0)),
        ] {
            if n > MAX_LIST {
                return Err(bad(key, format!("{n} entries, more than {MAX_LIST}")));
            }
        }
        if self.threads > MAX_THREADS {
            return Err(bad(
                "threads",
                format!("{} is more than {MAX_THREADS}", self.threads),
            ));
        }
        let orders = self.orders.iter().try_fold(0u64, |acc, o| {
            acc.checked_add(match o {
                Order::Random => self.shuffles as u64,
                _ => 1,
            })
        });
        let heldout = self.heldout.len().max(self.heldout_last.unwrap_or(0)) as u64;
        let points = orders
            .and_then(|o| o.checked_add(1)) // the baseline
            .and_then(|o| o.checked_mul(self.sizes.len() as u64))
            .and_then(|p| p.checked_mul(self.seeds.len() as u64))
            .and_then(|p| p.checked_mul(heldout));
        if points.is_none_or(|p| p > MAX_POINTS) {
            return Err(input(
                path,
                format!(
                    "the plan describes more than {MAX_POINTS} runs (held-out sessions × sizes \
                     × orders and shuffles × seeds); reduce `shuffles`, `sizes` or `seeds`"
                ),
            ));
        }
        for (name, st) in [
            ("pretrain", &self.pretrain),
            ("finetune", &self.finetune),
            ("single", &self.single),
            ("rank", &self.rank),
        ] {
            let key = |k: &str| format!("{name}.{k}");
            if !(st.lr.is_finite() && st.lr > 0.0 && st.lr <= 1.0) {
                return Err(bad(
                    &key("lr"),
                    format!("{} is not a learning rate in (0, 1]", st.lr),
                ));
            }
            if st.epochs == 0 || st.epochs > MAX_EPOCHS {
                return Err(bad(
                    &key("epochs"),
                    format!("{} is not in 1..={MAX_EPOCHS}", st.epochs),
                ));
            }
            if st.batch_size == 0 || st.batch_size > MAX_BATCH {
                return Err(bad(
                    &key("batch_size"),
                    format!("{} is not in 1..={MAX_BATCH}", st.batch_size),
                ));
            }
            if st.schemes.is_empty() {
                return Err(bad(&key("schemes"), "is empty".into()));
            }
        }
        // The `[model]` table as the sweep will read it: a preset (default `small`) plus
        // overrides, checked as a run config (dimensions, memory) with errors naming the plan.
        let mut model = self.model.clone();
        let preset = match model.remove("preset") {
            None => "small".to_string(),
            Some(toml::Value::String(s)) => s,
            Some(v) => return Err(bad("model.preset", format!("{v} is not a string"))),
        };
        let mut doc = toml::Table::new();
        doc.insert("preset".into(), toml::Value::String(preset));
        if !model.is_empty() {
            doc.insert("model".into(), toml::Value::Table(model));
        }
        crate::train::config::RunConfig::from_toml(&doc.to_string(), path).map_err(
            |e| match e {
                crate::error::Error::Input { msg, .. } => input(path, format!("[model]: {msg}")),
                other => other,
            },
        )?;
        Ok(())
    }

    /// Reads and validates a plan; relative paths are resolved against the plan's folder.
    pub fn load(path: &Path) -> Result<Plan> {
        let text = crate::fsutil::read_text(path)?;
        let mut plan: Plan = toml::from_str(&text)
            .map_err(|e| input(path, format!("not a valid sweep plan: {e}")))?;
        plan.check_values(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        if plan.dataset.is_relative() {
            plan.dataset = base.join(&plan.dataset);
        }
        if plan.results.is_relative() {
            plan.results = base.join(&plan.results);
        }
        if plan.sizes.is_empty() {
            return Err(input(path, "`sizes` is empty"));
        }
        if plan.sizes.contains(&Size::N(0)) {
            return Err(input(path, "a pretraining-set size of 0 sessions"));
        }
        if plan.seeds.is_empty() {
            return Err(input(path, "`seeds` is empty"));
        }
        if let Some(m) = &plan.rank_method {
            crate::exp::rank_methods::Method::parse(m, None)
                .map_err(|e| input(path, format!("`rank_method`: {e}")))?;
        }
        if plan.orders.contains(&Order::Random) && plan.shuffles == 0 {
            return Err(input(path, "order `random` needs `shuffles` >= 1"));
        }
        if plan.heldout.is_empty() && plan.heldout_last.unwrap_or(0) == 0 {
            return Err(input(
                path,
                "no held-out session: set `heldout = [ids]` or `heldout_last = K`",
            ));
        }
        for st in [&plan.pretrain, &plan.finetune, &plan.single, &plan.rank] {
            for s in &st.schemes {
                if crate::scheme::Scheme::parse(s).is_none() {
                    return Err(input(path, format!("unknown masking scheme `{s}`")));
                }
            }
            if let Some(m) = &st.mode
                && m != "full"
                && m != "frozen-core"
            {
                return Err(input(
                    path,
                    format!("unknown finetune mode `{m}` (full, frozen-core)"),
                ));
            }
        }
        plan.cadence().map_err(|m| input(path, m))?;
        plan.per_device().map_err(|m| input(path, m))?;
        Ok(plan)
    }

    /// The plan's `models_per_device` (1 when absent).
    pub fn per_device(&self) -> std::result::Result<crate::train::group::PerDevice, String> {
        match key_text(&self.models_per_device) {
            None => Ok(crate::train::group::PerDevice::default()),
            Some(t) => crate::train::group::PerDevice::parse(&t)
                .map_err(|m| format!("models_per_device: {m}")),
        }
    }

    /// The plan's `checkpoint_every` (the default when absent).
    pub fn cadence(&self) -> std::result::Result<crate::train::cadence::Cadence, String> {
        match key_text(&self.checkpoint_every) {
            None => Ok(crate::train::cadence::DEFAULT),
            Some(t) => crate::train::cadence::Cadence::parse(&t)
                .map_err(|m| format!("checkpoint_every: {m}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("plan.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn parses_sizes_orders_and_resolves_paths() {
        let dir = std::env::temp_dir().join(format!("ndt-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = write(
            &dir,
            "dataset = \"d\"\nresults = \"r\"\nheldout_last = 2\nsizes = [1, 3, \"all\"]\norders = [\"random\", \"reverse-ranked\"]\nshuffles = 2\n[pretrain]\nepochs = 3\n",
        );
        let plan = Plan::load(&p).unwrap();
        assert_eq!(
            plan.sizes,
            vec![Size::N(1), Size::N(3), Size::All(AllTag::All)]
        );
        assert_eq!(plan.orders, vec![Order::Random, Order::ReverseRanked]);
        assert_eq!(plan.dataset, dir.join("d"));
        assert_eq!(plan.pretrain.epochs, 3);
        assert_eq!(plan.finetune.epochs, 20);
        assert_eq!(Size::All(AllTag::All).resolve(7), 7);
        assert_eq!(Size::N(9).resolve(7), 7);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_bad_plans_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("ndt-plan-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (text, needle) in [
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = []\n",
                "sizes",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nsizes = [1]\n",
                "held-out",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\nbogus = 3\n",
                "bogus",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\n[pretrain]\nschemes = [\"sideways\"]\n",
                "sideways",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\nshuffles = 1000000000000\n",
                "`shuffles`",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\n[finetune]\nlr = nan\n",
                "`finetune.lr`",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\n[pretrain]\nlr = inf\n",
                "`pretrain.lr`",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\n[rank]\nlr = 1e39\n",
                "lr",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\n[single]\nepochs = 3074457345618258603\n",
                "`single.epochs`",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\n[model]\nd_model = 0.5\n",
                "[model]",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\ncheckpoint_every = \"-3m\"\n",
                "checkpoint_every",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\ncheckpoint_every = \"5 fortnights\"\n",
                "checkpoint_every",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\ncheckpoint_every = -2\n",
                "checkpoint_every",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\nmodels_per_device = 0\n",
                "models_per_device",
            ),
            (
                "dataset = \"d\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\nmodels_per_device = \"many\"\n",
                "models_per_device",
            ),
        ] {
            let p = write(&dir, text);
            let err = Plan::load(&p).unwrap_err().to_string();
            assert!(err.contains("plan.toml") && err.contains(needle), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
