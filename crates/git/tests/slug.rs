//! `branch_slug` as a property: for any title and length it never panics and yields a valid,
//! bounded branch-name component.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use proptest::prelude::*;
use spectask_git::{branch_slug, is_valid_branch_name};

proptest! {
    #[test]
    fn a_slug_is_always_a_valid_ref_component(title in any::<String>(), max_len in 1usize..80) {
        let slug = branch_slug(&title, max_len);
        prop_assert!(!slug.is_empty());
        prop_assert!(slug.len() <= max_len, "{slug:?} longer than {max_len}");
        prop_assert!(slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        prop_assert!(!slug.starts_with('-') && !slug.ends_with('-') && !slug.contains("--"));
        prop_assert!(is_valid_branch_name(&slug));
        let branch = format!("spectask/{slug}-01hx");
        prop_assert!(is_valid_branch_name(&branch));
    }

    #[test]
    fn wordy_titles_keep_whole_words(words in proptest::collection::vec("[a-z]{1,8}", 1..12), max_len in 8usize..60) {
        let title = words.join(" ");
        let slug = branch_slug(&title, max_len);
        // Cut at a word boundary: the slug is a prefix of whole words (or the first word cut).
        let joined = words.join("-");
        prop_assert!(joined.starts_with(&slug));
        let rest = &joined[slug.len()..];
        prop_assert!(rest.is_empty() || rest.starts_with('-') || slug.len() == max_len);
    }
}
