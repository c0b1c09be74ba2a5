//! Unambiguous byte encodings for associated data: every variable-length part is written
//! with its length in front, so no two different part lists encode to the same bytes.

/// Appends `bytes` preceded by its length as a big-endian `u64`.
pub(crate) fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // A `usize` length always fits in a `u64` on the targets Rampart supports.
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_a_part_differently_changes_the_encoding() {
        let encode = |parts: &[&str]| {
            let mut out = Vec::new();
            for part in parts {
                push_len_prefixed(&mut out, part.as_bytes());
            }
            out
        };
        assert_ne!(encode(&["ab", "c"]), encode(&["a", "bc"]));
        assert_ne!(encode(&["abc", ""]), encode(&["", "abc"]));
        assert_ne!(encode(&["a"]), encode(&["a", ""]));
    }
}
