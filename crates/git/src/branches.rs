//! Listing branches by name prefix (the session branches of a task, for clean-up), through the
//! git CLI's `for-each-ref`, which matches a prefix in one call.

use crate::cli::{Git, nul_fields};
use crate::{Repository, Result};

impl Repository {
    /// The short names of the branches whose name starts with `prefix`, sorted.
    pub fn branches_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let bytes = Git::new(&self.dirs).run(&[
            "for-each-ref",
            "--format=%(refname:short)%00",
            "refs/heads/",
        ])?;
        let mut names: Vec<String> = nul_fields(&bytes)
            .into_iter()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty() && name.starts_with(prefix))
            .collect();
        names.sort();
        Ok(names)
    }
}
