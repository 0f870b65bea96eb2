//! The four masking schemes of SPEC §3. Their order is the order of `mask_tokens` rows.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    CoSmooth = 0,
    Forward = 1,
    InterRegion = 2,
    IntraRegion = 3,
}

impl Scheme {
    pub const ALL: [Scheme; 4] = [
        Scheme::CoSmooth,
        Scheme::Forward,
        Scheme::InterRegion,
        Scheme::IntraRegion,
    ];

    /// Row of `mask_tokens` used as the prompt for this scheme.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Forward prediction uses causal attention; the other schemes do not.
    pub fn causal(self) -> bool {
        self == Scheme::Forward
    }

    /// Whether the scheme needs at least two regions in the session.
    pub fn needs_regions(self) -> bool {
        matches!(self, Scheme::InterRegion | Scheme::IntraRegion)
    }

    pub fn name(self) -> &'static str {
        match self {
            Scheme::CoSmooth => "co-smooth",
            Scheme::Forward => "forward",
            Scheme::InterRegion => "inter-region",
            Scheme::IntraRegion => "intra-region",
        }
    }

    pub fn parse(s: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Parses a comma-separated list such as `forward,co-smooth` or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<Scheme>, String> {
        if s == "all" {
            return Ok(Scheme::ALL.to_vec());
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let sc = Scheme::parse(part).ok_or_else(|| {
                format!("unknown masking scheme '{part}' (co-smooth, forward, inter-region, intra-region, all)")
            })?;
            if !out.contains(&sc) {
                out.push(sc);
            }
        }
        if out.is_empty() {
            return Err("no masking scheme given".into());
        }
        Ok(out)
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
