//! How often a run writes its resume state and checkpoints (`--checkpoint-every`, the plan key
//! `checkpoint_every`): every N epochs (`50`, `50e`; `0` = every epoch) or every so much wall
//! time (`90s`, `10m`, `2h`). Whatever the cadence, a run also writes at its end (or at
//! `--stop-after`) and when a stop signal arrives (see `train::signals`).

use std::time::Duration;

/// Write every `Epochs(n)` finished epochs, or once `Time(d)` has passed since the last write
/// (checked at every step boundary).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cadence {
    Epochs(u64),
    Time(Duration),
}

/// The default: 10 minutes. At the paper's job sizes a write of `best`, `last` and the resume
/// state is hundreds of megabytes and about half a second on the CPU, so writing after every
/// epoch costs ~15% of a run's time and 267 MB per epoch; once per 10 minutes bounds both the
/// overhead (< 0.1%) and the work a `kill -9` can lose (10 minutes).
pub const DEFAULT: Cadence = Cadence::Time(Duration::from_secs(600));

/// The default as the command line writes it.
pub const DEFAULT_TEXT: &str = "10m";

impl Cadence {
    /// Parses `N`, `Ne` (epochs; 0 = every epoch) or `Xs`, `Xm`, `Xh` (wall time, X >= 0, may
    /// have a fraction; 0 = every epoch). The message says what is wrong, not where.
    pub fn parse(text: &str) -> Result<Cadence, String> {
        let t = text.trim();
        let bad = || {
            format!(
                "`{text}` is not a checkpoint cadence: use epochs (`50` or `50e`; `0` = every epoch) \
                 or a time (`90s`, `10m`, `2h`)"
            )
        };
        if t.is_empty() {
            return Err(bad());
        }
        let (num, unit) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], Some(c)),
            _ => (t, None),
        };
        match unit {
            None | Some('e') => {
                if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let n: u64 = num.parse().map_err(|_| bad())?;
                Ok(Cadence::Epochs(n.max(1)))
            }
            Some(u @ ('s' | 'm' | 'h')) => {
                if num.is_empty()
                    || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                    || num.bytes().filter(|&b| b == b'.').count() > 1
                {
                    return Err(bad());
                }
                let x: f64 = num.parse().map_err(|_| bad())?;
                let secs = x * match u {
                    's' => 1.0,
                    'm' => 60.0,
                    _ => 3600.0,
                };
                if !secs.is_finite() || secs > 1e9 {
                    return Err(bad());
                }
                if secs == 0.0 {
                    return Ok(Cadence::Epochs(1));
                }
                Ok(Cadence::Time(Duration::from_secs_f64(secs)))
            }
            Some(_) => Err(bad()),
        }
    }

    /// Whether a write is due after `epochs_since` finished epochs and `elapsed` time since the
    /// last write (at an epoch boundary).
    pub fn due_at_epoch(&self, epochs_since: u64, elapsed: Duration) -> bool {
        match *self {
            Cadence::Epochs(n) => epochs_since >= n,
            Cadence::Time(d) => elapsed >= d,
        }
    }

    /// Whether a write is due part way through an epoch (only a time cadence writes there).
    pub fn due_mid_epoch(&self, elapsed: Duration) -> bool {
        match *self {
            Cadence::Epochs(_) => false,
            Cadence::Time(d) => elapsed >= d,
        }
    }
}

impl Default for Cadence {
    fn default() -> Self {
        DEFAULT
    }
}

impl std::fmt::Display for Cadence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cadence::Epochs(n) => write!(f, "{n}e"),
            Cadence::Time(d) => write!(f, "{}s", d.as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_epochs_and_times() {
        assert_eq!(Cadence::parse("50"), Ok(Cadence::Epochs(50)));
        assert_eq!(Cadence::parse("50e"), Ok(Cadence::Epochs(50)));
        assert_eq!(Cadence::parse("0"), Ok(Cadence::Epochs(1)));
        assert_eq!(Cadence::parse("0m"), Ok(Cadence::Epochs(1)));
        assert_eq!(
            Cadence::parse("10m"),
            Ok(Cadence::Time(Duration::from_secs(600)))
        );
        assert_eq!(
            Cadence::parse("1.5h"),
            Ok(Cadence::Time(Duration::from_secs(5400)))
        );
        assert_eq!(
            Cadence::parse("90s"),
            Ok(Cadence::Time(Duration::from_secs(90)))
        );
        assert_eq!(Cadence::parse(DEFAULT_TEXT), Ok(DEFAULT));
    }

    #[test]
    fn rejects_what_makes_no_sense() {
        for t in [
            "", "-5", "-1m", "ten", "10x", "1e5m", "m", "e", "5.5", "1..2m", "nanm", "inf", "3 m",
        ] {
            assert!(Cadence::parse(t).is_err(), "{t:?} accepted");
        }
    }

    #[test]
    fn due_rules() {
        let c = Cadence::Epochs(3);
        assert!(!c.due_at_epoch(2, Duration::from_secs(1_000_000)));
        assert!(c.due_at_epoch(3, Duration::ZERO));
        assert!(!c.due_mid_epoch(Duration::from_secs(1_000_000)));
        let t = Cadence::Time(Duration::from_secs(60));
        assert!(!t.due_at_epoch(1000, Duration::from_secs(59)));
        assert!(t.due_at_epoch(0, Duration::from_secs(60)));
        assert!(t.due_mid_epoch(Duration::from_secs(61)));
    }
}
