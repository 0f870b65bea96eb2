//! `ndt sweep PLAN.toml`: a plan becomes a list of **points** (held-out session × order × shuffle ×
//! size × seed, plus one baseline per held-out session and seed). Each point is one task: it runs
//! its prerequisites as content-addressed jobs (single-session models → ranking of the pool for
//! its held-out session → the pretrained model → finetune + evaluate), so points that share work
//! share jobs, whichever process reaches them first. Locally `--jobs K` runs K point tasks side
//! by side as child processes; on a cluster each Slurm array task runs one point.
//!
//! The training itself is behind the `Work` trait (implemented by `exp::work` with the real
//! trainer), which keeps this file about scheduling and caching.
//!
//! Result files are named from session ids (`points/<i>_<held-out>_....json`,
//! `rankings/<held-out>.json`), so every id is checked against the id rule
//! ([`check_id`](crate::store::check_id)) before a path is built from it, and every result file
//! records [`RESULTS_VERSION`]: files of another version are recomputed, and left out when
//! results are gathered.

use crate::error::{Result, input, internal};
use crate::exp::jobs::{Claim, Job, RESULTS_VERSION, content_hash, finish_all};
use crate::exp::plan::{Order, Plan, Stage};
use crate::exp::report::PointResult;
use crate::fsutil::write_atomic;
use crate::store::check_id;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a sweep needs done; the real implementation trains on a dataset.
pub trait Work {
    /// Trains a model from scratch on the train splits of `sessions`; returns its checkpoint
    /// (written under `work`, resuming from a checkpoint there if one exists).
    fn pretrain(
        &self,
        sessions: &[String],
        stage: &Stage,
        seed: u64,
        work: &Path,
    ) -> Result<PathBuf>;
    /// Finetunes `ckpt` on `session` (or trains from scratch when `ckpt` is None: the baseline)
    /// and evaluates it on the split (`"val"` or `"test"`), returning metric -> value
    /// (`forward`, `co-smooth`, ... per-neuron bps; `<task>.pooled`; `choice`).
    fn finetune_eval(&self, job: &FinetuneEval, work: &Path) -> Result<BTreeMap<String, f64>>;
    /// Evaluates `ckpt` as it is (no training) on `session`'s split, as `finetune_eval` does
    /// after its training (`only_forward`: forward prediction only).
    fn evaluate(
        &self,
        ckpt: &Path,
        session: &str,
        split: &str,
        only_forward: bool,
    ) -> Result<BTreeMap<String, f64>>;
    /// Train-split trial count of a session.
    fn train_trials(&self, session: &str) -> Result<usize>;
    /// How many finetunes of one shape to train side by side (`--models-per-device`).
    fn models_per_device(&self) -> crate::train::group::PerDevice {
        crate::train::group::PerDevice::K(1)
    }
    /// `finetune_eval` of every job (with its work folder), trained side by side; one result
    /// per job, in order: what `finetune_eval` returns for it alone.
    fn finetune_eval_group(
        &self,
        jobs: &[(FinetuneEval<'_>, PathBuf)],
    ) -> Vec<Result<BTreeMap<String, f64>>> {
        jobs.iter()
            .map(|(j, work)| self.finetune_eval(j, work))
            .collect()
    }
    /// `pretrain` of every `(sessions, stage, seed, work)`, trained side by side; one
    /// checkpoint per job, in order.
    fn pretrain_group(&self, jobs: &[(Vec<String>, Stage, u64, PathBuf)]) -> Vec<Result<PathBuf>> {
        jobs.iter()
            .map(|(sessions, stage, seed, work)| self.pretrain(sessions, stage, *seed, work))
            .collect()
    }
}

/// A finetune-then-evaluate request: `ckpt` None trains from scratch (the baseline);
/// `split` is `"val"` or `"test"`; `only_forward` skips every task but forward prediction.
pub struct FinetuneEval<'a> {
    pub ckpt: Option<&'a Path>,
    pub session: &'a str,
    pub stage: &'a Stage,
    pub seed: u64,
    pub split: &'a str,
    pub only_forward: bool,
    /// Also score the classical baselines (the plan's `baselines`).
    pub baselines: bool,
}

/// One evaluation of the sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub heldout: String,
    /// None for the baseline.
    pub order: Option<Order>,
    pub shuffle: usize,
    pub k: usize,
    pub seed: u64,
}

