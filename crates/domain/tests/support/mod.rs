//! What the domain's property tests share: Markdown-ish noise made of a test's own fragments.

use proptest::prelude::*;

/// Up to 40 lines, each up to 6 pieces: mostly `fragments` (the constructs the parser under test
/// looks for), sometimes arbitrary printable text.
pub fn markdownish(fragments: &'static [&'static str]) -> impl Strategy<Value = String> {
    let line = prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(fragments).prop_map(str::to_owned),
            1 => "\\PC{0,12}",
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat());
    prop::collection::vec(line, 0..40).prop_map(|lines| lines.join("\n"))
}
