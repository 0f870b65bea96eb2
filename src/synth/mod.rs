//! Synthetic multi-session datasets with known heterogeneity (SPEC §1), `ndt synth`.
//!
//! - `model`: the generative model (latent dynamics per region, Poisson neurons, behaviour).
//! - `similarity`: the ground-truth session-similarity matrix.
//!
//! [`Plan::new`] draws every dataset-level parameter from the seed (regions, animals, which
//! regions and how many trials and neurons each session has, one seed per session);
//! [`generate`] then writes the sessions in parallel, each trial from its own random stream, so
//! the bytes on disk depend on the seed only, never on the thread count. Counts are streamed to
//! the store trial by trial: memory holds one trial per thread, never a session.

pub mod model;
pub mod similarity;

use crate::error::{Result, internal, usage};
use crate::store::{DatasetWriter, NewSession, check_id};
use model::{Behaviour, Dynamics, Perturbation, RegionBase, SessionModel, Timing};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;
use similarity::{SessionSubspaces, Subspace};
use std::path::Path;

/// Which regions sessions record (explicit heterogeneity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// RepeatedSite-like: every session records the same regions.
    Rs,
    /// Brain-wide-map-like: each session records a few regions of a large pool.
    Bwm,
}

/// How the animals' perturbations of the shared dynamics relate (implicit heterogeneity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AnimalLayout {
    /// Each animal draws its own perturbation: every pair of animals is about equally far apart.
    Independent,
    /// Animals sit at evenly spaced points `t_a` in [-1, 1] along one shared perturbation, so
    /// animals with nearby indices are similar and similarity falls off with `|t_a - t_b|`.
    Line,
}

/// Everything that determines a synthetic dataset; recorded in the manifest as `extra.synth.knobs`.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub preset: Preset,
    pub sessions: usize,
    pub seed: u64,
    pub animals: usize,
    /// Trials per session, inclusive range.
    pub trials: (usize, usize),
    /// Neurons per session, inclusive range.
    pub neurons: (usize, usize),
    pub bins: usize,
    pub onset_bin: usize,
    pub bin_size_s: f64,
    /// Latent dimensions per region (even).
    pub latents: usize,
    /// `rs`: regions every session records; `bwm`: size of the region pool.
    pub regions: usize,
    /// `bwm`: regions per session, inclusive range (ignored by `rs`).
    pub regions_per_session: (usize, usize),
    /// Scale of each animal's perturbation of the shared dynamics (0: all animals alike).
    pub animal_strength: f64,
    /// How the animals' perturbations relate.
    pub animal_layout: AnimalLayout,
    /// Scale of each session's own perturbation on top of its animal's.
    pub session_strength: f64,
    /// Mean firing rate across neurons, Hz.
    pub rate_hz: f64,
    /// Gain of the choice-related ramp in the latents (0: activity carries no choice beyond the
    /// stimulus).
    pub choice_signal: f64,
    /// Seed of the stored train/val/test split.
    pub split_seed: u64,
}

impl Config {
    /// Defaults of a preset (realistic ranges, moderate size).
    pub fn preset(preset: Preset) -> Config {
        let (regions, per) = match preset {
            Preset::Rs => (5, (5, 5)),
            Preset::Bwm => (60, (2, 5)),
        };
        Config {
            preset,
            sessions: 20,
            seed: 0,
            animals: 5,
            trials: (300, 900),
            neurons: (250, 1000),
            bins: 150,
            onset_bin: 25,
            bin_size_s: 0.02,
            latents: 4,
            regions,
            regions_per_session: per,
            animal_strength: 1.0,
            animal_layout: AnimalLayout::Independent,
            session_strength: 0.25,
            rate_hz: 4.0,
            choice_signal: 1.0,
            split_seed: crate::store::writer::DEFAULT_SPLIT_SEED,
        }
    }

