//! Shared set-up for the plan fixtures: reading a fixture and the rows every fixture asserts.

use spectask_domain::{ParsedPlan, PlanTaskStatus, parse_plan};

pub fn fixture(name: &str) -> ParsedPlan {
    let path = format!("{}/tests/fixtures/plans/{name}", env!("CARGO_MANIFEST_DIR"));
    let md = std::fs::read_to_string(&path).unwrap();
    parse_plan(&md)
}

/// The fields every fixture asserts for every task, in a diff-friendly shape.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub key: String,
    pub title: String,
    pub parent: Option<String>,
    pub phase: Option<usize>,
    pub status: PlanTaskStatus,
    pub depends_on: Vec<String>,
    pub requirement_refs: Vec<String>,
    /// `P` parallel, `O` optional, `C` checkpoint, `G` generated key.
    pub flags: String,
}

#[allow(clippy::too_many_arguments)]
pub fn row(
    key: &str,
    title: &str,
    parent: Option<&str>,
    phase: Option<usize>,
    status: &str,
    depends_on: &[&str],
    requirement_refs: &[&str],
    flags: &str,
) -> Row {
    Row {
        key: key.to_owned(),
        title: title.to_owned(),
        parent: parent.map(str::to_owned),
        phase,
        status: status.parse().unwrap(),
        depends_on: depends_on.iter().map(|s| s.to_string()).collect(),
        requirement_refs: requirement_refs.iter().map(|s| s.to_string()).collect(),
        flags: flags.to_owned(),
    }
}

pub fn rows(plan: &ParsedPlan) -> Vec<Row> {
    plan.tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            assert_eq!(t.index, i);
            let mut flags = String::new();
            for (on, c) in [
                (t.parallel, 'P'),
                (t.optional, 'O'),
                (t.checkpoint, 'C'),
                (t.key_generated, 'G'),
            ] {
                if on {
                    flags.push(c);
                }
            }
            Row {
                key: t.key.clone(),
                title: t.title.clone(),
                parent: t.parent.clone(),
                phase: t
                    .phase
                    .as_ref()
                    .map(|ph| plan.phases.iter().position(|p| &p.title == ph).unwrap()),
                status: t.status,
                depends_on: t.depends_on.clone(),
                requirement_refs: t.requirement_refs.clone(),
                flags,
            }
        })
        .collect()
}

pub fn phase_titles(plan: &ParsedPlan) -> Vec<&str> {
    plan.phases.iter().map(|p| p.title.as_str()).collect()
}

pub fn description<'p>(plan: &'p ParsedPlan, key: &str) -> Option<&'p str> {
    plan.task(key).unwrap().description.as_deref()
}
