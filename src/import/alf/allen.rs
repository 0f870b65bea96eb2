//! Allen CCF 2017 structure ids to acronyms, from the table shipped in
//! `data/allen_ccf_2017/structures.csv` (source and licence in the README beside it).

use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("../../../data/allen_ccf_2017/structures.csv");

fn table() -> &'static HashMap<u64, &'static str> {
    static MAP: OnceLock<HashMap<u64, &'static str>> = OnceLock::new();
    MAP.get_or_init(|| {
        TABLE
            .lines()
            .skip(1)
            .filter_map(|line| {
                let (id, acronym) = line.split_once(',')?;
                Some((id.trim().parse().ok()?, acronym.trim()))
            })
            .collect()
    })
}

/// The acronym of Allen structure `id`; a negative id (IBL's mark of the left hemisphere)
/// names the same structure as its absolute value.
pub fn acronym(id: i64) -> Option<&'static str> {
    table().get(&id.unsigned_abs()).copied()
}

/// Number of structures in the table.
pub fn len() -> usize {
    table().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_whole_and_maps_both_hemispheres() {
        assert_eq!(len(), 1328);
        assert_eq!(acronym(997), Some("root"));
        assert_eq!(acronym(0), Some("void"));
        assert_eq!(acronym(382), Some("CA1"));
        assert_eq!(acronym(-382), Some("CA1"));
        assert_eq!(acronym(385), Some("VISp"));
        assert_eq!(acronym(123_456_789), None);
    }
}
