//! Plans in other languages: Japanese, Chinese and Portuguese.

use spectask_domain::PlanFormat;

use crate::support::{description, fixture, phase_titles, row, rows};

#[test]
fn japanese_kiro_plan() {
    let plan = fixture("japanese.md");
    assert_eq!(plan.title.as_deref(), Some("実装計画"));
    assert_eq!(plan.format, PlanFormat::Kiro);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let expected = vec![
        row(
            "1",
            "プロジェクト構成のセットアップ",
            None,
            None,
            "pending",
            &[],
            &["1.1"],
            "",
        ),
        row(
            "2",
            "データモデルの実装",
            None,
            None,
            "pending",
            &[],
            &[],
            "",
        ),
        row(
            "2.1",
            "ユーザーモデルを作成する",
            Some("2"),
            None,
            "completed",
            &[],
            &["2.1", "2.2"],
            "",
        ),
        row(
            "2.2",
            "リポジトリを実装する",
            Some("2"),
            None,
            "pending",
            &["2.1"],
            &[],
            "",
        ),
        row(
            "3",
            "チェックポイント - すべてのテストが通ることを確認する",
            None,
            None,
            "pending",
            &["1", "2"],
            &[],
            "C",
        ),
    ];
    assert_eq!(rows(&plan), expected);
    assert_eq!(
        description(&plan, "2.1"),
        Some("- バリデーションを実装する")
    );
}

#[test]
fn chinese_heading_plan() {
    let plan = fixture("chinese.md");
    assert_eq!(plan.format, PlanFormat::Headings);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let expected = vec![
        row("1", "创建导出表", None, None, "none", &[], &[], ""),
        row(
            "2",
            "实现导出接口",
            None,
            None,
            "none",
            &["1"],
            &["3.1", "3.2"],
            "",
        ),
        row("3", "前端导出按钮", None, None, "none", &["2"], &[], ""),
    ];
    assert_eq!(rows(&plan), expected);
    let first = plan.task("1").unwrap();
    assert_eq!(
        first.acceptance_criteria,
        ["迁移可以在 SQLite 上执行", "回滚会删除该表"]
    );
    assert_eq!(
        first.description.as_deref(),
        Some("新增 `exports` 表，保存导出任务的状态。")
    );
    assert_eq!(
        plan.task("3").unwrap().estimated_effort.as_deref(),
        Some("半天")
    );
}

#[test]
fn portuguese_plan_with_phases() {
    let plan = fixture("portuguese.md");
    assert_eq!(plan.format, PlanFormat::Kiro);
    assert_eq!(
        phase_titles(&plan),
        ["Fase 1: Infraestrutura", "Fase 2: Funcionalidades"]
    );
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let expected = vec![
        row(
            "1",
            "Configurar o provedor de e-mail",
            None,
            Some(0),
            "completed",
            &[],
            &["1.1"],
            "",
        ),
        row(
            "2",
            "Criar a fila de envio",
            None,
            Some(0),
            "pending",
            &[],
            &["1.2"],
            "",
        ),
        row(
            "3",
            "Enviar e-mail de boas-vindas",
            None,
            Some(1),
            "pending",
            &["2"],
            &[],
            "",
        ),
        row(
            "4",
            "Enviar resumo semanal",
            None,
            Some(1),
            "in_progress",
            &["1", "2"],
            &[],
            "",
        ),
    ];
    assert_eq!(rows(&plan), expected);
    assert_eq!(
        plan.task("4").unwrap().acceptance_criteria,
        [
            "O resumo chega às segundas-feiras",
            "O usuário pode cancelar a inscrição"
        ]
    );
    assert_eq!(description(&plan, "4"), None);
}
