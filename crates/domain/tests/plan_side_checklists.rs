//! Fixture tests for checklists beside a plan (issue 12, item 7): open questions (some struck
//! through once answered), verification and acceptance checks next to a numbered-list or
//! heading plan stay context and never outrank the plan, in English, German, French, Spanish,
//! Japanese, Chinese and Russian. A document whose only plan is such a checklist still gets it
//! as its tasks.

// Helpers outside #[test] fns are not covered by clippy's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

use spectask_domain::{ParsedPlan, PlanFormat, PlanTaskStatus, parse_plan};

fn fixture(name: &str) -> ParsedPlan {
    let path = format!("{}/tests/fixtures/plans/{name}", env!("CARGO_MANIFEST_DIR"));
    parse_plan(&std::fs::read_to_string(&path).unwrap())
}

/// Key, title and parent of every task, in order.
fn tasks(plan: &ParsedPlan) -> Vec<(&str, &str, Option<&str>)> {
    plan.tasks
        .iter()
        .map(|t| (t.key.as_str(), t.title.as_str(), t.parent.as_deref()))
        .collect()
}

/// The body of the context section under `heading`.
fn context<'p>(plan: &'p ParsedPlan, heading: &str) -> &'p str {
    plan.context
        .iter()
        .find(|c| c.heading.as_deref() == Some(heading))
        .map(|c| c.body.as_str())
        .unwrap_or_else(|| panic!("no context section `{heading}` in {:?}", plan.context))
}

fn assert_clean(plan: &ParsedPlan, format: PlanFormat) {
    assert_eq!(plan.format, format);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    assert!(
        plan.tasks
            .iter()
            .all(|t| t.status == PlanTaskStatus::NoCheckbox && !t.key_generated),
        "a checklist item became a task: {:?}",
        tasks(plan)
    );
}

#[test]
fn numbered_plan_beside_open_questions_and_verification() {
    let plan = fixture("side_numbered_questions.md");
    assert_clean(&plan, PlanFormat::Numbered);
    assert_eq!(
        tasks(&plan),
        [
            (
                "1",
                "Model — add `InvoiceExportRow` in `src/billing/export.rs`, one row per invoice \
                 line, amounts in minor units.",
                None
            ),
            (
                "2",
                "Query — `invoices_for_month(account, month)` in the repository, ordered by \
                 invoice number; reuse the existing index on `(account_id, issued_at)`.",
                None
            ),
            (
                "3",
                "Endpoint — `GET /billing/invoices/export?month=2024-05` streams the CSV with \
                 `Content-Disposition: attachment`.",
                None
            ),
            (
                "4",
                "UI — an \"Export CSV\" button next to the month picker.",
                None
            ),
        ]
    );
    assert!(context(&plan, "Open questions").contains("~~Do we need Excel compatibility"));
    assert!(context(&plan, "Verification").starts_with("- [ ] `cargo test -p billing` passes"));
}

#[test]
fn german_heading_plan_beside_open_questions_and_verification() {
    let plan = fixture("side_headings_german.md");
    assert_clean(&plan, PlanFormat::Headings);
    assert_eq!(
        tasks(&plan),
        [
            ("1", "Datenmodell", None),
            ("2", "Token erzeugen und versenden", None),
            ("3", "Passwort setzen", None),
        ]
    );
    assert!(context(&plan, "Offene Fragen").contains("sofort verfallen?"));
    assert!(context(&plan, "Verifikation").contains("Mailpit"));
}

#[test]
fn french_numbered_plan_beside_verification_and_questions() {
    let plan = fixture("side_numbered_french.md");
    assert_clean(&plan, PlanFormat::Numbered);
    assert_eq!(
        tasks(&plan),
        [
            (
                "1",
                "Ajouter les paramètres `cursor` et `limit` à `GET /articles/{id}/comments`",
                None
            ),
            (
                "2",
                "Renvoyer `next_cursor` dans la réponse, encodé en base64",
                None
            ),
            (
                "3",
                "Charger la page suivante dans le composant `CommentList` au défilement",
                None
            ),
            ("4", "Mettre à jour la documentation OpenAPI", None),
        ]
    );
    assert!(context(&plan, "Vérification").contains("moins de 300 ms"));
    assert!(context(&plan, "Questions ouvertes").contains("ancien comportement"));
}

#[test]
fn spanish_task_headings_beside_open_questions() {
    let plan = fixture("side_headings_spanish.md");
    assert_clean(&plan, PlanFormat::Headings);
    assert_eq!(
        tasks(&plan),
        [
            ("1", "Registro de dispositivos", None),
            ("2", "Servicio de envío", None),
            ("3", "Preferencias del usuario", None),
        ]
    );
    assert_eq!(plan.task("2").unwrap().depends_on, ["1"]);
    assert!(context(&plan, "Preguntas abiertas").contains("¿Enviamos notificaciones"));
}