    /// Checks every knob; errors name the flag.
    pub fn validate(&self) -> Result<()> {
        let range = |name: &str, (lo, hi): (usize, usize), min: usize| -> Result<()> {
            if lo < min || hi < lo {
                return Err(usage(format!(
                    "--{name} {lo}..{hi}: need {min} <= MIN <= MAX"
                )));
            }
            Ok(())
        };
        if self.sessions == 0 {
            return Err(usage("--sessions must be at least 1"));
        }
        if self.animals == 0 || self.animals > self.sessions {
            return Err(usage(format!(
                "--animals {} must be between 1 and the number of sessions ({})",
                self.animals, self.sessions
            )));
        }
        range("trials", self.trials, 10)?;
        range("neurons", self.neurons, 1)?;
        if self.trials.1 > u32::MAX as usize {
            return Err(usage("--trials: too many trials per session"));
        }
        if self.onset_bin == 0 || self.onset_bin + 10 > self.bins {
            return Err(usage(format!(
                "--bins {} with --onset-bin {}: need 1 <= onset and onset + 10 <= bins",
                self.bins, self.onset_bin
            )));
        }
        if self.latents < 2 || !self.latents.is_multiple_of(2) || self.latents > 64 {
            return Err(usage(format!(
                "--latents {}: need an even number from 2 to 64",
                self.latents
            )));
        }
        if self.regions == 0 {
            return Err(usage("--regions must be at least 1"));
        }
        if self.preset == Preset::Bwm {
            range("regions-per-session", self.regions_per_session, 1)?;
            if self.regions_per_session.1 > self.regions {
                return Err(usage(format!(
                    "--regions-per-session {}..{} exceeds the pool of {} regions (--regions)",
                    self.regions_per_session.0, self.regions_per_session.1, self.regions
                )));
            }
        }
        let finite_nonneg = |name: &str, v: f64| -> Result<()> {
            if !(v.is_finite() && v >= 0.0) {
                return Err(usage(format!("--{name} {v}: need a finite value >= 0")));
            }
            Ok(())
        };
        finite_nonneg("animal-strength", self.animal_strength)?;
        finite_nonneg("session-strength", self.session_strength)?;
        finite_nonneg("choice-signal", self.choice_signal)?;
        if !(self.rate_hz.is_finite() && self.rate_hz > 0.0 && self.rate_hz <= 100.0) {
            return Err(usage(format!(
                "--rate {}: need 0 < rate <= 100 Hz",
                self.rate_hz
            )));
        }
        if !(self.bin_size_s.is_finite() && self.bin_size_s > 0.0 && self.bin_size_s <= 1.0) {
            return Err(usage(format!(
                "--bin-size {}: need 0 < size <= 1 s",
                self.bin_size_s
            )));
        }
        Ok(())
    }

    fn timing(&self) -> Timing {
        Timing {
            bins: self.bins,
            onset: self.onset_bin,
        }
    }
}

/// Region names: the RepeatedSite targets first, then other Allen acronyms; `R<k>` beyond.
const REGION_NAMES: [&str; 60] = [
    "VISa", "CA1", "DG", "LP", "PO", "MOs", "MOp", "SSp-bfd", "VISp", "VISam", "VISl", "ACA", "PL",
    "ILA", "ORBm", "CP", "ACB", "GPe", "SNr", "VTA", "APN", "MRN", "SCm", "SCs", "PAG", "ZI",
    "LGd", "VPM", "VPL", "MD", "CA3", "SUB", "ENTl", "RSPv", "RSPd", "CLA", "BLA", "LA", "PIR",
    "OT", "LSr", "MS", "RT", "AUDp", "TEa", "ECT", "PERI", "GRN", "IRN", "PRNr", "SIM", "CENT",
    "CUL", "NOD", "PF", "CM", "SNc", "RN", "IC", "CEA",
];

fn region_name(k: usize) -> String {
    REGION_NAMES
        .get(k)
        .map_or_else(|| format!("R{k:03}"), |s| s.to_string())
}

