//! `ndt synth`: generate a synthetic multi-session dataset (docs/synth.md).

use crate::error::{Result, usage};
use crate::synth::{self, AnimalLayout, Config, Preset};
use std::path::PathBuf;

/// Generate a synthetic dataset with explicit (region) and implicit (animal) heterogeneity.
///
/// Defaults follow the preset; `--tiny` switches the size defaults to a small demo dataset
/// (6 sessions, 40..80 neurons, 64..96 trials). Explicit flags always win.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// rs: every session records the same regions; bwm: few regions per session from a large pool.
    #[arg(long, value_enum)]
    pub preset: Preset,
    /// New dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Small demo sizes (explicit --sessions/--trials/--neurons override).
    #[arg(long)]
    pub tiny: bool,
    /// Number of sessions [default: 20; tiny: 6].
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Random seed; the dataset's bytes depend on it alone.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of animals the sessions come from [default: sessions / 4, at least 1; tiny: 2].
    #[arg(long)]
    pub animals: Option<usize>,
    /// Trials per session, MIN..MAX or N [default: 300..900; tiny: 64..96].
    #[arg(long, value_parser = parse_range)]
    pub trials: Option<(usize, usize)>,
    /// Neurons per session, MIN..MAX or N [default: 250..1000; tiny: 40..80].
    #[arg(long, value_parser = parse_range)]
    pub neurons: Option<(usize, usize)>,
    /// Time bins per trial.
    #[arg(long, default_value_t = 150)]
    pub bins: usize,
    /// Bin of stimulus onset.
    #[arg(long, default_value_t = 25)]
    pub onset_bin: usize,
    /// Bin width in seconds.
    #[arg(long, default_value_t = 0.02)]
    pub bin_size: f64,
    /// Latent dimensions per region (even).
    #[arg(long, default_value_t = 4)]
    pub latents: usize,
    /// rs: regions every session records [default 5]; bwm: size of the region pool [default 60].
    #[arg(long)]
    pub regions: Option<usize>,
    /// bwm: regions per session, MIN..MAX or N.
    #[arg(long, value_parser = parse_range, default_value = "2..5")]
    pub regions_per_session: (usize, usize),
    /// Strength of each animal's perturbation of the shared region dynamics (0 = none).
    #[arg(long, default_value_t = 1.0)]
    pub animal_strength: f64,
    /// independent: each animal perturbs the dynamics its own way; line: animals evenly spaced
    /// along one perturbation, so similarity falls off with the distance between animal indices.
    #[arg(long, value_enum, default_value_t = AnimalLayout::Independent)]
    pub animal_layout: AnimalLayout,
    /// Strength of each session's own perturbation on top of its animal's (0 = none).
    #[arg(long, default_value_t = 0.25)]
    pub session_strength: f64,
    /// Mean firing rate, Hz.
    #[arg(long, default_value_t = 4.0)]
    pub rate: f64,
    /// Gain of the choice-related ramp in the latents.
    #[arg(long, default_value_t = 1.0)]
    pub choice_signal: f64,
    /// Seed of the stored train/val/test split.
    #[arg(long, default_value_t = 42)]
    pub split_seed: u64,
    /// Worker threads (0 = all cores); the output does not depend on it.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `MIN..MAX`, `MIN..=MAX` or a single `N`.
pub fn parse_range(s: &str) -> std::result::Result<(usize, usize), String> {
    let num = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{s}` is not N or MIN..MAX with non-negative integers"))
    };
    match s.split_once("..") {
        Some((a, b)) => {
            let (lo, hi) = (num(a)?, num(b.strip_prefix('=').unwrap_or(b))?);
            if lo > hi {
                return Err(format!("`{s}`: MIN is larger than MAX"));
            }
            Ok((lo, hi))
        }
        None => num(s).map(|n| (n, n)),
    }
}

impl Args {
    /// The generator configuration these flags describe.
    pub fn config(&self) -> Config {
        let mut c = Config::preset(self.preset);
        if self.tiny {
            c.sessions = 6;
            c.trials = (64, 96);
            c.neurons = (40, 80);
        }
        if let Some(k) = self.sessions {
            c.sessions = k;
        }
        c.animals = match (self.animals, self.tiny) {
            (Some(a), _) => a,
            (None, true) if self.sessions.is_none() => 2,
            _ => (c.sessions / 4).max(1),
        };
        if let Some(t) = self.trials {
            c.trials = t;
        }
        if let Some(n) = self.neurons {
            c.neurons = n;
        }
        if let Some(r) = self.regions {
            c.regions = r;
        }
        if c.preset == Preset::Bwm {
            c.regions_per_session = self.regions_per_session;
        } else {
            c.regions_per_session = (c.regions, c.regions);
        }
        c.seed = self.seed;
        c.bins = self.bins;
        c.onset_bin = self.onset_bin;
        c.bin_size_s = self.bin_size;
        c.latents = self.latents;
        c.animal_strength = self.animal_strength;
        c.animal_layout = self.animal_layout;
        c.session_strength = self.session_strength;
        c.rate_hz = self.rate;
        c.choice_signal = self.choice_signal;
        c.split_seed = self.split_seed;
        c
    }
}

pub fn run(args: Args) -> Result<()> {
    let cfg = args.config();
    let start = std::time::Instant::now();
    let summary = synth::generate(&cfg, &args.out, args.threads)?;
    let secs = start.elapsed().as_secs_f64();
    if args.json {
        let v = serde_json::json!({
            "out": args.out,
            "summary": summary,
            "seconds": secs,
        });
        let s = serde_json::to_string_pretty(&v).map_err(|e| usage(e.to_string()))?;
        println!("{s}");
    } else {
        println!(
            "wrote {} sessions, {} trials, {:.1} MB of counts to {} in {:.1} s ({:.1} MB/s)",
            summary.sessions,
            summary.trials,
            summary.count_bytes as f64 / 1e6,
            args.out.display(),
            secs,
            summary.count_bytes as f64 / 1e6 / secs.max(1e-9),
        );
    }
    Ok(())
}