impl Point {
    pub fn label(&self) -> String {
        let o = self.order.as_ref().map(|o| o.name()).unwrap_or("baseline");
        format!(
            "{}_{o}_s{}_k{}_seed{}",
            self.heldout, self.shuffle, self.k, self.seed
        )
    }
}

/// A sweep: the plan, the pretraining pool and the held-out sessions.
pub struct Sweep {
    pub plan: Plan,
    /// Fingerprint of the dataset (hash of its manifest) that every job spec carries.
    pub dataset_key: String,
    pub pool: Vec<String>,
    pub heldout: Vec<String>,
    pub model: Value,
}

impl Sweep {
    /// `sessions` are the dataset's session ids in manifest order.
    pub fn new(
        plan: Plan,
        manifest_bytes: &[u8],
        sessions: &[String],
        plan_path: &Path,
    ) -> Result<Sweep> {
        // The dataset's ids were checked when its manifest was read; checked again here because
        // result paths are built from them.
        let manifest_path = plan.dataset.join(crate::store::manifest::MANIFEST_FILE);
        for id in sessions {
            check_id("session id", id).map_err(|m| input(&manifest_path, m))?;
        }
        let heldout: Vec<String> = if !plan.heldout.is_empty() {
            for h in &plan.heldout {
                check_id("held-out session id", h).map_err(|m| input(plan_path, m))?;
                if !sessions.contains(h) {
                    return Err(input(
                        plan_path,
                        format!("held-out session `{h}` is not in the dataset"),
                    ));
                }
            }
            plan.heldout.clone()
        } else {
            let n = plan.heldout_last.unwrap_or(0);
            if n >= sessions.len() {
                return Err(input(
                    plan_path,
                    format!("heldout_last = {n} leaves no pretraining session"),
                ));
            }
            sessions[sessions.len() - n..].to_vec()
        };
        let pool: Vec<String> = sessions
            .iter()
            .filter(|s| !heldout.contains(s))
            .cloned()
            .collect();
        if pool.is_empty() {
            return Err(input(
                plan_path,
                "no pretraining session left after the held-out ones",
            ));
        }
        let dataset_key = content_hash(&Value::String(
            String::from_utf8_lossy(manifest_bytes).into_owned(),
        ));
        let model = serde_json::to_value(&plan.model).map_err(|e| internal(e.to_string()))?;
        Ok(Sweep {
            plan,
            dataset_key,
            pool,
            heldout,
            model,
        })
    }

    pub fn root(&self) -> &Path {
        &self.plan.results
    }

