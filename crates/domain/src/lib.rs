//! spectask's domain model: the entities of the seed architecture (SpecTask, Helix session,
//! work session, Zed thread, implementation task, spec revision, event), their typed ids, their
//! status machines, and the limits that input must respect.
//!
//! Architecture invariant: this crate does no I/O, reads no clock and draws no randomness. Time and
//! fresh ids are passed in by the caller, so everything here is deterministic and unit-testable.

pub mod agent_prompts;
pub mod check;
pub mod comment;
pub mod criteria;
pub mod entry;
pub mod enums;
pub mod event;
pub mod ids;
pub mod implementation_task;
pub mod limits;
pub mod permission;
pub mod plan;
pub mod prompts;
pub mod review;
pub mod revision;
pub mod session;
pub mod spec_output;
pub mod spec_task;
pub mod traceability;
pub mod transitions;
pub mod turn;
pub mod work_session;
pub mod workspace;
pub mod zed_thread;

pub use check::{CheckRun, CheckStatus};
pub use comment::{SpecComment, SpecCommentId, SpecDocument};
pub use criteria::{
    CriteriaParse, Criterion, TraceWarning, TraceWarningKind, covers, parse_criteria,
    trace_warnings,
};
pub use entry::{
    AgentPlanStep, EntryBody, EntryKind, InteractionEntry, PlanEntry, TextEntry, ToolCallContent,
    ToolCallEntry, ToolCallLocation, UsageCost, UsageEntry,
};
pub use enums::ParseEnumError;
pub use event::{Event, EventKind, NewEvent};
pub use ids::{
    AgentThreadId, CheckRunId, IdError, ImplementationTaskId, InstanceId, InteractionId,
    PermissionRequestId, SessionId, SpecTaskId, SpecTaskZedThreadId, ThreadOwner, TurnId,
    VerdictId, WorkSessionId,
};
pub use implementation_task::{ImplementationTaskStatus, SpecTaskImplementationTask};
pub use permission::{PermissionOption, PermissionRequest, PermissionRequestStatus};
pub use plan::{
    ParsedPlan, PlanError, PlanErrorKind, PlanFormat, PlanPhase, PlanSection, PlanTask,
    PlanTaskStatus, RenderedProgress, SkipReason, SkippedUpdate, parse_plan, render_progress,
    render_progress_report,
};
pub use revision::SpecRevision;
pub use session::{Interaction, InteractionState, Session, SessionRole};
pub use spec_output::{
    ImportedSpecsError, SpecDocuments, SpecOutputError, check_imported_specs, split_spec_files,
    split_spec_reply,
};
pub use spec_task::{NewSpecTask, Priority, SpecLayout, SpecTask, SpecTaskStatus, TaskType};
pub use transitions::{
    ImplementationTaskEvent, SpecTaskEvent, TransitionError, TurnEvent, WorkSessionEvent,
    ZedThreadEvent,
};
pub use turn::{Turn, TurnKind, TurnStatus};
pub use work_session::{SpecTaskWorkSession, WorkSessionPhase, WorkSessionStatus};
pub use workspace::{
    ApprovalMerge, FileOverlap, OverlapPolicy, OverlapWait, SessionCommit, WorkspaceChoice,
    WorkspaceIsolation, overlap_resume_note, workspace_choice,
};
pub use zed_thread::{SpecTaskZedThread, ZedThreadStatus};