/// One animal: behaviour and its perturbation of every pool region.
pub struct Animal {
    pub name: String,
    pub lab: String,
    pub behaviour: Behaviour,
    perturb: Vec<Perturbation>,
}

/// The scale and the draw that perturb `animal`'s dynamics. Every animal's draw is made under
/// either layout, so the rest of the dataset does not depend on the layout.
fn animal_perturbation<'a>(
    cfg: &Config,
    animals: &'a [Animal],
    animal: usize,
) -> (f64, &'a Animal) {
    match cfg.animal_layout {
        AnimalLayout::Independent => (cfg.animal_strength, &animals[animal]),
        AnimalLayout::Line => {
            let t = if animals.len() > 1 {
                2.0 * animal as f64 / (animals.len() - 1) as f64 - 1.0
            } else {
                0.0
            };
            (cfg.animal_strength * t, &animals[0])
        }
    }
}

/// One session's dataset-level parameters.
pub struct SessionPlan {
    pub index: usize,
    pub id: String,
    pub animal: usize,
    /// Pool indices of the recorded regions, in recording order.
    pub regions: Vec<usize>,
    pub n_trials: usize,
    pub n_neurons: usize,
    pub seed: u64,
    /// Effective dynamics of each recorded region.
    pub dynamics: Vec<Dynamics>,
}

/// All dataset-level parameters, drawn from the seed.
pub struct Plan {
    pub config: Config,
    pub pool: Vec<RegionBase>,
    pub animals: Vec<Animal>,
    pub sessions: Vec<SessionPlan>,
}

/// Stream of the per-session model parameters in each session's generator (trials use 1..).
const SESSION_PARAM_STREAM: u64 = 0;