#[test]
fn japanese_numbered_plan_beside_checks_and_a_list_of_questions() {
    let plan = fixture("side_numbered_japanese.md");
    assert_clean(&plan, PlanFormat::Numbered);
    assert_eq!(
        tasks(&plan),
        [
            (
                "1",
                "パーサー — `src/import/csv.rs` にヘッダー行を検証するパーサーを追加する",
                None
            ),
            (
                "2",
                "バリデーション — 必須列の欠落と重複IDをエラーとして行番号付きで返す",
                None
            ),
            (
                "3",
                "取り込み — 1000行ごとにトランザクションを分けて `products` に書き込む",
                None
            ),
            ("4", "画面 — アップロード画面にエラー一覧を表示する", None),
        ]
    );
    assert!(context(&plan, "検証").contains("1分以内"));
    // Under a neutral heading, but every item is a question.
    assert!(context(&plan, "メモ").contains("Shift_JIS"));
}

#[test]
fn russian_numbered_plan_beside_open_questions_and_checks() {
    let plan = fixture("side_numbered_russian.md");
    assert_clean(&plan, PlanFormat::Numbered);
    assert_eq!(
        tasks(&plan),
        [
            (
                "1",
                "Добавить библиотеку `printpdf` и модуль `report::pdf`",
                None
            ),
            (
                "2",
                "Сверстать шаблон отчёта: заголовок, таблица, итоги",
                None
            ),
            (
                "3",
                "Добавить кнопку «Скачать PDF» на страницу отчёта",
                None
            ),
        ]
    );
    assert!(context(&plan, "Открытые вопросы").contains("~~Какой шрифт"));
    assert!(context(&plan, "Проверка").contains("Кириллица"));
}

#[test]
fn chinese_heading_plan_keeps_questions_without_a_heading_in_the_last_task() {
    let plan = fixture("side_questions_only_chinese.md");
    assert_clean(&plan, PlanFormat::Headings);
    assert_eq!(
        tasks(&plan),
        [
            ("1", "数据查询", None),
            ("2", "导出接口", None),
            ("3", "前端按钮", None),
        ]
    );
    assert_eq!(
        plan.task("3").unwrap().description.as_deref(),
        Some(
            "在订单列表页增加“导出”按钮。\n\n- [ ] 是否需要包含已取消的订单？\n\
             - [ ] 导出文件是否需要加密？\n- [x] ~~是否支持 Excel？~~ 支持，使用 UTF-8 BOM。"
        )
    );
}

#[test]
fn a_checklist_with_no_other_plan_is_the_plan() {
    let plan = fixture("side_checklist_only.md");
    assert_eq!(plan.format, PlanFormat::Checklist);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    assert_eq!(
        tasks(&plan),
        [
            ("1", "Changelog updated", None),
            ("2", "Migration tested against a copy of production", None),
            ("3", "Smoke test on staging", None),
            ("3.1", "Login", Some("3")),
            ("3.2", "Checkout", Some("3")),
            ("4", "Tag `v2.4.0` and push", None),
        ]
    );
    let status: Vec<_> = plan.tasks.iter().map(|t| t.status).collect();
    assert_eq!(status[0], PlanTaskStatus::Completed);
    assert!(status[1..].iter().all(|&s| s == PlanTaskStatus::Pending));
}

#[test]
fn a_checkbox_plan_keeps_its_verification_checklist_as_tasks() {
    // The plan is made of checkboxes already: nothing outranks anything, as before.
    let plan = parse_plan(
        "## Tasks\n\n- [ ] 1. Add the column\n- [ ] 2. Backfill it\n\n\
         ## Verification\n\n- [ ] Tests pass\n",
    );
    assert_eq!(
        tasks(&plan),
        [
            ("1", "Add the column", None),
            ("2", "Backfill it", None),
            ("3", "Tests pass", None),
        ]
    );
}

#[test]
fn a_list_of_questions_without_a_heading_does_not_outrank_a_numbered_plan() {
    // No heading names the questions: the items themselves are questions.
    let plan = parse_plan(
        "1. Add the setting\n2. Read it at startup\n\n\
         - [ ] Should it be per user?\n- [ ] What is the default?\n",
    );
    assert_eq!(plan.format, PlanFormat::Numbered);
    assert_eq!(
        tasks(&plan),
        [
            ("1", "Add the setting", None),
            ("2", "Read it at startup", None),
        ]
    );
}
