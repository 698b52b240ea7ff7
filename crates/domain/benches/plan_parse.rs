//! Parser throughput on a large plan: a generated Kiro-style `tasks.md` of about 1 MiB with
//! 5,000 tasks (100 ordered phases of 10 top-level tasks with four sub-tasks each, with detail
//! bullets, requirement references, dependencies and a code block now and then).
//! Target: well under 50 ms.

use std::fmt::Write as _;

use criterion::{Criterion, criterion_group, criterion_main};
use spectask_domain::{PlanTaskStatus, parse_plan, render_progress};

/// About 1 MiB of plan with exactly 5,000 tasks.
fn big_plan() -> String {
    let mut md = String::from("# Implementation Plan\n\n");
    for phase in 0..100 {
        let _ = writeln!(md, "## Phase {}: Area {phase}\n", phase + 1);
        for t in 0..10 {
            let n = phase * 10 + t + 1;
            let _ = writeln!(
                md,
                "- [ ] {n}. Implement component {n} of the billing subsystem"
            );
            for s in 1..=4 {
                let mark = if (n + s) % 3 == 0 { 'x' } else { ' ' };
                let _ = writeln!(
                    md,
                    "  - [{mark}] {n}.{s} Write the handler, the storage adapter and tests for part {s}\n    \
                     - Validate every field of the request payload against the schema\n    \
                     - Record an audit event with the actor, the change and the timestamp\n    \
                     - _Requirements: {n}.{s}, {}.1_",
                    n % 40 + 1
                );
                if s > 1 {
                    let _ = writeln!(md, "    - _Depends: {n}.{}_", s - 1);
                }
                if s == 4 && n % 10 == 0 {
                    md.push_str("\n    ```rust\n    fn handler() -> Result<(), Error> {\n        Ok(())\n    }\n    ```\n");
                }
            }
            md.push('\n');
        }
    }
    md
}

fn bench(c: &mut Criterion) {
    let md = big_plan();
    let plan = parse_plan(&md);
    assert_eq!(plan.tasks.len(), 5_000);
    assert!(plan.errors.is_empty());
    eprintln!("plan size: {} bytes, {} tasks", md.len(), plan.tasks.len());
    let mut group = c.benchmark_group("plan");
    group.sample_size(30);
    group.bench_function("parse_1mib_5000_tasks", |b| b.iter(|| parse_plan(&md)));
    let updates: Vec<(String, PlanTaskStatus)> = plan
        .tasks
        .iter()
        .step_by(7)
        .map(|t| (t.key.clone(), PlanTaskStatus::Completed))
        .collect();
    group.bench_function("render_progress_1mib_715_updates", |b| {
        b.iter(|| render_progress(&md, updates.iter().map(|(k, s)| (k.as_str(), *s))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