impl Plan {
    pub fn new(cfg: &Config) -> Result<Plan> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let d = cfg.latents;
        let pool: Vec<RegionBase> = (0..cfg.regions)
            .map(|k| {
                RegionBase::sample(&mut rng, region_name(k), d, cfg.choice_signal, cfg.timing())
            })
            .collect();
        let labs = cfg.animals.div_ceil(3).max(1);
        let animals: Vec<Animal> = (0..cfg.animals)
            .map(|a| Animal {
                name: format!("SYN{a:03}"),
                lab: format!("synlab{}", a % labs),
                behaviour: Behaviour {
                    sensitivity: 2.5
                        * (0.25 * rng.sample::<f64, _>(rand_distr::StandardNormal)).exp(),
                    bias: 0.3 * rng.sample::<f64, _>(rand_distr::StandardNormal),
                },
                perturb: (0..cfg.regions)
                    .map(|_| Perturbation::sample(&mut rng, d))
                    .collect(),
            })
            .collect();
        // Every animal gets sessions: a shuffled round robin.
        let mut owner: Vec<usize> = (0..cfg.sessions).map(|i| i % cfg.animals).collect();
        owner.shuffle(&mut rng);
        let mut sessions = Vec::with_capacity(cfg.sessions);
        for (index, &animal) in owner.iter().enumerate() {
            let n_trials = rng.random_range(cfg.trials.0..=cfg.trials.1);
            let n_neurons = rng.random_range(cfg.neurons.0..=cfg.neurons.1);
            let mut regions: Vec<usize> = match cfg.preset {
                Preset::Rs => (0..cfg.regions).collect(),
                Preset::Bwm => {
                    let k = rng.random_range(cfg.regions_per_session.0..=cfg.regions_per_session.1);
                    rand::seq::index::sample(&mut rng, cfg.regions, k).into_vec()
                }
            };
            regions.sort_unstable();
            // A session cannot record more regions than it has neurons.
            regions.truncate(n_neurons);
            let own: Vec<Perturbation> = regions
                .iter()
                .map(|_| Perturbation::sample(&mut rng, d))
                .collect();
            let (scale, shared) = animal_perturbation(cfg, &animals, animal);
            let dynamics = regions
                .iter()
                .zip(&own)
                .map(|(&r, p)| {
                    pool[r].dynamics(&[(scale, &shared.perturb[r]), (cfg.session_strength, p)])
                })
                .collect();
            sessions.push(SessionPlan {
                index,
                id: format!("syn-{index:04}"),
                animal,
                regions,
                n_trials,
                n_neurons,
                seed: rng.random(),
                dynamics,
            });
        }
        // Ids become file names (SPEC §9); the generated ones follow the rule by construction.
        let names = sessions.iter().map(|s| ("session id", &s.id)).chain(
            animals
                .iter()
                .flat_map(|a| [("subject", &a.name), ("lab", &a.lab)]),
        );
        for (what, id) in names {
            check_id(what, id).map_err(|m| internal(format!("synthetic {m}")))?;
        }
        Ok(Plan {
            config: cfg.clone(),
            pool,
            animals,
            sessions,
        })
    }

    /// Session-level parameters and trials of one session (drawn from its own seed).
    pub fn session_model(&self, sp: &SessionPlan) -> Result<SessionModel> {
        let cfg = &self.config;
        let mut rng = ChaCha8Rng::seed_from_u64(sp.seed);
        rng.set_stream(SESSION_PARAM_STREAM);
        let counts = model::split_neurons(&mut rng, sp.n_neurons, sp.regions.len())?;
        let (neuron_region, baseline, loading) =
            model::sample_neurons(&mut rng, &counts, cfg.latents, cfg.rate_hz, cfg.bin_size_s);
        let trials = model::sample_trials(
            &mut rng,
            sp.n_trials,
            self.animals[sp.animal].behaviour,
            cfg.timing(),
        );
        Ok(SessionModel {
            timing: cfg.timing(),
            dynamics: sp.dynamics.clone(),
            neuron_region,
            baseline,
            loading,
            trials,
            seed: sp.seed,
            max_log_rate: model::max_log_rate(cfg.bin_size_s),
        })
    }

    /// The metadata the store records for one session.
    pub fn new_session(&self, sp: &SessionPlan, m: &SessionModel) -> NewSession {
        let cfg = &self.config;
        let animal = &self.animals[sp.animal];
        let regions = m
            .neuron_region
            .iter()
            .map(|&r| self.pool[sp.regions[r]].name.clone())
            .collect();
        let per_trial = |f: &dyn Fn(&model::TrialInfo) -> f32| m.trials.iter().map(f).collect();
        NewSession {
            id: sp.id.clone(),
            subject: animal.name.clone(),
            lab: animal.lab.clone(),
            animal: Some(animal.name.clone()),
            n_trials: sp.n_trials,
            n_bins: cfg.bins,
            n_neurons: m.n_neurons(),
            bin_size_s: cfg.bin_size_s,
            onset_bin: Some(cfg.onset_bin),
            regions,
            choice: m.trials.iter().map(|t| t.choice).collect(),
            behaviour: vec![
                ("contrast".into(), per_trial(&|t| t.signed_contrast())),
                ("reward".into(), per_trial(&|t| t.reward())),
                ("block".into(), per_trial(&|t| t.block)),
            ],
            provenance: json!({
                "importer": "synth",
                "preset": cfg.preset,
                "seed": cfg.seed,
                "session_index": sp.index,
                "session_seed": sp.seed,
            }),
        }
    }

    /// The ground-truth session-similarity matrix (see `similarity`).
    pub fn similarity(&self) -> Vec<Vec<f64>> {
        let timing = self.config.timing();
        let subs: Vec<SessionSubspaces> = self
            .sessions
            .par_iter()
            .map(|sp| SessionSubspaces {
                regions: sp.regions.clone(),
                subspaces: sp
                    .dynamics
                    .iter()
                    .map(|dy| Subspace::of(dy, timing))
                    .collect(),
            })
            .collect();
        similarity::similarity_matrix(&subs)
    }

    /// `extra.synth` of the manifest: preset, knobs, animals, sessions and the similarity matrix.
    pub fn manifest_extra(&self) -> serde_json::Value {
        let sim = self.similarity();
        json!({
            "generator": format!("ndt synth {}", env!("CARGO_PKG_VERSION")),
            "preset": self.config.preset,
            "knobs": self.config,
            "region_pool": self.pool.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            "animals": self.animals.iter().map(|a| json!({
                "name": a.name,
                "lab": a.lab,
                "sensitivity": a.behaviour.sensitivity,
                "bias": a.behaviour.bias,
            })).collect::<Vec<_>>(),
            "sessions": self.sessions.iter().map(|s| json!({
                "id": s.id,
                "animal": self.animals[s.animal].name,
                "regions": s.regions.iter().map(|&r| self.pool[r].name.clone()).collect::<Vec<_>>(),
                "n_trials": s.n_trials,
                "n_neurons": s.n_neurons,
            })).collect::<Vec<_>>(),
            "similarity": {
                "definition": "S[i][j] = sum over regions recorded by both sessions of the mean \
                    squared canonical correlation between the column spaces of their noise-free \
                    latent trajectories under four canonical conditions, divided by the number of \
                    regions recorded by either session; S[i][i] = 1 (docs/synth.md)",
                "ids": self.sessions.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
                "matrix": sim,
            },
        })
    }
}

