//! The words plans use, in the languages seen (English, Portuguese, Spanish, German, Japanese,
//! Chinese): task and phase words, metadata labels, section names, checkpoint and "none" words,
//! number words. Data only; [`super::text`] holds the matchers that use them.

use super::text::Label;

/// Words that introduce a task key: `Task 3`, `Step 2`, `Tarefa 1`, `タスク1`, `任务 2`.
pub(super) const TASK_WORDS: &[&str] = &[
    "task",
    "step",
    "tarefa",
    "passo",
    "tarea",
    "paso",
    "aufgabe",
    "schritt",
    "タスク",
    "ステップ",
    "手順",
    "任务",
    "任務",
    "步骤",
    "步驟",
];

/// Words that make a heading a phase: `Phase 2`, `Fase 1`, `フェーズ1`, `阶段一`.
pub(super) const PHASE_WORDS: &[&str] = &[
    "phase",
    "stage",
    "milestone",
    "fase",
    "etapa",
    "sprint",
    "フェーズ",
    "段階",
    "阶段",
    "階段",
    "里程碑",
];

pub(super) const CJK_PHASE_WORDS: &[&str] = &["フェーズ", "段階", "阶段", "階段"];

/// Labels, longest spelling first so `depends on` wins over `depends`.
pub(super) const LABELS: &[(&str, Label)] = &[
    ("depends on", Label::Depends),
    ("dependencies", Label::Depends),
    ("dependency", Label::Depends),
    ("depends", Label::Depends),
    ("blocked by", Label::Depends),
    ("depende de", Label::Depends),
    ("dependências", Label::Depends),
    ("dependencias", Label::Depends),
    ("dependência", Label::Depends),
    ("依存関係", Label::Depends),
    ("前提タスク", Label::Depends),
    ("依存", Label::Depends),
    ("依赖于", Label::Depends),
    ("依赖", Label::Depends),
    ("前置任务", Label::Depends),
    ("requirements", Label::Requirements),
    ("requirement", Label::Requirements),
    ("reqs", Label::Requirements),
    ("validates", Label::Requirements),
    ("implements", Label::Requirements),
    ("requisitos", Label::Requirements),
    ("requisito", Label::Requirements),
    ("関連要件", Label::Requirements),
    ("要件", Label::Requirements),
    ("对应需求", Label::Requirements),
    ("相关需求", Label::Requirements),
    ("需求", Label::Requirements),
    ("estimated effort", Label::Effort),
    ("effort estimate", Label::Effort),
    ("time estimate", Label::Effort),
    ("effort", Label::Effort),
    ("estimate", Label::Effort),
    ("estimation", Label::Effort),
    ("size", Label::Effort),
    ("esforço", Label::Effort),
    ("estimativa", Label::Effort),
    ("見積もり", Label::Effort),
    ("見積り", Label::Effort),
    ("工数", Label::Effort),
    ("工作量", Label::Effort),
    ("预估", Label::Effort),
    ("估算", Label::Effort),
    ("acceptance criteria", Label::Acceptance),
    ("acceptance", Label::Acceptance),
    ("done when", Label::Acceptance),
    ("definition of done", Label::Acceptance),
    ("critérios de aceitação", Label::Acceptance),
    ("critérios de aceite", Label::Acceptance),
    ("criterios de aceptación", Label::Acceptance),
    ("受け入れ基準", Label::Acceptance),
    ("受入基準", Label::Acceptance),
    ("完了条件", Label::Acceptance),
    ("验收标准", Label::Acceptance),
    ("验收条件", Label::Acceptance),
];

/// Dependency phrases that may be followed by the keys without a colon
/// (`- **Depends on T009, T010**`).
pub(super) const COLONLESS: &[&str] = &["depends on", "blocked by", "depende de"];

/// Section names that hold tasks but are not phases (`## Tasks`).
pub(super) const GENERIC_TASK_SECTIONS: &[&str] = &[
    "tasks",
    "task list",
    "implementation plan",
    "implementation tasks",
    "implementation steps",
    "implementation",
    "plan",
    "steps",
    "todo",
    "to do",
    "to-do",
    "work items",
    "tarefas",
    "passos",
    "plano de implementação",
    "tareas",
    "タスク",
    "タスク一覧",
    "実装計画",
    "実装タスク",
    "任务",
    "任务列表",
    "实施计划",
    "实现计划",
    "实施步骤",
];

/// Words hinting that a section lists the work (used to pick numbered lists).
pub(super) const TASK_SECTION_HINTS: &[&str] = &[
    "task",
    "step",
    "implementation",
    "plan",
    "todo",
    "to do",
    "work",
    "tarefa",
    "passo",
    "implementação",
    "plano",
    "tarea",
    "paso",
    "タスク",
    "手順",
    "実装",
    "ステップ",
    "任务",
    "步骤",
    "实施",
    "实现",
    "计划",
];

/// Numbered headings that are prose, not tasks (`## 1. Overview`).
pub(super) const PROSE_SECTIONS: &[&str] = &[
    "overview",
    "summary",
    "background",
    "context",
    "goals",
    "non-goals",
    "scope",
    "risks",
    "open questions",
    "notes",
    "references",
    "appendix",
    "introduction",
    "testing strategy",
    "rollout",
    "visão geral",
    "resumo",
    "contexto",
    "objetivos",
    "riscos",
    "概要",
    "背景",
    "目的",
    "概述",
    "目标",
    "风险",
];

pub(super) const CHECKPOINT_WORDS: &[&str] = &[
    "checkpoint",
    "ponto de verificação",
    "ponto de controle",
    "チェックポイント",
    "检查点",
];

pub(super) const NONE_WORDS: &[&str] = &[
    "none", "n/a", "na", "-", "—", "nothing", "no", "nenhuma", "nenhum", "ninguna", "ninguno",
    "なし", "無し", "无", "無",
];

/// Number words that may follow a phase word (`Phase One`, `Phase II`).
pub(super) const NUMBER_WORDS: &[&str] = &[
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "i", "ii",
    "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "um", "dois", "três", "quatro", "cinco",
];

pub(super) const CJK_NUMERALS: &str = "一二三四五六七八九十";