    /// Every point of the plan, in a fixed order (the task index of `--task` and Slurm).
    pub fn points(&self) -> Vec<Point> {
        let p = &self.plan;
        let mut out = Vec::new();
        let mut sizes: Vec<usize> = p.sizes.iter().map(|s| s.resolve(self.pool.len())).collect();
        sizes.sort_unstable();
        sizes.dedup();
        for h in &self.heldout {
            for &seed in &p.seeds {
                out.push(Point {
                    heldout: h.clone(),
                    order: None,
                    shuffle: 0,
                    k: 0,
                    seed,
                });
            }
            for o in &p.orders {
                let shuffles = if *o == Order::Random { p.shuffles } else { 1 };
                for shuffle in 0..shuffles {
                    for &k in &sizes {
                        for &seed in &p.seeds {
                            out.push(Point {
                                heldout: h.clone(),
                                order: Some(o.clone()),
                                shuffle,
                                k,
                                seed,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// The `shuffle`-th random order of the pool (the same for every held-out session).
    pub fn random_order(&self, shuffle: usize) -> Vec<String> {
        let mut v = self.pool.clone();
        let key = crate::rng::key(0x05ee_d0f0_bde5, shuffle as u64);
        for i in (1..v.len()).rev() {
            let j = crate::rng::below(key, i as u64, (i + 1) as u32) as usize;
            v.swap(i, j);
        }
        v
    }

    fn stage_json(&self, st: &Stage) -> Value {
        serde_json::to_value(st).unwrap_or(Value::Null)
    }

    pub(crate) fn single_job(&self, session: &str) -> Job {
        let spec = json!({"dataset": self.dataset_key, "model": self.model, "sessions": [session],
            "stage": self.stage_json(&self.plan.single), "seed": self.plan.seeds[0]});
        Job::new(self.root(), "pretrain", spec)
    }

    fn pretrain_job(&self, sessions: &[String], seed: u64) -> Job {
        let mut s = sessions.to_vec();
        s.sort();
        let spec = json!({"dataset": self.dataset_key, "model": self.model, "sessions": s,
            "stage": self.stage_json(&self.plan.pretrain), "seed": seed});
        Job::new(self.root(), "pretrain", spec)
    }

    /// What a pretraining job trains: its sessions (in the spec's order, sorted), stage and seed.
    fn pretrain_args(job: &Job) -> Result<(Vec<String>, Stage, u64)> {
        let sessions: Vec<String> = serde_json::from_value(job.spec["sessions"].clone())
            .map_err(|e| internal(e.to_string()))?;
        let stage: Stage = serde_json::from_value(job.spec["stage"].clone())
            .map_err(|e| internal(e.to_string()))?;
        let seed = job.spec["seed"].as_u64().unwrap_or(42);
        Ok((sessions, stage, seed))
    }

    pub(crate) fn run_pretrain(&self, job: &Job, w: &dyn Work) -> Result<PathBuf> {
        let (sessions, stage, seed) = Self::pretrain_args(job)?;
        let r = job.run(|work| {
            let t0 = crate::exp::rank_methods::cpu_seconds();
            let ckpt = w.pretrain(&sessions, &stage, seed, work)?;
            let cpu_s = crate::exp::rank_methods::cpu_seconds() - t0;
            Ok(json!({"checkpoint": ckpt, "cpu_s": cpu_s}))
        })?;
        r["checkpoint"].as_str().map(PathBuf::from).ok_or_else(|| {
            input(
                job.result_path(),
                "corrupt job result: no `checkpoint` string",
            )
        })
    }

    /// Ranking of the pool for a held-out session: each single-session model finetuned
    /// frozen-core on its train split, scored by forward bps on its val split, best first.
    /// A session without a finite score (a diverged or degenerate model) ranks last, with a
    /// warning on stderr and in the ranking file.
    pub fn ranking(&self, heldout: &str, w: &dyn Work) -> Result<Vec<(String, f64)>> {
        let r = crate::exp::rank_methods::finetune_ranking(self, heldout, &self.plan.rank, w)?;
        crate::exp::rank_methods::write_ranking(self, &r, "rankings")?;
        Ok(r.scores)
    }

    /// The ranking the plan's `rank_method` asks for (the full one by default).
    fn plan_ranking(&self, heldout: &str, w: &dyn Work) -> Result<Vec<(String, f64)>> {
        use crate::exp::rank_methods::{Method, rank};
        match self.plan.rank_method.as_deref() {
            None | Some("full") => self.ranking(heldout, w),
            Some(m) => Ok(rank(self, heldout, &Method::parse(m, None)?, w)?.scores),
        }
    }

    /// The order of the pool a point pretrains from.
    fn order_of(&self, p: &Point, w: &dyn Work) -> Result<Vec<String>> {
        Ok(match &p.order {
            None => Vec::new(),
            Some(Order::Random) => self.random_order(p.shuffle),
            Some(Order::Ranked) => self
                .plan_ranking(&p.heldout, w)?
                .into_iter()
                .map(|x| x.0)
                .collect(),
            Some(Order::ReverseRanked) => {
                // Worst scored first; sessions without a finite score stay last here too.
                let (scored, unscored): (Vec<_>, Vec<_>) = self
                    .plan_ranking(&p.heldout, w)?
                    .into_iter()
                    .partition(|x| x.1.is_finite());
                scored
                    .into_iter()
                    .rev()
                    .chain(unscored)
                    .map(|x| x.0)
                    .collect()
            }
        })
    }

    /// Where point `i` records its result; `p` is one of [`points`](Self::points), whose ids
    /// `new` checked.
    pub fn point_path(&self, i: usize, p: &Point) -> PathBuf {
        self.root()
            .join("points")
            .join(format!("{i:05}_{}.json", p.label()))
    }

    /// Whether point `i` has a result of the current [`RESULTS_VERSION`].
    pub fn point_done(&self, i: usize, p: &Point) -> bool {
        std::fs::read_to_string(self.point_path(i, p))
            .ok()
            .and_then(|t| serde_json::from_str::<PointResult>(&t).ok())
            .is_some_and(|r| r.results_version == RESULTS_VERSION)
    }

    /// What a point measures downstream: pretrains on `pretrained` (None: nothing, the
    /// from-scratch baseline, trained in full for the longer of the pretraining and finetuning
    /// epochs), finetunes on `heldout`'s train split with the plan's `[finetune]` stage and
    /// evaluates on its test split. Both are content-addressed jobs (the pretraining job's id
    /// does not depend on the order of `pretrained`), shared by every caller asking for the same
    /// sessions, held-out session and seed: the sweep's points and `ndt rank --downstream`.
    pub fn downstream(
        &self,
        heldout: &str,
        pretrained: Option<&[String]>,
        seed: u64,
        w: &dyn Work,
    ) -> Result<BTreeMap<String, f64>> {
        let (pretrain, job, stage) = self.downstream_jobs(heldout, pretrained, seed);
        let ckpt = match &pretrain {
            Some(job) => Some(self.run_pretrain(job, w)?),
            None => None,
        };
        let r = job.run(|work| {
            let req = self.eval_request(heldout, ckpt.as_deref(), &stage, seed);
            Ok(json!(w.finetune_eval(&req, work)?))
        })?;
        serde_json::from_value(r).map_err(|e| {
            input(
                job.result_path(),
                format!("corrupt job result: not a map of metric names to numbers ({e})"),
            )
        })
    }

    /// The jobs of `downstream`: the pretraining (None for the baseline), the finetune-and-
    /// evaluate job, and the finetuning stage.
    fn downstream_jobs(
        &self,
        heldout: &str,
        pretrained: Option<&[String]>,
        seed: u64,
    ) -> (Option<Job>, Job, Stage) {
        let pretrain = pretrained.map(|s| self.pretrain_job(s, seed));
        let mut stage = self.plan.finetune.clone();
        if pretrained.is_none() {
            // The baseline trains everything from scratch on the held-out session alone.
            stage.mode = Some("full".into());
            stage.epochs = self.plan.pretrain.epochs.max(stage.epochs);
        }
        let mut spec = json!({"dataset": self.dataset_key, "model": self.model,
            "pretrained": pretrain.as_ref().map(|j| j.spec.clone()),
            "heldout": heldout, "stage": self.stage_json(&stage), "seed": seed, "split": "test"});
        if self.plan.baselines {
            // Only when on, so the ids of evaluations without baselines stay what they were.
            spec["baselines"] = json!(true);
        }
        (pretrain, Job::new(self.root(), "eval", spec), stage)
    }

    /// What the eval job of `downstream` asks of the work.
    fn eval_request<'r>(
        &'r self,
        heldout: &'r str,
        ckpt: Option<&'r Path>,
        stage: &'r Stage,
        seed: u64,
    ) -> FinetuneEval<'r> {
        FinetuneEval {
            ckpt,
            session: heldout,
            stage,
            seed,
            split: "test",
            only_forward: false,
            baselines: self.plan.baselines,
        }
    }

    /// The pretraining `jobs` that no process has finished or is running, trained side by side (`Work::pretrain_group`) and their results
    /// written as `run_pretrain` writes them (`cpu_s`: the job's share of the group's).
    pub(crate) fn pretrain_side_by_side(&self, jobs: &[Job], w: &dyn Work) -> Result<()> {
        let mut claimed = Vec::new();
        let mut reqs: Vec<(Vec<String>, Stage, u64, PathBuf)> = Vec::new();
        for job in jobs {
            if let Claim::Mine(c) = job.try_claim()? {
                // What `run_pretrain` trains for the job, from its spec.
                let (sessions, stage, seed) = Self::pretrain_args(job)?;
                reqs.push((sessions, stage, seed, c.job.work_dir()));
                claimed.push(c);
            }
        }
        if claimed.is_empty() {
            return Ok(());
        }
        let t0 = crate::exp::rank_methods::cpu_seconds();
        let results = w.pretrain_group(&reqs);
        let share = (crate::exp::rank_methods::cpu_seconds() - t0) / reqs.len() as f64;
        finish_all(
            claimed,
            results,
            |ckpt| json!({"checkpoint": ckpt, "cpu_s": share}),
        )
    }

    /// With `--models-per-device` above 1: everything the points `todo` need, stage by stage,
    /// each stage's jobs side by side (the rankings' finetunes, then the pretrainings, then the
    /// finetune-and-evaluate jobs; `Work::finetune_eval_group`, `Work::pretrain_group`), so that
    /// running the points afterwards finds every job done. Jobs another process holds are left
    /// to it; the results are those of running the points one by one.
    pub fn side_by_side(&self, todo: &[usize], w: &dyn Work) -> Result<()> {
        let points = self.points();
        let todo: Vec<&Point> = todo.iter().filter_map(|&i| points.get(i)).collect();
        let mut ranked: Vec<String> = todo
            .iter()
            .filter(|p| matches!(p.order, Some(Order::Ranked | Order::ReverseRanked)))
            .map(|p| p.heldout.clone())
            .collect();
        ranked.sort();
        ranked.dedup();
        if matches!(self.plan.rank_method.as_deref(), None | Some("full")) && !ranked.is_empty() {
            crate::exp::rank_methods::finetune_side_by_side(self, &ranked, &self.plan.rank, w)?;
        }
        let mut pretrains: Vec<Job> = Vec::new();
        let mut evals: Vec<(String, Option<Job>, Job, Stage, u64)> = Vec::new();
        for p in &todo {
            let order = self.order_of(p, w)?;
            let sessions: Vec<String> = order.iter().take(p.k).cloned().collect();
            let pretrained = p.order.as_ref().map(|_| sessions.as_slice());
            let (pre, job, stage) = self.downstream_jobs(&p.heldout, pretrained, p.seed);
            if let Some(pj) = &pre
                && !pretrains.iter().any(|j| j.dir == pj.dir)
            {
                pretrains.push(pj.clone());
            }
            if !evals.iter().any(|e| e.2.dir == job.dir) {
                evals.push((p.heldout.clone(), pre, job, stage, p.seed));
            }
        }
        // The pretrainings.
        self.pretrain_side_by_side(&pretrains, w)?;
        // The finetune-and-evaluate jobs.
        let mut ckpts = Vec::with_capacity(evals.len());
        for (_, pre, ..) in &evals {
            ckpts.push(match pre {
                Some(pj) => Some(self.run_pretrain(pj, w)?),
                None => None,
            });
        }
        let mut claimed = Vec::new();
        let mut reqs: Vec<(FinetuneEval, PathBuf)> = Vec::new();
        for ((heldout, _, job, stage, seed), ckpt) in evals.iter().zip(&ckpts) {
            if let Claim::Mine(c) = job.try_claim()? {
                let req = self.eval_request(heldout, ckpt.as_deref(), stage, *seed);
                reqs.push((req, c.job.work_dir()));
                claimed.push(c);
            }
        }
        if claimed.is_empty() {
            return Ok(());
        }
        let results = w.finetune_eval_group(&reqs);
        finish_all(claimed, results, |m| json!(m))
    }

    /// Runs point `i` (with everything it needs) and records its labelled result.
    pub fn run_point(&self, i: usize, w: &dyn Work) -> Result<PointResult> {
        let points = self.points();
        let p = points.get(i).ok_or_else(|| {
            crate::error::usage(format!(
                "task {i} is out of range: the sweep has {} points",
                points.len()
            ))
        })?;
        let order = self.order_of(p, w)?;
        let sessions: Vec<String> = order.iter().take(p.k).cloned().collect();
        let pretrained = p.order.as_ref().map(|_| sessions.as_slice());
        let metrics = self.downstream(&p.heldout, pretrained, p.seed, w)?;
        let mut total_trials = 0;
        for s in &sessions {
            total_trials += w.train_trials(s)?;
        }
        let res = PointResult {
            results_version: RESULTS_VERSION,
            heldout: p.heldout.clone(),
            order: p.order.as_ref().into(),
            shuffle: p.shuffle,
            k: p.k,
            seed: p.seed,
            total_trials,
            full: p.order.is_some() && p.k == self.pool.len(),
            metrics,
        };
        let path = self.point_path(i, p);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(crate::error::io_at(dir))?;
        }
        let text = serde_json::to_string_pretty(&res).map_err(|e| internal(e.to_string()))?;
        write_atomic(&path, text.as_bytes())?;
        Ok(res)
    }
}

/// Sorts a ranking best first: finite scores descending, then the sessions without a finite
/// score (NaN, missing, infinite: a degenerate model) last; ties by session id.
pub fn sort_ranking(scores: &mut [(String, f64)]) {
    scores.sort_by(|a, b| {
        let by_score = match (a.1.is_finite(), b.1.is_finite()) {
            (true, true) => b.1.total_cmp(&a.1),
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            (false, false) => std::cmp::Ordering::Equal,
        };
        by_score.then(a.0.cmp(&b.0))
    });
}

/// The `results_version` a result file records (0 for files written before it was recorded).
fn version_of(v: &Value) -> u64 {
    v.get("results_version")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Says on stderr which result files were left out for being of another results version.
fn note_stale(what: &str, stale: &[(PathBuf, u64)]) {
    if let Some((first, v)) = stale.first() {
        eprintln!(
            "note: left out {} {what} of another results version (e.g. {}: version {v}, \
             current {RESULTS_VERSION}); rerun the sweep to recompute them",
            stale.len(),
            first.display()
        );
    }
}

/// Reads every recorded ranking of the current [`RESULTS_VERSION`] under `results/rankings`:
/// held-out id -> sessions, best first. Rankings of another version are left out with a note.
pub fn gather_rankings(results: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let dir = results.join("rankings");
    let mut out = BTreeMap::new();
    let mut stale = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(crate::error::io(&dir, e)),
    };
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = crate::fsutil::read_text(&p)?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| input(&p, format!("not a ranking: {e}")))?;
        if version_of(&v) != RESULTS_VERSION as u64 {
            stale.push((p.clone(), version_of(&v)));
            continue;
        }
        let h = v["heldout"]
            .as_str()
            .ok_or_else(|| input(&p, "ranking without `heldout`"))?
            .to_string();
        check_id("held-out session id", &h).map_err(|m| input(&p, m))?;
        let list = v["ranking"]
            .as_array()
            .ok_or_else(|| input(&p, "ranking without `ranking` list"))?
            .iter()
            .filter_map(|r| r["session"].as_str().map(String::from))
            .collect();
        out.insert(h, list);
    }
    note_stale("rankings", &stale);
    Ok(out)
}

/// Reads every recorded point result of the current [`RESULTS_VERSION`] under `results/points`;
/// results of another version are left out with a note. The report names files after the
/// held-out ids, so a result whose id breaks the id rule is refused, naming its file.
pub fn gather(results: &Path) -> Result<Vec<PointResult>> {
    let dir = results.join("points");
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(crate::error::io(&dir, e)),
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut stale = Vec::new();
    for p in paths {
        let text = crate::fsutil::read_text(&p)?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| input(&p, format!("not a point result: {e}")))?;
        if version_of(&v) != RESULTS_VERSION as u64 {
            stale.push((p, version_of(&v)));
            continue;
        }
        let r: PointResult =
            serde_json::from_value(v).map_err(|e| input(&p, format!("not a point result: {e}")))?;
        check_id("held-out session id", &r.heldout).map_err(|m| input(&p, m))?;
        out.push(r);
    }
    note_stale("point results", &stale);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A stand-in whose "bps" is a known function of the pretraining set, recording its calls.
    struct Fake {
        calls: RefCell<Vec<String>>,
        /// A session whose single-session model is degenerate: its ranking score is NaN.
        degenerate: Option<&'static str>,
    }

    fn fake() -> Fake {
        Fake {
            calls: RefCell::new(Vec::new()),
            degenerate: None,
        }
    }

    fn quality(s: &str) -> f64 {
        s.trim_start_matches('s').parse::<f64>().unwrap_or(0.0)
    }

    impl Work for Fake {
        fn pretrain(
            &self,
            sessions: &[String],
            _: &Stage,
            seed: u64,
            work: &Path,
        ) -> Result<PathBuf> {
            self.calls
                .borrow_mut()
                .push(format!("pretrain {sessions:?} {seed}"));
            let p = work.join("ckpt.txt");
            std::fs::write(&p, sessions.join(",")).unwrap();
            Ok(p)
        }
        fn finetune_eval(&self, job: &FinetuneEval, _: &Path) -> Result<BTreeMap<String, f64>> {
            self.calls
                .borrow_mut()
                .push(format!("eval {} {}", job.session, job.split));
            let q = match job.ckpt {
                Some(c) => {
                    let s = std::fs::read_to_string(c).unwrap();
                    if self.degenerate.is_some_and(|d| s == d) {
                        return Ok(BTreeMap::from([("forward".to_string(), f64::NAN)]));
                    }
                    s.split(',').map(quality).sum::<f64>() / 10.0
                }
                None => 0.0,
            };
            Ok(BTreeMap::from([("forward".to_string(), 0.1 + q)]))
        }
        fn evaluate(
            &self,
            _: &Path,
            session: &str,
            split: &str,
            _: bool,
        ) -> Result<BTreeMap<String, f64>> {
            self.calls
                .borrow_mut()
                .push(format!("evaluate {session} {split}"));
            Ok(BTreeMap::from([("forward".to_string(), 0.1)]))
        }
        fn train_trials(&self, _: &str) -> Result<usize> {
            Ok(80)
        }
    }

    fn sweep(dir: &Path) -> Sweep {
        try_sweep(dir, "h", &["s1", "s3", "s2", "h"]).unwrap()
    }

    fn try_sweep(dir: &Path, heldout: &str, sessions: &[&str]) -> Result<Sweep> {
        let plan_path = dir.join("plan.toml");
        let plan = format!(
            "dataset = \"d\"\nresults = \"r\"\nheldout = [{}]\nsizes = [1, 2, \"all\"]\n\
             shuffles = 2\nseeds = [1]\n",
            Value::String(heldout.into())
        );
        std::fs::write(&plan_path, plan).unwrap();
        let plan = Plan::load(&plan_path).unwrap();
        let sessions: Vec<String> = sessions.iter().map(|s| s.to_string()).collect();
        Sweep::new(plan, b"{}", &sessions, &plan_path)
    }

    #[test]
    fn ids_that_would_leave_the_results_folder_are_refused() {
        let dir = std::env::temp_dir().join(format!("ndt-sweep-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = "/../../../../x";
        // A held-out session of the plan, present in the dataset's list of ids.
        let err = try_sweep(&dir, bad, &["s1", "s2", bad]).err().unwrap();
        assert_eq!(err.exit_code(), 1);
        let msg = err.to_string();
        assert!(
            msg.contains("manifest.json") && msg.contains("holds `/`"),
            "{msg}"
        );
        // A held-out id of the plan alone.
        let err = try_sweep(&dir, "../x", &["s1", "s2"]).err().unwrap();
        assert!(err.to_string().contains("plan.toml"), "{err}");
        // A pool session.
        let err = try_sweep(&dir, "h", &["s1", "a/b", "h"]).err().unwrap();
        assert!(err.to_string().contains("`a/b`"), "{err}");
        // The ranking of an id nothing checked.
        let s = sweep(&dir);
        let err = s.ranking("../h", &fake()).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(!dir.join("h.json").exists() && !s.root().join("h.json").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_degenerate_model_ranks_last_with_a_warning() {
        let dir = std::env::temp_dir().join(format!("ndt-sweep-nan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = sweep(&dir);
        let w = Fake {
            degenerate: Some("s2"),
            ..fake()
        };
        let ranking = s.ranking("h", &w).unwrap();
        let order: Vec<&str> = ranking.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(order, ["s3", "s1", "s2"]);
        assert!(ranking[2].1.is_nan());
        let file: Value = serde_json::from_str(
            &std::fs::read_to_string(s.root().join("rankings/h.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(file["results_version"], RESULTS_VERSION);
        let warnings = file["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].as_str().unwrap().contains("s2"), "{file}");
        assert_eq!(gather_rankings(s.root()).unwrap()["h"], ["s3", "s1", "s2"]);
        // The reverse-ranked order starts from the worst finite score, not from the degenerate.
        let reverse = s
            .points()
            .into_iter()
            .find(|p| p.order == Some(Order::ReverseRanked))
            .unwrap();
        assert_eq!(s.order_of(&reverse, &w).unwrap(), ["s1", "s3", "s2"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sort_ranking_puts_every_non_finite_score_last() {
        let mut v: Vec<(String, f64)> = [
            ("a", f64::NAN),
            ("b", 0.1),
            ("c", f64::INFINITY),
            ("d", -f64::NAN),
            ("e", 0.3),
            ("f", f64::NEG_INFINITY),
        ]
        .iter()
        .map(|(s, x)| (s.to_string(), *x))
        .collect();
        sort_ranking(&mut v);
        let order: Vec<&str> = v.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(order, ["e", "b", "a", "c", "d", "f"]);
    }

    #[test]
    fn gather_leaves_out_other_versions_and_refuses_bad_ids() {
        let dir = std::env::temp_dir().join(format!("ndt-sweep-gather-{}", std::process::id()));
        let points = dir.join("points");
        std::fs::create_dir_all(&points).unwrap();
        let point = |version: Value, heldout: &str| {
            json!({"results_version": version, "heldout": heldout, "order": "baseline",
                "shuffle": 0, "k": 0, "seed": 1, "total_trials": 0, "full": false,
                "metrics": {"forward": 0.2}})
        };
        let write = |name: &str, v: Value| std::fs::write(points.join(name), v.to_string());
        write("00000_h.json", point(json!(RESULTS_VERSION), "h")).unwrap();
        write("00001_h.json", point(json!(RESULTS_VERSION + 1), "h")).unwrap();
        let mut old = point(json!(0), "h");
        old.as_object_mut().unwrap().remove("results_version");
        write("00002_h.json", old).unwrap();
        let got = gather(&dir).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].results_version, RESULTS_VERSION);
        write("00003_x.json", point(json!(RESULTS_VERSION), "../../x")).unwrap();
        let err = gather(&dir).unwrap_err();
        assert!(err.to_string().contains("00003_x.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn points_cover_orders_sizes_and_baseline() {
        let dir = std::env::temp_dir().join(format!("ndt-sweep-a-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = sweep(&dir);
        let pts = s.points();
        // 1 baseline + random (2 shuffles x 3 sizes) + ranked 3 + reverse 3
        assert_eq!(pts.len(), 1 + 6 + 3 + 3);
        assert_eq!(pts[0].order, None);
        assert_eq!(s.pool, vec!["s1", "s3", "s2"]);
        let mut r0 = s.random_order(0);
        r0.sort();
        assert_eq!(r0, vec!["s1", "s2", "s3"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ranked_order_follows_scores_and_jobs_are_shared() {
        let dir = std::env::temp_dir().join(format!("ndt-sweep-b-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = sweep(&dir);
        let w = fake();
        let ranking = s.ranking("h", &w).unwrap();
        assert_eq!(
            ranking.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            vec!["s3", "s2", "s1"]
        );
        let n_calls = w.calls.borrow().len();
        assert_eq!(
            n_calls, 6,
            "3 single-session models + 3 frozen-core finetunes"
        );
        for i in 0..s.points().len() {
            s.run_point(i, &w).unwrap();
        }
        let results = gather(s.root()).unwrap();
        assert_eq!(results.len(), s.points().len());
        let fwd = |o: &str, k: usize| {
            results
                .iter()
                .find(|r| r.order.name() == o && r.k == k)
                .unwrap()
                .metrics["forward"]
        };
        assert!(fwd("ranked", 1) > fwd("reverse-ranked", 1));
        // k = all is the same set of sessions for every order: one pretraining job, not four.
        let all = w
            .calls
            .borrow()
            .iter()
            .filter(|c| c.starts_with("pretrain") && c.contains("\"s1\", \"s2\", \"s3\""))
            .count();
        assert_eq!(all, 1);
        // Rerunning finishes nothing new.
        let before = w.calls.borrow().len();
        for i in 0..s.points().len() {
            s.run_point(i, &w).unwrap();
        }
        assert_eq!(w.calls.borrow().len(), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
