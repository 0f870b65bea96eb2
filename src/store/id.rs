//! The one rule for names that become paths (SPEC §9): session ids, subjects, labs, job ids.
//!
//! An id is 1 to `MAX_ID_LEN` ASCII characters from `[A-Za-z0-9._-]`, starts with a letter or
//! a digit, and holds no `..`. So it has no separator, is never `.` or `..`, never hides as a
//! dot-file, never reads as a flag, and joined to a directory it names a child of that directory.
//! IBL eids (UUIDs), subject nicknames and the synthetic ids all follow it.

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Checks `id` against the rule; `what` names it in the message ("session id", "subject").
pub fn check_id(what: &str, id: &str) -> Result<(), String> {
    let shown = || {
        let head: String = id.chars().take(40).collect();
        if head.len() < id.len() {
            format!("`{}...`", head.escape_debug())
        } else {
            format!("`{}`", head.escape_debug())
        }
    };
    if id.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "{what} {} is {} bytes long (at most {MAX_ID_LEN})",
            shown(),
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{what} {} holds `{}` (allowed: letters, digits, `.`, `_`, `-`)",
            shown(),
            c.escape_debug()
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{what} {} must start with a letter or a digit",
            shown()
        ));
    }
    if id.contains("..") {
        return Err(format!("{what} {} holds `..`", shown()));
    }
    Ok(())
}

/// Whether `id` follows the rule.
pub fn is_valid_id(id: &str) -> bool {
    check_id("id", id).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_ids_of_real_data() {
        for id in [
            "db4df448-e449-4a6f-a0e7-288711e7a75a",
            "CSHL_015",
            "KS023",
            "m1_reaching",
            "rs-s003",
            "a",
            &"x".repeat(MAX_ID_LEN),
        ] {
            assert!(check_id("session id", id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_whatever_could_leave_a_directory_or_hide_in_one() {
        for id in [
            "",
            ".",
            "..",
            "/../../../../x",
            "../x",
            "a/b",
            "a\\b",
            "a..b",
            ".hidden",
            "-flag",
            "_x",
            "a b",
            "a\0b",
            "é",
            &"x".repeat(MAX_ID_LEN + 1),
        ] {
            let err = check_id("session id", id).expect_err(id);
            assert!(err.starts_with("session id"), "{err}");
        }
    }
}
