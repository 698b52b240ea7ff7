//! How a planning turn ends once its output is checked, whoever wrote it (the LLM planner's reply
//! or an agent's files): valid documents become the next revision, invalid ones get one corrective
//! turn in the same session, and invalid ones after a correction fail the task.

use spectask_domain::{SpecDocuments, SpecOutputError, SpecTask, TurnKind};
use spectask_store::{PlanningOutput, TurnClaim};

use crate::{Engine, EngineError};

impl Engine {
    /// Ends the claimed planning turn with its checked output. `response` is what the
    /// interaction keeps; `correction` builds the corrective prompt; `source` names the output
    /// in a failure reason ("the planner's reply").
    pub(crate) async fn settle_planning_output(
        &self,
        claim: &TurnClaim,
        task: &SpecTask,
        checked: Result<SpecDocuments, SpecOutputError>,
        response: &str,
        correction: impl FnOnce(&SpecOutputError) -> String,
        source: &str,
    ) -> Result<(), EngineError> {
        let store = &self.inner.store;
        match checked {
            Ok(docs) => {
                let output = PlanningOutput {
                    title: docs.title,
                    requirements_spec: docs.requirements_spec,
                    technical_design: docs.technical_design,
                    implementation_plan: docs.implementation_plan,
                };
                let revision = store
                    .complete_planning_turn(claim, &output, response)
                    .await?;
                tracing::info!(revision = revision.revision, "specs generated");
                self.project(task, &revision).await;
            }
            Err(problems) if claim.turn.kind == TurnKind::Correction => {
                let reason = format!(
                    "{source} broke the output contract twice: {}",
                    problems.problems.join("; ")
                );
                store.fail_planning_turn(claim, response, &reason).await?;
                tracing::warn!(%reason, "planning failed");
            }
            Err(problems) => {
                store
                    .request_planning_correction(claim, response, &correction(&problems))
                    .await?;
                tracing::info!(
                    problems = problems.problems.len(),
                    "planning output invalid; corrective turn queued"
                );
            }
        }
        Ok(())
    }
}