/// What `generate` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub sessions: usize,
    pub trials: usize,
    /// Bytes of spike counts written (sum of n_trials * n_bins * n_neurons).
    pub count_bytes: u64,
}

/// Writes the dataset of `cfg` to a new dataset directory `out`, with `threads` worker threads
/// (0: rayon's default).
pub fn generate(cfg: &Config, out: &Path, threads: usize) -> Result<Summary> {
    let plan = Plan::new(cfg)?;
    if out.join(crate::store::manifest::MANIFEST_FILE).exists() {
        return Err(usage(format!(
            "{} already holds a dataset; ndt synth writes a new one (give a new directory)",
            out.display()
        )));
    }
    let writer = DatasetWriter::open(out, cfg.split_seed)?;
    let work = || -> Result<Vec<u64>> {
        plan.sessions
            .par_iter()
            .map(|sp| write_session(&plan, sp, &writer))
            .collect()
    };
    let bytes = if threads == 0 {
        work()?
    } else {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| internal(format!("thread pool: {e}")))?
            .install(work)?
    };
    writer.set_extra("synth", plan.manifest_extra());
    writer.commit()?;
    Ok(Summary {
        sessions: plan.sessions.len(),
        trials: plan.sessions.iter().map(|s| s.n_trials).sum(),
        count_bytes: bytes.iter().sum(),
    })
}

/// Streams one session into the writer; returns the bytes of counts written.
fn write_session(plan: &Plan, sp: &SessionPlan, writer: &DatasetWriter) -> Result<u64> {
    let model = plan.session_model(sp)?;
    let ns = plan.new_session(sp, &model);
    let bytes = (ns.n_trials * ns.n_bins * ns.n_neurons) as u64;
    let mut scratch = model::Scratch::default();
    writer.add_session_ordered(sp.index as u64, ns, &mut |t, buf| {
        model.fill_trial(t, buf, &mut scratch)
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_follow_the_id_rule_past_four_digits() {
        let mut cfg = Config::preset(Preset::Rs);
        cfg.sessions = 10_001;
        cfg.animals = 1_001;
        let plan = Plan::new(&cfg).unwrap();
        assert_eq!(plan.sessions[10_000].id, "syn-10000");
        assert_eq!(plan.animals[1_000].name, "SYN1000");
        for s in &plan.sessions {
            assert!(crate::store::is_valid_id(&s.id), "{}", s.id);
        }
        for a in &plan.animals {
            assert!(crate::store::is_valid_id(&a.name) && crate::store::is_valid_id(&a.lab));
        }
    }
}
