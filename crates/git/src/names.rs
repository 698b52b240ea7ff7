//! Branch names: a slug from a task title, and git's `check-ref-format` rules for a branch.

/// Turns a title into a branch-name component: lowercase ASCII letters and digits, words joined by
/// single `-`, no leading or trailing `-`, at most `max_len` bytes (cut at a word boundary when one
/// fits, else inside the first word), `"task"` when nothing is left.
///
/// Letters outside ASCII are dropped after stripping the common Latin accents (`é` → `e`), so a
/// title in another script yields `"task"`; the caller adds a unique suffix anyway.
pub fn branch_slug(title: &str, max_len: usize) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in title.chars() {
        let mapped = fold_accent(c);
        match mapped {
            Some(c) if c.is_ascii_alphanumeric() => word.push(c.to_ascii_lowercase()),
            // Apostrophes join ("don't" → "dont") instead of splitting a word.
            _ if c == '\'' || c == '’' => {}
            _ => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let max_len = max_len.max(1);
    let mut slug = String::new();
    for word in &words {
        let needed = if slug.is_empty() {
            word.len()
        } else {
            slug.len() + 1 + word.len()
        };
        if needed <= max_len {
            if !slug.is_empty() {
                slug.push('-');
            }
            slug.push_str(word);
        } else {
            if slug.is_empty() {
                // One word longer than the limit: cut inside it (ASCII, so any byte is a boundary).
                slug.push_str(&word[..max_len]);
            }
            break;
        }
    }
    if slug.is_empty() {
        let mut fallback = "task".to_owned();
        fallback.truncate(max_len);
        return fallback;
    }
    slug
}

/// The ASCII letter a Latin letter with a diacritic stands for, or the character itself.
fn fold_accent(c: char) -> Option<char> {
    if c.is_ascii() {
        return Some(c);
    }
    let folded = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => 'a',
        'ç' | 'Ç' => 'c',
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'i',
        'ñ' | 'Ñ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => 'o',
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => 'u',
        'ý' | 'ÿ' | 'Ý' => 'y',
        'ß' => 's',
        _ => return None,
    };
    Some(folded)
}

/// Whether `refs/heads/<name>` is a name git accepts for a branch (`git check-ref-format
/// --branch`): no empty component or one starting with `.` or ending with `.lock`, no `..`, no
/// `@{`, not `@`, no ASCII control character, space, `~ ^ : ? * [ \`, no leading `-`, no
/// leading, trailing or doubled `/`, no trailing `.`, and not `HEAD`.
pub fn is_valid_branch_name(name: &str) -> bool {
    if name.is_empty() || name == "@" || name == "HEAD" || name.starts_with('-') {
        return false;
    }
    if name.ends_with('.') || name.contains("..") || name.contains("@{") {
        return false;
    }
    let bad_char = |c: char| {
        c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
    };
    if name.chars().any(bad_char) {
        return false;
    }
    name.split('/').all(|component| {
        !component.is_empty() && !component.starts_with('.') && !component.ends_with(".lock")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_join_lowercase_words() {
        assert_eq!(
            branch_slug("Add OAuth login (GitHub)!", 40),
            "add-oauth-login-github"
        );
        assert_eq!(branch_slug("  --Fix   the  bug--  ", 40), "fix-the-bug");
        assert_eq!(branch_slug("Don't crash on café", 40), "dont-crash-on-cafe");
    }

    #[test]
    fn slugs_cut_at_a_word_boundary() {
        assert_eq!(
            branch_slug("implement the planner route", 14),
            "implement-the"
        );
        assert_eq!(branch_slug("supercalifragilistic", 5), "super");
    }

    #[test]
    fn an_empty_slug_is_task() {
        assert_eq!(branch_slug("", 40), "task");
        assert_eq!(branch_slug("日本語 !!!", 40), "task");
        assert_eq!(branch_slug("x", 0), "x");
    }

    #[test]
    fn branch_names_follow_check_ref_format() {
        for good in [
            "main",
            "spectask/add-login-01h",
            "a/b/c",
            "v1.2",
            "x@y",
            "ü",
        ] {
            assert!(is_valid_branch_name(good), "{good} should be valid");
        }
        for bad in [
            "",
            "@",
            "HEAD",
            "-x",
            "a..b",
            "a/",
            "/a",
            "a//b",
            ".a",
            "a/.b",
            "a.lock",
            "a/b.lock/c",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "a@{1}",
            "a.",
            "a\tb",
            "a\u{7f}",
        ] {
            assert!(!is_valid_branch_name(bad), "{bad:?} should be invalid");
        }
    }
}
