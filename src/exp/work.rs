//! The sweep's `Work` on a real dataset: pretraining, finetuning and evaluation through the
//! trainer and evaluator.

use crate::error::{Result, usage};
use crate::exp::plan::{Plan, Stage};
use crate::exp::sweep::{FinetuneEval, Work};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct DatasetWork {
    pub dataset: PathBuf,
    pub threads: usize,
}

impl DatasetWork {
    pub fn new(plan: &Plan, threads: usize) -> Result<DatasetWork> {
        Ok(DatasetWork {
            dataset: plan.dataset.clone(),
            threads,
        })
    }
}

impl Work for DatasetWork {
    fn pretrain(&self, _: &[String], _: &Stage, _: u64, _: &Path) -> Result<PathBuf> {
        Err(usage("sweep training is not wired to the trainer yet"))
    }
    fn finetune_eval(&self, _: &FinetuneEval, _: &Path) -> Result<BTreeMap<String, f64>> {
        Err(usage("sweep training is not wired to the trainer yet"))
    }
    fn train_trials(&self, _: &str) -> Result<usize> {
        Err(usage("sweep training is not wired to the trainer yet"))
    }
}
