//! Timing: recording the duration of every stream operation (events on a GPU, wall time on the
//! emulator) for `src/cuda/profile.rs`.

use super::Gpu;
use crate::cuda::profile::{OpTime, Recorder};
use crate::error::{Error, Result};

impl Gpu {
    /// Starts recording the time of every stream operation (`src/cuda/profile.rs`): launch
    /// the operations one by one, not as a graph, then call `profile_finish`.
    pub fn profile_start(&self) -> Result<()> {
        if self.capturing.get() {
            return Err(Error::Internal("profiling during graph capture".into()));
        }
        *self.profile.borrow_mut() = Some(Recorder::default());
        Ok(())
    }

    /// Stops recording; waits for the stream and returns the time of each operation since
    /// `profile_start`, in issue order (empty when none was started).
    pub fn profile_finish(&self) -> Result<Vec<OpTime>> {
        let rec = self.profile.borrow_mut().take();
        self.sync()?;
        rec.map_or(Ok(Vec::new()), Recorder::finish)
    }

    /// While recording: `note()` describes the next operation (a product's shape) and counts
    /// its floating-point operations.
    pub fn profile_note(&self, note: impl FnOnce() -> (String, f64)) {
        if let Some(rec) = self.profile.borrow_mut().as_mut()
            && !self.capturing.get()
        {
            rec.note = Some(note());
        }
    }

    /// Runs the stream operation `f`, timed when recording (and not capturing).
    pub(super) fn timed(
        &self,
        file: &'static str,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        f: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if self.capturing.get() || self.profile.borrow().is_none() {
            return f();
        }
        let mut f = Some(f);
        let stamp = self
            .engine
            .bracket(&mut || f.take().map_or(Ok(()), |f| f()))?;
        let op = OpTime {
            file,
            name,
            grid,
            block,
            note: String::new(),
            flops: 0.0,
            secs: 0.0,
        };
        if let Some(rec) = self.profile.borrow_mut().as_mut() {
            rec.push(op, stamp);
        }
        Ok(())
    }
}
